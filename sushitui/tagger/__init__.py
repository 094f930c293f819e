"""Auto-tagging with ONNX tagger models (SPEC §7, AT-1..6).

Modules: ``registry`` (built-in models), ``hub`` (Hugging Face cache / download),
``labels`` (label files), ``preprocess`` (image → model input, per family),
``postprocess`` (scores → tags), ``runner`` (onnxruntime session and provider),
``pipeline`` (parallel decoding feeding batched inference), ``cache`` (scores by image
hash + model version), ``autotag`` (the Python API used by the CLI and the TUI):
``from sushitui.tagger.autotag import autotag, AutotagOptions``.

Nothing here imports onnxruntime, numpy or PIL at import time of this package (decode
worker processes import ``preprocess`` only).
"""
