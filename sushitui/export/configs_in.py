"""Trainer configs in (issue 17): ``sushitui dataset import-config FILE``.

Reads the dataset part of a trainer's config and registers each image folder it names
as a dataset, with what the config says about it kept in ``Dataset.trainer``
(migration 8) so an export can reuse it:

- kohya-ss sd-scripts ``dataset_config.toml``: ``[general]`` → ``[[datasets]]`` →
  ``[[datasets.subsets]]`` (a subset inherits the keys of its dataset and of
  ``[general]``); ``image_dir``, ``caption_extension`` (sd-scripts' default
  ``.caption``), ``num_repeats``, ``class_tokens``, ``is_reg``, ``keep_tokens``,
  ``metadata_file``, ``conditioning_data_dir`` (masks for ``--masked_loss`` or
  ControlNet conditioning images: sd-scripts reads both from it).
- ai-toolkit YAML: ``config.process[*].datasets[*]`` (or a top-level ``datasets`` list,
  as our ``ai-toolkit`` export writes): ``folder_path``, ``caption_ext`` (``.txt``),
  ``num_repeats``, ``is_reg``, ``keep_tokens``, ``trigger_word`` (the dataset's or the
  process's), ``control_path`` (one or a list, ``control_path_1..3``), ``mask_path``.
- OneTrainer ``concepts.json`` (or a training config's ``concepts`` list): ``path``,
  ``include_subdirectories``, ``balancing`` with ``balancing_strategy`` REPEATS (the
  old ``repeats``), ``type`` PRIOR_PREDICTION (regularisation; the old
  ``validation_concept`` is read too), ``text.prompt_source``
  sample / concept (``prompt_path``) / filename, ``text.keep_tags_count``. Its folders are
  registered with suffix separator ``-`` and image suffixes ``masklabel=mask``,
  ``condlabel=source``, so ``x-masklabel.png`` / ``x-condlabel.png`` group with ``x.png``.
- diffusion-pipe ``dataset.toml``: ``[[directory]]`` ``path``, ``num_repeats``,
  ``control_path``, ``mask_path``; ``captions.json`` in a folder is noted.
- musubi-tuner dataset TOML: ``[general]`` + ``[[datasets]]`` ``image_directory``,
  ``caption_extension``, ``num_repeats``, ``control_directory``; ``image_jsonl_file``
  and video datasets are listed, not registered.

Paths: every trainer opens relative paths from the folder it runs in, which the config
does not say; they are read from ``workdir`` (``--workdir``) or else from the config's
folder. ``--path-map 'C:\\data=/data'`` rewrites a prefix first (Windows paths,
other machines' mounts). A path that stays a Windows path, or names no folder, stops
the import with the file and line and what to pass. Everything is validated before
anything is registered; if registering fails part-way, what this import registered is
removed again. Whatever has no place in sushitui (control folders apart from the
images, metadata files, unknown keys) is listed in the plan, never dropped silently.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sushitui.errors import UserError

FORMATS_IN = ("kohya", "ai-toolkit", "onetrainer", "diffusion-pipe", "musubi")
# OneTrainer reads x-masklabel.png (mask) and x-condlabel.png (conditioning image) beside
# x.png: grouped on '-', as the mask and the source (control) image of x's group, which is
# what sushitui's exports read as mask and control image
ONETRAINER_SETTINGS = {"suffix_separator": "-", "image_suffixes": ["masklabel=mask", "condlabel=source"]}
_WINDOWS_ABS = re.compile(r"^(?:[A-Za-z]:[\\/]|\\\\)")
_CAPTION_EXTS_READ = (".txt", ".caption", ".cap")  # what sushitui's scanner reads (grouping.py)
_MAX_YAML_ALIASES = 1000  # an alias bomb ("billion laughs") expands far beyond this


class ConfigImportError(UserError):
    """The config cannot be imported; ``problems`` holds one ``FILE:LINE: what`` line
    per problem (all of them, not only the first)."""

    def __init__(self, message: str, problems: list[str] | None = None):
        self.problems = list(problems or [])
        super().__init__(message if not self.problems else message + "\n" + "\n".join("  " + p for p in self.problems))


@dataclass
class FolderEntry:
    """One image folder the config names, and what the config says about it."""

    where: str  # e.g. datasets[0].subsets[1]
    line: int | None
    raw_path: str
    path: str  # resolved, absolute
    name: str = ""
    recursive: bool = False
    trainer: dict = field(default_factory=dict)
    unmapped: list[str] = field(default_factory=list)
    also: list[str] = field(default_factory=list)  # other entries naming the same folder
    existing: str | None = None  # a dataset already registered for this folder
    # registration settings the trainer's file layout needs (DatasetSettings fields):
    # OneTrainer's x-masklabel.png / x-condlabel.png group with x.png
    settings: dict = field(default_factory=dict)


@dataclass
class ImportPlan:
    config: str
    format: str
    entries: list[FolderEntry] = field(default_factory=list)
    unmapped: list[str] = field(default_factory=list)  # notes about the config as a whole

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ImportResult:
    plan: ImportPlan
    registered: list[dict] = field(default_factory=list)  # {"name", "id", "path", "items"}
    dry_run: bool = False

    def to_dict(self) -> dict:
        return {"dry_run": self.dry_run, "registered": self.registered, **self.plan.to_dict()}


# --- reading the file ---------------------------------------------------------------


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigImportError(f"{path}: no such file; check the path") from None
    except OSError as exc:
        raise ConfigImportError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    try:
        # utf-8-sig: a byte-order mark (Notepad) is read, not taken for a key
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigImportError(f"{path}:{line}: not UTF-8 text; save the config as UTF-8") from None
    return text.replace("\r\n", "\n")


def detect_format(path: Path, text: str) -> str:
    ext = path.suffix.lower()
    if ext == ".json":
        return "onetrainer"
    if ext in (".yaml", ".yml"):
        return "ai-toolkit"
    if ext == ".toml":
        doc = _parse_toml(path, text)
        if "directory" in doc:
            return "diffusion-pipe"
        datasets = doc.get("datasets")
        if isinstance(datasets, list) and datasets:
            if any(isinstance(d, dict) and "subsets" in d for d in datasets):
                return "kohya"
            if any(
                isinstance(d, dict)
                and ({"image_directory", "image_jsonl_file", "video_directory", "video_jsonl_file"} & d.keys())
                for d in datasets
            ):
                return "musubi"
        raise ConfigImportError(
            f"{path}: cannot tell which trainer this TOML is for (no [[directory]], no [[datasets.subsets]], "
            f"no image_directory); pass --format {'|'.join(FORMATS_IN)}"
        )
    raise ConfigImportError(
        f"{path}: unknown config type {ext or '(no extension)'!r}; pass --format {'|'.join(FORMATS_IN)}"
    )


def _parse_toml(path: Path, text: str) -> dict:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"\(at line (\d+)", str(exc))
        where = f"{path}:{m.group(1)}" if m else str(path)
        raise ConfigImportError(f"{where}: not valid TOML ({exc}); fix the file") from None


def _parse_json(path: Path, text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigImportError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg}); fix the file") from None


def _parse_yaml(path: Path, text: str):
    import yaml

    try:
        aliases = sum(1 for ev in yaml.parse(text, Loader=yaml.SafeLoader) if isinstance(ev, yaml.AliasEvent))
        if aliases > _MAX_YAML_ALIASES:
            raise ConfigImportError(
                f"{path}: {aliases} YAML aliases (*name); refusing a file that may expand without bound — write the values out"
            )
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        hint = " (an alias *name needs an anchor &name above it)" if "alias" in str(problem) else ""
        raise ConfigImportError(f"{where}: not valid YAML: {problem}{hint}") from None
    return data, node


class _TomlLines:
    """Line numbers of keys in a TOML/JSON text, in document order (tomllib and json
    keep no positions): the n-th ``key =`` line belongs to the n-th entry holding it."""

    def __init__(self, text: str, json_style: bool = False):
        self.lines = text.split("\n")
        self.json_style = json_style
        self.seen: dict[str, int] = {}

    def next(self, key: str) -> int | None:
        if self.json_style:
            pat = re.compile(r'^\s*[{,]?\s*"' + re.escape(key) + r'"\s*:')
        else:
            pat = re.compile(r'^\s*["\']?' + re.escape(key) + r'["\']?\s*=')
        start = self.seen.get(key, 0)
        for i in range(start, len(self.lines)):
            if pat.search(self.lines[i]):
                self.seen[key] = i + 1
                return i + 1
        return None


def _yaml_line(node, *keys) -> int | None:
    """Line of the value at ``keys`` (str: mapping key, int: sequence index) in a
    composed YAML node; merge keys (``<<: *base``) are followed."""
    import yaml

    for key in keys:
        if node is None:
            return None
        if isinstance(key, int):
            if not isinstance(node, yaml.SequenceNode) or key >= len(node.value):
                return None
            node = node.value[key]
            continue
        if not isinstance(node, yaml.MappingNode):
            return None
        found = None
        for k, v in node.value:
            if k.value == key:
                found = v
        if found is None:
            for k, v in node.value:
                if k.tag == "tag:yaml.org,2002:merge":
                    for m in v.value if isinstance(v, yaml.SequenceNode) else [v]:
                        if isinstance(m, yaml.MappingNode):
                            for mk, mv in m.value:
                                if mk.value == key:
                                    found = mv
        node = found
    return node.start_mark.line + 1 if node is not None else None


# --- paths ---------------------------------------------------------------------------


def parse_path_map(specs) -> list[tuple[str, str]]:
    out = []
    for spec in specs or ():
        src, sep, dst = str(spec).partition("=")
        if not sep or not src.strip() or not dst.strip():
            raise ConfigImportError(f"--path-map {spec!r}: write it as FROM=TO, e.g. 'C:\\data=/data'")
        out.append((src.strip(), dst.strip()))
    return out


def _norm(p: str) -> str:
    p = p.replace("\\", "/")
    while p.startswith("./"):
        p = p[2:]
    return p.rstrip("/") if p not in ("/",) else p


class PathResolver:
    def __init__(self, config: Path, path_map: list[tuple[str, str]], workdir: str | None):
        self.config = config
        self.maps = sorted(path_map, key=lambda m: -len(_norm(m[0])))
        self.workdir = os.path.abspath(os.path.expanduser(workdir)) if workdir else None
        self.base = self.workdir or str(config.parent)

    def resolve(self, raw: str) -> tuple[str, str]:
        """(absolute path, "") or ("", why it cannot be used, naming what to pass)."""
        raw = str(raw).strip()
        if not raw:
            return "", "empty path"
        mapped = self._mapped(raw)
        path = mapped if mapped is not None else raw
        if _WINDOWS_ABS.match(path) and os.name != "nt":
            prefix = re.match(r"^(?:[A-Za-z]:|\\\\[^\\/]+[\\/][^\\/]+)", path)
            example = (prefix.group(0) if prefix else path[:3]) + "\\…"
            return "", (
                f"'{raw}' is a Windows path; map it to this machine with --path-map "
                f"'{example.rstrip('…').rstrip(chr(92))}=/where/it/is/here'"
            )
        if "\\" in path and "/" not in path and os.name != "nt":
            path = path.replace("\\", "/")  # a relative Windows path (.\img\10_x)
        path = os.path.expanduser(path)
        if not os.path.isabs(path):
            path = os.path.join(self.base, path)
        return os.path.normpath(path), ""

    def _mapped(self, raw: str) -> str | None:
        nraw = _norm(raw)
        for src, dst in self.maps:
            nsrc = _norm(src)
            windows = bool(_WINDOWS_ABS.match(src)) or "\\" in src
            a, b = (nraw.casefold(), nsrc.casefold()) if windows else (nraw, nsrc)
            if a == b or a.startswith(b.rstrip("/") + "/"):
                rest = nraw[len(nsrc) :].lstrip("/")
                return os.path.join(dst, rest) if rest else dst
        return None

    def relative_hint(self, raw: str) -> str:
        if (
            os.path.isabs(os.path.expanduser(raw.replace("\\", "/")))
            or _WINDOWS_ABS.match(raw)
            or self._mapped(raw) is not None
        ):
            return ""
        if self.workdir:
            return f" (relative paths are read from --workdir {self.workdir})"
        return (
            f" (relative paths are read from the config's folder {self.base}; the trainer reads them from the folder "
            "it runs in: pass --workdir DIR, or --path-map FROM=TO)"
        )


# --- per-trainer readers: (where, line, raw path, settings) --------------------------


@dataclass
class _Raw:
    where: str
    line: int | None
    path: str | None
    recursive: bool
    trainer: dict
    dirs: dict = field(default_factory=dict)  # trainer key -> (raw paths, line or one line per path)
    files: dict = field(default_factory=dict)  # trainer key -> (raw paths, line)
    unmapped: list[str] = field(default_factory=list)
    skip: str | None = None  # why this entry registers nothing (listed)
    settings: dict = field(default_factory=dict)  # DatasetSettings fields the trainer's layout needs


def _as_list(v) -> list:
    if v is None or v == "":
        return []
    return list(v) if isinstance(v, (list, tuple)) else [v]


def _dot_ext(ext) -> str | None:
    if ext is None:
        return None
    ext = str(ext).strip()
    return ext if ext.startswith(".") or not ext else "." + ext


def _kohya(doc: dict, text: str) -> tuple[list[_Raw], list[str]]:
    lines = _TomlLines(text)
    notes = [
        f"top-level key {k!r} is not read by sd-scripts' dataset config"
        for k in doc
        if k not in ("general", "datasets")
    ]
    general = doc.get("general") or {}
    out = []
    datasets = doc.get("datasets")
    if not isinstance(datasets, list) or not datasets:
        raise ConfigImportError("no [[datasets]] with [[datasets.subsets]] in this sd-scripts config")
    for i, d in enumerate(datasets):
        subsets = d.get("subsets") or []
        if not subsets:
            notes.append(f"datasets[{i}] has no [[datasets.subsets]]")
        for j, s in enumerate(subsets):
            merged = {**general, **{k: v for k, v in d.items() if k != "subsets"}, **s}
            where = f"datasets[{i}].subsets[{j}]"
            line = lines.next("image_dir") if "image_dir" in s else lines.next("metadata_file")
            trainer = {
                # sd-scripts' default; a fine-tuning subset takes its captions from metadata_file
                "caption_extension": _dot_ext(
                    merged.get("caption_extension", None if "metadata_file" in merged else ".caption")
                ),
                "repeats": merged.get("num_repeats", 1),
                "class_tokens": merged.get("class_tokens"),
                "is_reg": bool(merged.get("is_reg", False)),
                "keep_tokens": merged.get("keep_tokens"),
            }
            used = {
                "image_dir",
                "caption_extension",
                "num_repeats",
                "class_tokens",
                "is_reg",
                "keep_tokens",
                "metadata_file",
                "conditioning_data_dir",
            }
            trainer["other"] = {k: v for k, v in merged.items() if k not in used}
            raw = _Raw(where, line, s.get("image_dir"), False, trainer)
            if "metadata_file" in merged:
                raw.files["metadata_files"] = (
                    _as_list(merged["metadata_file"]),
                    lines.next("metadata_file") if "image_dir" in s else line,
                )
                raw.recursive = True  # the metadata names images anywhere under image_dir
            if "conditioning_data_dir" in merged:
                raw.dirs["conditioning_dirs"] = (
                    _as_list(merged["conditioning_data_dir"]),
                    lines.next("conditioning_data_dir"),
                )
            if raw.path is None:
                raw.skip = "no image_dir: sd-scripts takes the image paths from metadata_file; register their folder with `sushitui dataset add`"
            out.append(raw)
    return out, notes


def _ai_toolkit(doc, node) -> tuple[list[_Raw], list[str]]:
    if not isinstance(doc, dict):
        raise ConfigImportError("an ai-toolkit config is a mapping with config.process[*].datasets")
    notes: list[str] = []
    if "config" in doc:
        processes = (doc.get("config") or {}).get("process") or []
        path_of = lambda pi, *k: ("config", "process", pi, *k)  # noqa: E731
    elif "datasets" in doc:  # our ai-toolkit export: the part that goes under config.process[0]
        processes = [doc]
        path_of = lambda pi, *k: k  # noqa: E731
    else:
        raise ConfigImportError(
            "no config.process[*].datasets (nor a top-level datasets list) in this ai-toolkit config"
        )
    out = []
    for pi, proc in enumerate(processes):
        if not isinstance(proc, dict):
            continue
        for di, d in enumerate(proc.get("datasets") or []):
            if not isinstance(d, dict):
                continue
            where = f"config.process[{pi}].datasets[{di}]" if "config" in doc else f"datasets[{di}]"
            line = _yaml_line(node, *path_of(pi, "datasets", di, "folder_path")) or _yaml_line(
                node, *path_of(pi, "datasets", di)
            )
            trainer = {
                "caption_extension": _dot_ext(d.get("caption_ext", ".txt")),
                "repeats": d.get("num_repeats", 1),
                "trigger": d.get("trigger_word") or proc.get("trigger_word"),
                "is_reg": bool(d.get("is_reg", False)),
                "keep_tokens": d.get("keep_tokens"),
            }
            used = {
                "folder_path",
                "caption_ext",
                "num_repeats",
                "trigger_word",
                "is_reg",
                "keep_tokens",
                "control_path",
                "control_path_1",
                "control_path_2",
                "control_path_3",
                "mask_path",
                "dataset_path",
                "inpaint_path",
            }
            trainer["other"] = {k: v for k, v in d.items() if k not in used}
            raw = _Raw(where, line, d.get("folder_path"), True, trainer)
            controls, control_lines = [], []
            for i, value in enumerate(_as_list(d.get("control_path"))):
                controls.append(value)
                at = path_of(pi, "datasets", di, "control_path")
                control_lines.append(
                    _yaml_line(node, *at, i) if isinstance(d["control_path"], list) else _yaml_line(node, *at)
                )
            for k in ("control_path_1", "control_path_2", "control_path_3"):
                if d.get(k):
                    controls.append(d[k])
                    control_lines.append(_yaml_line(node, *path_of(pi, "datasets", di, k)))
            if controls:
                raw.dirs["control_dirs"] = (controls, [n or line for n in control_lines])
            if d.get("mask_path"):
                raw.dirs["mask_dirs"] = (
                    _as_list(d["mask_path"]),
                    _yaml_line(node, *path_of(pi, "datasets", di, "mask_path")) or line,
                )
            if d.get("inpaint_path"):
                raw.dirs["inpaint_dirs"] = (
                    _as_list(d["inpaint_path"]),
                    _yaml_line(node, *path_of(pi, "datasets", di, "inpaint_path")) or line,
                )
            if raw.path is None:
                raw.skip = (
                    "dataset_path (a Hugging Face dataset) is not a folder sushitui can register"
                    if d.get("dataset_path")
                    else "no folder_path"
                )
            out.append(raw)
    if not out:
        raise ConfigImportError("no datasets under config.process[*].datasets in this ai-toolkit config")
    return out, notes


def _onetrainer(doc, text: str) -> tuple[list[_Raw], list[str]]:
    notes: list[str] = []
    if isinstance(doc, dict):
        if isinstance(doc.get("concepts"), list):  # a whole training config with its concepts inline
            doc = doc["concepts"]
        elif doc.get("concept_file_name"):
            raise ConfigImportError(
                f"this training config keeps its concepts in {doc['concept_file_name']!r}; import that file"
            )
    if not isinstance(doc, list):
        raise ConfigImportError('a OneTrainer concepts file is a JSON list of concepts ({"name", "path", …})')
    lines = _TomlLines(text, json_style=True)
    out = []
    for i, c in enumerate(doc):
        if not isinstance(c, dict):
            continue
        line = lines.next("path") if "path" in c else None
        text_cfg = c.get("text") or {}
        strategy = str(c.get("balancing_strategy", "REPEATS")).upper()
        given: Any = c["balancing"] if "balancing" in c else c.get("repeats", 1.0)  # "repeats": before config_version 1
        balancing = float(given)
        trainer: dict = {"name": c.get("name"), "keep_tokens": text_cfg.get("keep_tags_count")}
        if strategy == "REPEATS":
            trainer["repeats"] = int(balancing) if balancing.is_integer() else balancing
        else:
            trainer["other_balancing"] = {"balancing": balancing, "balancing_strategy": strategy}
        ctype = str(c.get("type") or "STANDARD").upper()  # ConceptType (config version 2)
        trainer["is_reg"] = ctype == "PRIOR_PREDICTION"
        source = text_cfg.get("prompt_source", "sample")
        trainer["caption_extension"] = ".txt" if source == "sample" else None
        used = {
            "name",
            "path",
            "include_subdirectories",
            "balancing",
            "balancing_strategy",
            "repeats",
            "type",
            "text",
            "enabled",
        }
        trainer["other"] = {k: v for k, v in c.items() if k not in used}
        raw = _Raw(f"concepts[{i}]", line, c.get("path"), bool(c.get("include_subdirectories", False)), trainer)
        raw.settings = dict(ONETRAINER_SETTINGS)
        if source == "concept" and text_cfg.get("prompt_path"):
            raw.files["metadata_files"] = ([text_cfg["prompt_path"]], line)
            raw.unmapped.append(
                f"prompt_source 'concept': OneTrainer draws prompts from {text_cfg['prompt_path']!r}, not from files beside the images"
            )
        elif source == "filename":
            raw.unmapped.append(
                "prompt_source 'filename': OneTrainer uses the file names as prompts; sushitui shows the caption files"
            )
        if ctype == "VALIDATION" or c.get("validation_concept"):
            raw.unmapped.append("a validation concept: registered like the others; OneTrainer does not train on it")
        if c.get("enabled") is False:
            raw.unmapped.append("disabled in OneTrainer (enabled: false); registered all the same")
        if raw.path is None:
            raw.skip = "no path"
        out.append(raw)
    if not out:
        raise ConfigImportError("no concepts in this OneTrainer file")
    return out, notes


def _diffusion_pipe(doc: dict, text: str) -> tuple[list[_Raw], list[str]]:
    lines = _TomlLines(text)
    top = {k: v for k, v in doc.items() if k != "directory"}
    out = []
    for i, d in enumerate(doc.get("directory") or []):
        line = lines.next("path")
        trainer = {"caption_extension": ".txt", "repeats": d.get("num_repeats", top.get("num_repeats", 1))}
        if d.get("caption_prefix"):
            trainer["caption_prefix"] = d["caption_prefix"]
        used = {"path", "num_repeats", "control_path", "mask_path", "caption_prefix"}
        trainer["other"] = {
            **{k: v for k, v in top.items() if k != "num_repeats"},
            **{k: v for k, v in d.items() if k not in used},
        }
        raw = _Raw(f"directory[{i}]", line, d.get("path"), False, trainer)
        if d.get("control_path"):
            raw.dirs["control_dirs"] = (_as_list(d["control_path"]), lines.next("control_path"))
        if d.get("mask_path"):
            raw.dirs["mask_dirs"] = (_as_list(d["mask_path"]), lines.next("mask_path"))
        if raw.path is None:
            raw.skip = "no path"
        out.append(raw)
    if not out:
        raise ConfigImportError("no [[directory]] entries in this diffusion-pipe config")
    return out, []


def _musubi(doc: dict, text: str) -> tuple[list[_Raw], list[str]]:
    lines = _TomlLines(text)
    general = doc.get("general") or {}
    out = []
    for i, d in enumerate(doc.get("datasets") or []):
        merged = {**general, **d}
        key = next(
            (k for k in ("image_directory", "image_jsonl_file", "video_directory", "video_jsonl_file") if k in d), None
        )
        line = lines.next(key) if key else None
        # musubi-tuner's default is no caption_extension: no caption files, empty captions
        trainer = {
            "caption_extension": _dot_ext(merged.get("caption_extension")),
            "repeats": merged.get("num_repeats", 1),
        }
        used = {
            "image_directory",
            "image_jsonl_file",
            "video_directory",
            "video_jsonl_file",
            "caption_extension",
            "num_repeats",
            "control_directory",
        }
        trainer["other"] = {k: v for k, v in merged.items() if k not in used}
        raw = _Raw(f"datasets[{i}]", line, d.get("image_directory"), False, trainer)
        if d.get("control_directory"):
            raw.dirs["control_dirs"] = (_as_list(d["control_directory"]), lines.next("control_directory"))
        if key == "image_directory" and not trainer["caption_extension"]:
            raw.unmapped.append(
                "no caption_extension: musubi-tuner reads no caption files for this folder (empty captions)"
            )
        if key == "image_jsonl_file":
            raw.skip = f"image_jsonl_file {d[key]!r}: the images are listed in the JSONL; register their folder with `sushitui dataset add`"
        elif key in ("video_directory", "video_jsonl_file"):
            raw.skip = f"{key} {d[key]!r}: video datasets are not registered (sushitui handles images)"
        elif key is None:
            raw.skip = "no image_directory"
        out.append(raw)
    if not out:
        raise ConfigImportError("no [[datasets]] in this musubi-tuner config")
    return out, []


# --- the plan --------------------------------------------------------------------------


def read_config(
    file: str | os.PathLike,
    path_map: list[tuple[str, str]] | None = None,
    workdir: str | None = None,
    fmt: str | None = None,
    name_prefix: str | None = None,
) -> ImportPlan:
    """Read and check a trainer config; raises ConfigImportError listing every problem
    (file:line) when any folder cannot be used. Registers nothing."""
    path = Path(os.path.abspath(os.path.expanduser(os.fspath(file))))
    text = _read_text(path)
    if fmt is not None and fmt not in FORMATS_IN:
        raise ConfigImportError(f"unknown config format {fmt!r}; choose one of {', '.join(FORMATS_IN)}")
    fmt = fmt or detect_format(path, text)
    try:
        if fmt == "kohya":
            raws, notes = _kohya(_parse_toml(path, text), text)
        elif fmt == "diffusion-pipe":
            raws, notes = _diffusion_pipe(_parse_toml(path, text), text)
        elif fmt == "musubi":
            raws, notes = _musubi(_parse_toml(path, text), text)
        elif fmt == "onetrainer":
            raws, notes = _onetrainer(_parse_json(path, text), text)
        else:
            raws, notes = _ai_toolkit(*_parse_yaml(path, text))
    except ConfigImportError as exc:
        if str(exc).startswith(str(path)):
            raise
        raise ConfigImportError(f"{path}: {exc}") from None
    except (AttributeError, TypeError, ValueError) as exc:
        # a key with a value of the wrong kind (a number where a table belongs, …)
        raise ConfigImportError(f"{path}: not a {fmt} dataset config the trainer would accept ({exc})") from None
    resolver = PathResolver(path, path_map or [], workdir)
    plan = ImportPlan(str(path), fmt, unmapped=list(notes))
    problems: list[str] = []
    by_path: dict[str, FolderEntry] = {}
    prefix = name_prefix or path.stem

    def at(line):
        return f"{path}:{line}" if line else str(path)

    for raw in raws:
        if raw.skip:
            plan.unmapped.append(f"{at(raw.line)}: {raw.where}: {raw.skip}")
            continue
        if not isinstance(raw.path, str):
            problems.append(f"{at(raw.line)}: {raw.where}: the folder must be a string, not {raw.path!r}")
            continue
        known = len(problems)
        resolved, why = resolver.resolve(raw.path)
        if why:
            problems.append(f"{at(raw.line)}: {raw.where}: {why}")
        elif not os.path.isdir(resolved):
            what = "is a file, not a folder" if os.path.exists(resolved) else "no such folder"
            problems.append(
                f"{at(raw.line)}: {raw.where}: '{raw.path}' → {resolved}: {what}{resolver.relative_hint(raw.path)}"
            )
        # the entry's other paths are checked too, so one run lists every problem
        trainer: dict[str, Any] = {
            "format": fmt,
            "config": str(path),
            "entry": raw.where,
            "line": raw.line,
            "recursive": raw.recursive,
        }
        trainer.update({k: v for k, v in raw.trainer.items() if v not in (None, {}, [])})
        unmapped = list(raw.unmapped)
        for key, (values, where_lines) in raw.dirs.items():
            for value, line in zip(
                values, where_lines if isinstance(where_lines, list) else [where_lines] * len(values)
            ):
                p, why = resolver.resolve(value) if isinstance(value, str) else ("", f"{value!r} is not a path")
                if why or not os.path.isdir(p):
                    why = why or _missing(value, p, "folder", resolver)
                    problems.append(f"{at(line)}: {raw.where}: {key[:-5].replace('_', ' ')} folder {why}")
                    continue
                trainer.setdefault(key, []).append(p)
                if os.path.normpath(p) != resolved:
                    unmapped.append(_separate_folder_note(key, p))
        for key, (values, line) in raw.files.items():
            for value in values:
                p, why = resolver.resolve(value) if isinstance(value, str) else ("", f"{value!r} is not a path")
                if why or not os.path.isfile(p):
                    problems.append(
                        f"{at(line)}: {raw.where}: metadata file {why or _missing(value, p, 'file', resolver)}"
                    )
                    continue
                trainer.setdefault(key, []).append(p)
        if len(problems) > known:
            continue
        settings = dict(raw.settings)
        if fmt == "kohya" and trainer.get("metadata_files"):
            tables, notes = _metadata_tables(resolved, trainer["metadata_files"])
            if tables:
                settings["caption_tables"] = tables
            unmapped += notes
        unmapped += _folder_notes(fmt, resolved, trainer, settings)
        first = by_path.get(resolved)
        if first is not None:
            first.also.append(raw.where)
            first.unmapped.append(
                f"{raw.where} ({at(raw.line)}) names the same folder; registered once with the settings of {first.where}"
            )
            continue
        entry = FolderEntry(
            raw.where,
            raw.line,
            raw.path,
            resolved,
            recursive=raw.recursive,
            trainer=trainer,
            unmapped=unmapped,
            settings=settings,
        )
        by_path[resolved] = entry
        plan.entries.append(entry)
    if problems:
        raise ConfigImportError(f"{path}: nothing was registered; fix these and run it again:", problems)
    _name_entries(plan, prefix)
    return plan


def _metadata_tables(folder: str, files: list[str]) -> tuple[list[dict], list[str]]:
    """sd-scripts metadata files (``metadata_file``) inside the image folder become the
    dataset's captions tables (its captions as sd-scripts reads them); one outside it,
    or one sushitui cannot read as a table, is listed with what to do."""
    from sushitui.dataset.tables import TableError, metadata_table_spec

    tables: list[dict] = []
    notes: list[str] = []
    for p in files:
        inside = os.path.commonpath([os.path.realpath(p), os.path.realpath(folder)]) == os.path.realpath(folder)
        if not inside:
            notes.append(
                f"metadata_file {p}: sd-scripts reads the captions there; sushitui reads caption tables inside the "
                f"dataset folder only, so it shows the caption files beside the images. Copy it into {folder} and "
                "run `sushitui dataset edit NAME --captions-table FILE --image-column image_key --caption-column "
                "caption --caption-column tags=tags` to read its captions"
            )
            continue
        rel = os.path.relpath(p, folder).replace(os.sep, "/")
        try:
            tables.append(metadata_table_spec(folder, rel))  # shown with the entry's settings, not as a note
        except TableError as exc:
            notes.append(f"metadata_file {p}: {exc}; sushitui shows the caption files beside the images")
    return tables, notes


def _missing(value: str, path: str, what: str, resolver: PathResolver) -> str:
    return f"'{value}' → {path}: no such {what}{resolver.relative_hint(value)}"


def _separate_folder_note(key: str, path: str) -> str:
    kind = {
        "control_dirs": "control",
        "mask_dirs": "mask",
        "conditioning_dirs": "conditioning (mask or control)",
        "inpaint_dirs": "inpaint",
    }.get(key, key)
    return (
        f"{kind} images in {path}: a folder apart from the images, which sushitui groups cannot hold "
        "(they pair X_source/X_target/X_mask in one folder); kept in the dataset's trainer settings"
    )


def _folder_notes(fmt: str, folder: str, trainer: dict, settings: dict | None = None) -> list[str]:
    """What the folder holds that sushitui reads differently from the trainer."""
    notes = []
    ext = trainer.get("caption_extension")
    try:
        names = os.listdir(folder)
    except OSError:
        names = []
    if ext and ext not in _CAPTION_EXTS_READ:
        notes.append(f"caption files *{ext} are not read by sushitui (it reads {', '.join(_CAPTION_EXTS_READ)})")
    elif ext and ext != ".txt" and any(n.endswith(".txt") for n in names) and any(n.endswith(ext) for n in names):
        sub = ext.lstrip(".")
        notes.append(
            f"the trainer reads *{ext}; sushitui shows x.txt as the main caption and x{ext} as subtype {sub!r} "
            f"(export with --caption {sub})"
        )
    labels = [n for n in names if re.search(r"-(masklabel|condlabel)\.[^.]+$", n)]
    if labels and (settings or {}).get("suffix_separator") != "-":
        notes.append(
            f"{len(labels)} OneTrainer mask/condition files (*-masklabel.png, *-condlabel.png) are indexed as images "
            "of their own; register the folder with `--suffix-separator - --image-suffixes "
            "masklabel=mask,condlabel=source` to group them with their image"
        )
    if "captions.json" in names and fmt == "diffusion-pipe":
        notes.append(
            "captions.json: diffusion-pipe reads the captions there instead of the .txt files; sushitui reads the .txt files"
        )
    return notes


def _name_entries(plan: ImportPlan, prefix: str) -> None:
    from sushitui.store import Dataset

    existing_by_root = {os.path.normpath(d.root_path): d.name for d in Dataset.select(Dataset.name, Dataset.root_path)}
    taken = {d.name for d in Dataset.select(Dataset.name)}
    for e in plan.entries:
        e.existing = existing_by_root.get(e.path)
        if e.existing:
            e.name = e.existing
            continue
        base = f"{prefix}-{os.path.basename(e.path) or 'root'}"[:100]
        name, n = base, 1
        while name in taken:
            n += 1
            name = f"{base[:95]}-{n}"
        taken.add(name)
        e.name = name


def import_config(
    file: str | os.PathLike,
    path_map: list[tuple[str, str]] | None = None,
    workdir: str | None = None,
    fmt: str | None = None,
    name_prefix: str | None = None,
    dry_run: bool = False,
    progress=None,
) -> ImportResult:
    """Read, check, then register every folder (all or none)."""
    from sushitui.dataset.registry import DatasetError, DatasetSettings, add_dataset, remove_dataset
    from sushitui.store import write_transaction

    plan = read_config(file, path_map, workdir, fmt, name_prefix)
    result = ImportResult(plan, dry_run=dry_run)
    if dry_run:
        return result
    done = []
    try:
        for e in plan.entries:
            if e.existing:
                e.unmapped.append(f"already registered as {e.existing!r}; its settings were left as they are")
                continue
            ds, report = add_dataset(
                DatasetSettings(name=e.name, root_path=e.path, recursive=e.recursive, **e.settings), progress=progress
            )
            done.append(ds)
            with write_transaction():
                ds.trainer = e.trainer
                ds.save(only=[type(ds).trainer])
            result.registered.append({"name": ds.name, "id": ds.id, "path": e.path, "items": report.items_total})
    except BaseException as exc:
        for ds in reversed(done):
            remove_dataset(ds)
        if isinstance(exc, DatasetError):
            raise ConfigImportError(f"{plan.config}: nothing was registered: {exc}") from exc
        raise
    return result
