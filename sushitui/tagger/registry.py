"""Built-in tagger models (AT-1).

A ``ModelSpec`` says where a model lives on the Hugging Face Hub and which input
contract it follows (``family``: "wd" for SmilingWolf WD v2/v3, "cl" for cella110n
cl_tagger). Preprocessing and post-processing are chosen by family, never by key.
"""

from __future__ import annotations

from dataclasses import dataclass

from sushitui.errors import UserError

WD = "wd"
CL = "cl"
FAMILIES = (WD, CL)

DEFAULT_MODEL = "cl-1.02"


@dataclass(frozen=True)
class ModelSpec:
    key: str
    repo_id: str
    model_file: str
    label_file: str
    family: str
    description: str = ""
    revision: str | None = None  # a pinned commit; None follows the repo's main branch
    fixed_batch_note: str = ""  # known export quirks, shown in `models list`

    @property
    def files(self) -> tuple[str, str]:
        return (self.model_file, self.label_file)


def _wd(key: str, repo: str, description: str, note: str = "") -> ModelSpec:
    return ModelSpec(
        key, f"SmilingWolf/{repo}", "model.onnx", "selected_tags.csv", WD, description, fixed_batch_note=note
    )


def _cl(version: str, description: str) -> ModelSpec:
    folder = f"cl_tagger_{version.replace('.', '_')}"
    return ModelSpec(
        f"cl-{version}", "cella110n/cl_tagger", f"{folder}/model.onnx", f"{folder}/tag_mapping.json", CL, description
    )


BUILTIN: dict[str, ModelSpec] = {
    s.key: s
    for s in [
        _cl("1.02", "cl_tagger 1.02 (EVA02-L, 448px, 42k tags incl. quality/meta/model) — default"),
        _cl("1.01", "cl_tagger 1.01 (same as the 0812 community model)"),
        _cl("1.00", "cl_tagger 1.00 (same as the 0804 community model)"),
        _wd("wd-eva02-large-v3", "wd-eva02-large-tagger-v3", "WD v3 EVA02-Large (best WD v3, slowest)"),
        _wd("wd-vit-large-v3", "wd-vit-large-tagger-v3", "WD v3 ViT-Large"),
        _wd("wd-vit-v3", "wd-vit-tagger-v3", "WD v3 ViT-B/16 (fast)"),
        _wd("wd-swinv2-v3", "wd-swinv2-tagger-v3", "WD v3 SwinV2"),
        _wd("wd-convnext-v3", "wd-convnext-tagger-v3", "WD v3 ConvNeXt"),
        _wd("wd-v1-4-vit-v2", "wd-v1-4-vit-tagger-v2", "WD v2 ViT"),
        _wd("wd-v1-4-swinv2-v2", "wd-v1-4-swinv2-tagger-v2", "WD v2 SwinV2 (v2.1 export, dynamic batch)"),
        _wd("wd-v1-4-convnext-v2", "wd-v1-4-convnext-tagger-v2", "WD v2 ConvNeXt", "batch fixed to 1 in older exports"),
        _wd("wd-v1-4-convnextv2-v2", "wd-v1-4-convnextv2-tagger-v2", "WD v2 ConvNeXtV2"),
        _wd("wd-v1-4-moat-v2", "wd-v1-4-moat-tagger-v2", "WD v2 MOAT", "batch fixed to 1"),
    ]
}

# Short spellings users type.
_ALIASES = {
    "cl": DEFAULT_MODEL,
    "cl_tagger": DEFAULT_MODEL,
    "cl-tagger": DEFAULT_MODEL,
    "cl1.02": "cl-1.02",
    "cl1.01": "cl-1.01",
    "cl1.00": "cl-1.00",
    "wd": "wd-vit-v3",
    "wd-v3": "wd-vit-v3",
}


class UnknownModel(UserError, ValueError):
    pass


def get_spec(key: str | None) -> ModelSpec:
    """The built-in model named ``key`` (case-insensitive; short aliases accepted)."""
    k = (key or DEFAULT_MODEL).strip().lower()
    k = _ALIASES.get(k, k)
    spec = BUILTIN.get(k)
    if spec is None:
        raise UnknownModel(
            f"unknown model {key!r}. Known models: {', '.join(BUILTIN)}. "
            "Or give your own files with --model-path FILE --labels FILE."
        )
    return spec


def family_for_label_file(path: str) -> str:
    """Family of a user-supplied model, inferred from its label file (.csv → WD, .json → CL)."""
    low = str(path).lower()
    if low.endswith(".csv"):
        return WD
    if low.endswith(".json"):
        return CL
    raise ValueError(
        f"{path}: cannot tell the model family from the label file name (expected .csv or .json); pass the family explicitly"
    )
