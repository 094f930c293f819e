"""Choosing and transforming an item's caption for a trainer (EX-2).

The result is the text the trainer reads: one line (kohya reads only the first line of
a caption file), the trigger word first. Tag captions go through aliases, excluded tag
groups, underscores → spaces and escaped parentheses; prose captions are only folded
onto one line and prefixed with the trigger.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Sequence

from sushitui.export.options import ExportOptions
from sushitui.tags import normalize

MAIN_ALIASES = ("main", "")  # ``image.txt`` is the main caption (layout A)
_TAG_SEPARATORS = re.compile(r"[,\n\r]")  # as normalize.split_tags splits
_MEMO_LIMIT = 1_000_000


@dataclass(frozen=True)
class CaptionRow:
    """The parts of a Caption row the export needs."""

    type: str
    subtype: str
    content: str


@dataclass(frozen=True)
class BuiltCaption:
    text: str  # what goes into the caption file / metadata, one line
    kind: str  # "tags" or "text"
    subtype: str | None  # the subtype that was chosen (None: the item had no caption)


def choose_caption(rows: Sequence[CaptionRow], order: Sequence[str]) -> CaptionRow | None:
    """The first non-empty caption in ``order``; each entry names a subtype (``main``
    also matches the unsuffixed caption) or, failing that, a caption type."""
    for want in order:
        want = want.strip()
        if not want:
            continue
        subtypes = MAIN_ALIASES if want == "main" else (want,)
        for sub in subtypes:
            for row in rows:
                if row.subtype == sub and row.content.strip():
                    return row
        for row in rows:
            if row.type == want and row.content.strip():
                return row
    return None


class CaptionBuilder:
    """Applies the export options to captions; built once per export (it loads the
    alias table and the excluded groups' members up front, so building a caption
    does no database work)."""

    def __init__(
        self, options: ExportOptions, alias_map: dict[str, str] | None = None, excluded_norms: Iterable[str] = ()
    ):
        self.options = options
        self.alias_map = alias_map or {}
        self.excluded = frozenset(excluded_norms)
        self.trigger = normalize.clean(options.trigger) if options.trigger else ""
        self.trigger_tags = normalize.split_tags(self.trigger) if self.trigger else []
        self._trigger_keys = {normalize.match_key(t) for t in self.trigger_tags}
        self._memo: dict[str, tuple[str, str] | None] = {}

    @classmethod
    def from_database(cls, options: ExportOptions) -> "CaptionBuilder":
        from sushitui.store import Alias, TagGroup, TagGroupMember

        alias_map = {}
        if options.aliases:
            alias_map = {row.from_norm: row.to_tag for row in Alias.select(Alias.from_norm, Alias.to_tag)}
        excluded: set[str] = set()
        wanted = {g.strip().lower() for g in options.exclude_groups if g.strip()}
        if wanted:
            from sushitui.export.options import ExportError

            groups = {g.name.lower(): g.id for g in TagGroup.select(TagGroup.id, TagGroup.name)}
            missing = sorted(wanted - groups.keys())
            if missing:
                known = ", ".join(sorted(groups)) or "none defined"
                raise ExportError(f"unknown tag group(s): {', '.join(missing)} (known: {known})")
            ids = [groups[w] for w in wanted]
            excluded = {m.norm for m in TagGroupMember.select(TagGroupMember.norm).where(TagGroupMember.group.in_(ids))}
        return cls(options, alias_map, excluded)

    def _tag_info(self, part: str) -> tuple[str, str] | None:
        """(exported spelling, match key) of one raw tag, or None when it is dropped.

        Memoised per distinct raw tag: a 100k-item dataset repeats a few thousand tags
        millions of times, and normalising each occurrence cost ~0.5 ms per caption."""
        try:
            return self._memo[part]
        except KeyError:
            pass
        opts = self.options
        tag = normalize.clean(part)
        info: tuple[str, str] | None = None
        if tag:
            if self.alias_map:
                tag = self.alias_map.get(normalize.match_key(tag), tag)
            key = normalize.match_key(tag)
            if key not in self.excluded and key not in self._trigger_keys:
                if opts.underscores_to_spaces:
                    tag = normalize.underscores_to_spaces(tag)
                if opts.escape_parens:
                    tag = normalize.escape_parens(tag)
                info = (tag, key)  # neither transform changes the match key
        if len(self._memo) >= _MEMO_LIMIT:
            self._memo.clear()
        self._memo[part] = info
        return info

    def transform_text_tags(self, text: str) -> list[str]:
        """A tag caption's text → the exported tags: split like ``normalize.split_tags``,
        aliases, excluded groups, spelling options, duplicates (by match key) dropped,
        the trigger first."""
        out = list(self.trigger_tags)
        seen = set(self._trigger_keys)
        memo = self._memo
        for part in _TAG_SEPARATORS.split(text):
            try:
                info = memo[part]
            except KeyError:  # a tag not seen yet (rare: captions repeat their tags)
                info = self._tag_info(part)
            if info is not None and info[1] not in seen:
                seen.add(info[1])
                out.append(info[0])
        return out

    def transform_tags(self, tags: Sequence[str]) -> list[str]:
        return self.transform_text_tags(",".join(tags))

    def transform_text(self, text: str) -> str:
        line = " ".join(text.split())  # one line: kohya reads only the first line
        if self.trigger:
            low = line.lower()
            t = self.trigger.lower()
            if not (low == t or low.startswith(t + ",") or low.startswith(t + " ")):
                line = f"{self.trigger}, {line}" if line else self.trigger
        return line

    def build(self, rows: Sequence[CaptionRow]) -> BuiltCaption:
        row = choose_caption(rows, self.options.caption)
        if row is None:
            return BuiltCaption(normalize.join_tags(self.trigger_tags), "tags", None)
        if row.type == "tags":
            return BuiltCaption(normalize.join_tags(self.transform_text_tags(row.content)), "tags", row.subtype)
        return BuiltCaption(self.transform_text(row.content), "text", row.subtype)
