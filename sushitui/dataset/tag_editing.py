"""An editable tag list with undo/redo (IT-3, IT-9, QT-2): the model behind the item
detail and quick tagging screens, with no UI in it so that it can be tested on its own.

Every change is one undo step; the editor remembers the tags that are on disk
(``baseline``) so that the screens know when there is something to save and can revert.
Tags are compared by ``match_key`` (``long_hair`` is ``long hair``), their spelling kept.
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

from sushitui.tags.normalize import clean, dedupe, match_key, split_tags

HISTORY_LIMIT = 500


class TagListEditor:
    """A list of tags with undo/redo; ``resolve`` maps a typed tag to its alias target."""

    def __init__(self, tags: Sequence[str] = (), *, resolve: Callable[[str], str] | None = None) -> None:
        self._tags: list[str] = dedupe(tags)
        self._baseline: list[str] = list(self._tags)
        self._undo: list[list[str]] = []
        self._redo: list[list[str]] = []
        self._resolve = resolve

    # --- reading ---------------------------------------------------------------------

    @property
    def tags(self) -> list[str]:
        return list(self._tags)

    @property
    def baseline(self) -> list[str]:
        return list(self._baseline)

    @property
    def dirty(self) -> bool:
        """True when the tags differ from what was last loaded or saved (order counts)."""
        return self._tags != self._baseline

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    def index_of(self, tag: str) -> int:
        key = match_key(tag)
        for i, t in enumerate(self._tags):
            if match_key(t) == key:
                return i
        return -1

    def has(self, tag: str) -> bool:
        return self.index_of(tag) >= 0

    def __len__(self) -> int:
        return len(self._tags)

    # --- editing (each call is one undo step; no-ops record nothing) -------------------

    def _normal(self, tag: str) -> str:
        tag = clean(tag)
        if tag and self._resolve is not None:
            tag = clean(self._resolve(tag)) or tag
        return tag

    def _apply(self, new: list[str]) -> bool:
        if new == self._tags:
            return False
        self._undo.append(self._tags)
        if len(self._undo) > HISTORY_LIMIT:
            del self._undo[0]
        self._redo.clear()
        self._tags = new
        return True

    def add(self, tag: str, position: int | None = None) -> bool:
        """Add a tag (alias applied) at ``position`` (default: the end); a tag that is
        already there is not added twice."""
        tag = self._normal(tag)
        if not tag or self.has(tag):
            return False
        new = list(self._tags)
        new.insert(len(new) if position is None else max(0, min(position, len(new))), tag)
        return self._apply(new)

    def add_many(self, tags: Iterable[str]) -> int:
        """Add several tags as one undo step (paste); returns how many were new."""
        new = list(self._tags)
        keys = {match_key(t) for t in new}
        added = 0
        for raw in tags:
            tag = self._normal(raw)
            key = match_key(tag)
            if tag and key not in keys:
                keys.add(key)
                new.append(tag)
                added += 1
        self._apply(new)
        return added

    def paste_text(self, text: str) -> int:
        """Add the tags of a comma-separated caption (clipboard text)."""
        return self.add_many(split_tags(text))

    def remove(self, index: int) -> str | None:
        if not 0 <= index < len(self._tags):
            return None
        new = list(self._tags)
        removed = new.pop(index)
        self._apply(new)
        return removed

    def remove_tag(self, tag: str) -> bool:
        i = self.index_of(tag)
        return self.remove(i) is not None if i >= 0 else False

    def toggle(self, tag: str) -> bool:
        """Remove the tag if present, else add it; returns True when it is now present."""
        if self.remove_tag(self._normal(tag)) or self.remove_tag(tag):
            return False
        return self.add(tag)

    def move(self, index: int, delta: int) -> int:
        """Move the tag at ``index`` by ``delta`` places; returns its new index."""
        if not 0 <= index < len(self._tags):
            return index
        target = max(0, min(len(self._tags) - 1, index + delta))
        if target == index:
            return index
        new = list(self._tags)
        new.insert(target, new.pop(index))
        self._apply(new)
        return target

    def clear(self) -> bool:
        return self._apply([])

    def set_tags(self, tags: Sequence[str]) -> bool:
        """Replace the whole list (as one undo step)."""
        return self._apply(dedupe(tags))

    def revert(self) -> bool:
        """Back to the saved tags (undoable)."""
        return self._apply(list(self._baseline))

    # --- history -----------------------------------------------------------------------

    def undo(self) -> bool:
        if not self._undo:
            return False
        self._redo.append(self._tags)
        self._tags = self._undo.pop()
        return True

    def redo(self) -> bool:
        if not self._redo:
            return False
        self._undo.append(self._tags)
        self._tags = self._redo.pop()
        return True

    # --- saving ------------------------------------------------------------------------

    def mark_saved(self, tags: Sequence[str] | None = None) -> None:
        """The tags now on disk (default: the current ones); history is kept."""
        self._baseline = list(self._tags if tags is None else dedupe(tags))

    def adopt(self, tags: Sequence[str]) -> None:
        """Take a version from disk: it becomes the current and saved tags; the previous
        list stays one undo step away so nothing the user typed is lost."""
        self._apply(dedupe(tags))
        self._baseline = list(self._tags)
