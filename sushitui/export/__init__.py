"""Export for trainers (EX-1..3): txt captions, kohya-ss metadata JSON/JSONL and dataset
TOML, ai-toolkit dataset YAML, diffusers imagefolder, OneTrainer concepts, diffusion-pipe
and musubi-tuner dataset TOML (trainers.py); and trainer configs in
(configs_in.py: ``dataset import-config``)."""

from sushitui.export.exporter import PreviewCaption, export_dataset, preview_captions
from sushitui.export.options import (
    FORMATS,
    LINK_MODES,
    ExportError,
    ExportOptions,
    ExportProblem,
    ExportReport,
    ShortenedName,
)

__all__ = [
    "FORMATS",
    "LINK_MODES",
    "ExportError",
    "ExportOptions",
    "ExportProblem",
    "ExportReport",
    "PreviewCaption",
    "ShortenedName",
    "export_dataset",
    "preview_captions",
]
