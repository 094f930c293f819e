"""Label files (TAGGERS.md §6.5): WD ``selected_tags.csv`` and both cl_tagger
``tag_mapping.json`` schemas, parsed into one ``LabelSet``.

Position i of the label set is output column i of the model. Holes (indices a
cl_tagger mapping does not name) stay ``None`` and are never emitted.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sushitui.errors import UserError
from sushitui.tags.normalize import clean, underscores_to_spaces, unescape_parens

CATEGORIES = ("rating", "general", "artist", "character", "copyright", "meta", "quality", "model")
OTHER = "other"
WD_CATEGORY_CODES = {9: "rating", 0: "general", 4: "character", 1: "artist", 3: "copyright", 5: "meta"}


class LabelError(UserError, ValueError):
    """A label file that cannot be used; the message names the file and the bad entry."""


@dataclass
class LabelSet:
    names: list[str | None]
    categories: list[str]
    source: str = ""
    _index: dict[str, list[int]] | None = field(default=None, repr=False)
    # per-category index arrays, and the threshold vectors of sushitui.tagger.postprocess
    _arrays: dict[str, Any] = field(default_factory=dict, repr=False)
    _display: dict[tuple[int, bool], str] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.names)

    def indices(self, category: str) -> list[int]:
        """Output columns of ``category``, in label order (holes excluded)."""
        if self._index is None:
            idx: dict[str, list[int]] = {}
            for i, (n, c) in enumerate(zip(self.names, self.categories)):
                if n is not None:
                    idx.setdefault(c, []).append(i)
            self._index = idx
        return self._index.get(category, [])

    def index_array(self, category: str):
        """``indices(category)`` as a cached numpy int64 array (selection runs per image)."""
        arr = self._arrays.get(category)
        if arr is None:
            import numpy as np

            arr = self._arrays[category] = np.asarray(self.indices(category), dtype=np.int64)
        return arr

    def present_categories(self) -> list[str]:
        return [c for c in (*CATEGORIES, OTHER) if self.indices(c)]

    def display(self, i: int, underscores: bool = False) -> str:
        """Tag text for a caption: ``\\(`` unescaped, ``_`` → space except in kaomoji."""
        key = (i, underscores)
        text = self._display.get(key)
        if text is None:  # memoised: the same few thousand tags recur on every image
            raw = unescape_parens(clean(self.names[i] or ""))
            text = self._display[key] = raw if underscores else underscores_to_spaces(raw)
        return text

    def truncated(self, n: int) -> "LabelSet":
        """The first ``n`` labels (a model with fewer outputs than labels)."""
        return LabelSet(self.names[:n], self.categories[:n], self.source)


def _category(value) -> str:
    c = str(value).strip().lower() if value is not None else OTHER
    return c if c in CATEGORIES else OTHER


def parse_wd_csv(path: str | Path) -> LabelSet:
    path = Path(path)
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in (reader.fieldnames or [])]
            missing = [c for c in ("name", "category") if c not in header]
            if missing:
                raise LabelError(
                    f"{path}: the CSV header lacks column(s) {', '.join(missing)} (expected tag_id,name,category,count)"
                )
            names: list[str | None] = []
            cats: list[str] = []
            for row_no, row in enumerate(reader, start=2):
                row = {(k or "").strip(): v for k, v in row.items()}
                try:
                    code = int(str(row["category"]).strip())
                except (TypeError, ValueError):
                    raise LabelError(f"{path}: line {row_no}: category {row['category']!r} is not an integer") from None
                names.append((row["name"] or "").strip() or None)
                cats.append(WD_CATEGORY_CODES.get(code, OTHER))
    except OSError as exc:
        raise LabelError(f"{path}: cannot read the label file: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise LabelError(f"{path}: not UTF-8 text ({exc.reason})") from exc
    if not names:
        raise LabelError(f"{path}: the label file has no rows")
    return LabelSet(names, cats, str(path))


def parse_cl_json(path: str | Path) -> LabelSet:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except OSError as exc:
        raise LabelError(f"{path}: cannot read the label file: {exc.strerror or exc}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise LabelError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise LabelError(f"{path}: expected a JSON object at the top level")
    entries: dict[int, tuple[str, str]] = {}
    if "idx_to_tag" in data:  # schema B (the first cl_tagger releases)
        idx_to_tag = data.get("idx_to_tag") or {}
        tag_to_cat = data.get("tag_to_category") or {}
        if not isinstance(idx_to_tag, dict) or not isinstance(tag_to_cat, dict):
            raise LabelError(f"{path}: idx_to_tag and tag_to_category must be objects")
        for key, tag in idx_to_tag.items():
            idx = _index_key(path, key)
            if not isinstance(tag, str):
                raise LabelError(f"{path}: idx_to_tag[{key!r}] is not a string")
            entries[idx] = (tag, _category(tag_to_cat.get(tag)))
    else:  # schema A: {"<idx>": {"tag": ..., "category": ...}}
        for key, value in data.items():
            idx = _index_key(path, key)
            if not isinstance(value, dict) or not isinstance(value.get("tag"), str):
                raise LabelError(f'{path}: entry {key!r} has no string "tag"')
            entries[idx] = (value["tag"], _category(value.get("category")))
    if not entries:
        raise LabelError(f"{path}: the label file has no entries")
    size = max(entries) + 1
    names: list[str | None] = [None] * size
    cats = [OTHER] * size
    for idx, (tag, cat) in entries.items():
        names[idx] = tag.strip() or None
        cats[idx] = cat
    return LabelSet(names, cats, str(path))


def _index_key(path: Path, key: str) -> int:
    try:
        idx = int(key)
    except (TypeError, ValueError):
        raise LabelError(f"{path}: key {key!r} is not an integer index") from None
    if idx < 0:
        raise LabelError(f"{path}: key {key!r} is a negative index")
    return idx


def load_labels(path: str | Path, family: str | None = None) -> LabelSet:
    """Parse a label file by its type (.csv → WD, .json → cl_tagger)."""
    low = str(path).lower()
    if low.endswith(".csv"):
        return parse_wd_csv(path)
    if low.endswith(".json"):
        return parse_cl_json(path)
    if family == "wd":
        return parse_wd_csv(path)
    if family == "cl":
        return parse_cl_json(path)
    raise LabelError(f"{path}: unknown label file type (expected selected_tags.csv or tag_mapping.json)")
