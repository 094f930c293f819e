"""Auto-tagging with ONNX tagger models (SPEC §7, AT-1..6).

Modules: ``registry`` (built-in models), ``hub`` (Hugging Face cache / download),
``labels`` (label files), ``preprocess`` (image → model input, per family),
``postprocess`` (scores → tags), ``runner`` (onnxruntime session and provider),
``pipeline`` (parallel decoding feeding batched inference), ``cache`` (scores by image
hash + model version), ``autotag`` (the Python API used by the CLI and the TUI).

Nothing here imports onnxruntime, numpy or PIL at import time of this package.
"""

from __future__ import annotations

__all__ = ["autotag", "AutotagOptions", "AutotagReport"]


def __getattr__(name):  # PEP 562: keep ``import sushitui.tagger`` cheap
    if name in __all__:
        from sushitui.tagger import autotag as _autotag

        return getattr(_autotag, name)
    raise AttributeError(name)
