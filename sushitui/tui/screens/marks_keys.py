"""Stars and flags from the keyboard, the same keys on the browser, item detail and quick
tagging (``sushitui.dataset.marks`` does the work, in a thread worker).

Keys: ``0``-``5`` set the stars (browser, item detail; quick tagging's digits are its
preset tags), ``>`` / ``<`` one star more / fewer (all three), ``E`` exclude, ``N`` needs
work, ``G`` reg (toggles; all three). On the browser they act on the selection, or on the
item under the cursor when nothing is selected. Every key has an id (``marks.*``) for
keymap.toml.

A screen mixes in ``MarkKeys`` and says which items a key acts on (``mark_targets``) and
what to redraw after (``marks_changed``).
"""

from __future__ import annotations

import logging
from typing import Callable

from textual.binding import Binding

from sushitui.errors import UserError, log_if_unexpected
from sushitui.sanitize import for_terminal

log = logging.getLogger(__name__)

RATE_BINDINGS = [
    Binding(
        str(n),
        f"rate({n})",
        f"{n} stars" if n else "No stars",
        show=False,
        id=f"marks.rate_{n}",
        tooltip=f"Give {n} star{'s' if n != 1 else ''} (the selection, or this item)"
        if n
        else "Clear the stars (the selection, or this item)",
    )
    for n in range(0, 6)
]
STEP_BINDINGS = [
    Binding(
        "greater_than_sign",
        "rate_step(1)",
        "One star more",
        show=False,
        id="marks.rate_up",
        tooltip="One star more (up to 5)",
    ),
    Binding(
        "less_than_sign",
        "rate_step(-1)",
        "One star fewer",
        show=False,
        id="marks.rate_down",
        tooltip="One star fewer (down to none)",
    ),
]
FLAG_BINDINGS = [
    Binding(
        "E",
        "flag('exclude')",
        "Exclude",
        show=False,
        id="marks.flag_exclude",
        tooltip="Flag or unflag exclude: left out of exports (flag:exclude finds them)",
    ),
    Binding(
        "N",
        "flag('needs-work')",
        "Needs work",
        show=False,
        id="marks.flag_needs_work",
        tooltip="Flag or unflag needs-work (flag:needs-work finds them)",
    ),
    Binding(
        "G",
        "flag('reg')",
        "Regularisation",
        show=False,
        id="marks.flag_reg",
        tooltip="Flag or unflag reg, a regularisation image (flag:reg finds them)",
    ),
]
# browser and item detail
MARK_BINDINGS = RATE_BINDINGS + STEP_BINDINGS + FLAG_BINDINGS
# quick tagging: its digits toggle preset tags
QUICK_TAG_MARK_BINDINGS = STEP_BINDINGS + FLAG_BINDINGS


def _describe(result, what: str, n: int) -> str:
    if not result.changed:
        return f"{what}: unchanged" if n == 1 else f"{what}: all {n:,} had it already"
    return f"{what}" if n == 1 else f"{what}: {result.changed:,} of {n:,} items"


class MarkKeys:
    """Actions of the mark keys for a Screen. The screen provides ``mark_targets()`` (the
    item ids a key acts on, None for none) and may override ``marks_changed(ids)``."""

    def mark_targets(self) -> list[int] | None:  # pragma: no cover - every screen overrides it
        raise NotImplementedError

    def marks_changed(self, item_ids: list[int]) -> None:
        """Redraw what shows marks (after a change)."""

    marks_label = ""  # the shown item's marks as text ("★★★☆☆ exclude"), see load_marks_label

    def load_marks_label(self, item_id: int, then: Callable[[], None]) -> None:
        """Read one item's marks in a worker into ``marks_label``, then call ``then``."""

        def read() -> None:
            from sushitui.dataset.marks import item_marks

            try:
                label = item_marks(item_id).label()
            except Exception as exc:  # noqa: BLE001 - a title without marks is better than none; a bug is logged
                log_if_unexpected(log, exc, "reading marks")
                return
            self.app.call_from_thread(done, label)  # type: ignore[attr-defined]

        def done(label: str) -> None:
            self.marks_label = label
            then()

        self.run_worker(
            read,
            thread=True,
            group="marks-label",
            exclusive=True,  # type: ignore[attr-defined]
            exit_on_error=False,
        )

    # -- the actions ----------------------------------------------------------------------
    def action_rate(self, stars: int) -> None:
        from sushitui.dataset.marks import Marks, set_rating

        label = Marks(stars).stars() or "no stars"
        self._mark(lambda ids: set_rating(ids, stars), label)

    def action_rate_step(self, step: int) -> None:
        from sushitui.dataset.marks import step_rating

        self._mark(lambda ids: step_rating(ids, step), "one star more" if step > 0 else "one star fewer")

    def action_flag(self, flag: str) -> None:
        from sushitui.dataset.marks import set_flag

        self._mark(lambda ids: set_flag(ids, flag, None), flag)

    # -- plumbing -------------------------------------------------------------------------------
    def _mark(self, change: Callable, what: str) -> None:
        ids = self.mark_targets()
        if not ids:
            return
        self.run_worker(
            lambda: self._mark_worker(ids, change, what),
            thread=True,  # type: ignore[attr-defined]
            group="marks",
            exit_on_error=False,
        )

    def _mark_worker(self, ids: list[int], change: Callable, what: str) -> None:
        from sushitui.dataset.marks import item_marks

        app = self.app  # type: ignore[attr-defined]
        try:
            result = change(ids)
        except Exception as exc:  # noqa: BLE001 - shown to the user; a bug is logged with its traceback
            if not isinstance(exc, UserError):
                log_if_unexpected(log, exc, "setting marks")
            app.call_from_thread(self.notify, for_terminal(str(exc)), severity="error", timeout=10)  # type: ignore[attr-defined]
            return
        if len(ids) == 1:
            now = item_marks(ids[0]).label() or "no marks"
            text = f"{_describe(result, what, 1)} → {now}"
        else:
            text = _describe(result, what, len(ids))
        app.call_from_thread(self._marks_done, ids, text)

    def _marks_done(self, ids: list[int], text: str) -> None:
        self.notify(for_terminal(text), timeout=3)  # type: ignore[attr-defined]
        self.marks_changed(ids)


# --- removing items (sushitui.dataset.remove) ------------------------------------------------------

TRASH_BINDINGS = [
    Binding(
        "D",
        "trash_items",
        "Remove item",
        show=False,
        id="item.trash",
        tooltip="Move the item's image, captions and sidecars to the trash (the selection on the browser)",
    ),
    Binding(
        "U",
        "restore_items",
        "Undo remove",
        show=False,
        id="item.restore",
        tooltip="Bring back what the last remove moved to the trash",
    ),
]


class TrashKeys:
    """``D`` moves the items of ``mark_targets()`` to the trash (after a yes), ``U`` undoes
    the screen's last removal. The screen may override ``items_removed(ids)`` and
    ``items_restored()`` to redraw."""

    _last_removal = None

    def items_removed(self, item_ids: list[int]) -> None:
        """Redraw after items left the index."""

    def items_restored(self, item_ids: list[int]) -> None:
        """Redraw after a removal was undone (``item_ids``: the items' ids now)."""

    async def before_trash(self) -> bool:
        """Run before asking (item detail saves its edits first); False stops the remove."""
        return True

    async def action_trash_items(self) -> None:
        from sushitui.tui.widgets.confirm import ConfirmDialog

        ids = self.mark_targets()  # type: ignore[attr-defined]
        if not ids or not await self.before_trash():
            return
        what = "this item" if len(ids) == 1 else f"{len(ids):,} items"
        question = f"Move {what} (image, captions, sidecars) to the trash? U brings it back while this screen is open."

        def answered(yes: bool | None) -> None:
            if yes:
                self.run_worker(
                    lambda: self._trash_worker(ids),
                    thread=True,
                    group="trash",  # type: ignore[attr-defined]
                    exit_on_error=False,
                )

        self.app.push_screen(ConfirmDialog(question, yes_label="Move to trash", danger=True), answered)  # type: ignore[attr-defined]

    def _trash_worker(self, ids: list[int]) -> None:
        from sushitui.dataset.marks import dataset_of
        from sushitui.dataset.remove import remove_items

        app = self.app  # type: ignore[attr-defined]
        try:
            removal = remove_items(dataset_of(ids), ids)
        except Exception as exc:  # noqa: BLE001 - shown to the user; a bug is logged with its traceback
            log_if_unexpected(log, exc, "removing items")
            app.call_from_thread(self.notify, for_terminal(str(exc)), severity="error", timeout=10)  # type: ignore[attr-defined]
            return
        app.call_from_thread(self._trash_done, removal)

    def _trash_done(self, removal) -> None:
        if removal.items:
            self._last_removal = removal
        n = len(removal.items)
        text = f"Removed {n:,} item{'s' if n != 1 else ''}: {len(removal.files):,} files moved to {removal.where}. U undoes."
        if removal.problems:
            text += "\n" + "\n".join(removal.problems[:3])
        self.notify(
            for_terminal(text),
            severity="warning" if removal.problems else "information",  # type: ignore[attr-defined]
            timeout=8,
        )
        if removal.items:
            self.items_removed([i.item_id for i in removal.items])

    def action_restore_items(self) -> None:
        removal = self._last_removal
        if removal is None:
            self.notify("Nothing to bring back: no item was removed here.", timeout=3)  # type: ignore[attr-defined]
            return
        self._last_removal = None
        self.run_worker(
            lambda: self._restore_worker(removal),
            thread=True,
            group="trash",  # type: ignore[attr-defined]
            exit_on_error=False,
        )

    def _restore_worker(self, removal) -> None:
        from sushitui.dataset.remove import restore

        app = self.app  # type: ignore[attr-defined]
        try:
            problems = restore(removal)
        except Exception as exc:  # noqa: BLE001 - shown to the user; a bug is logged with its traceback
            log_if_unexpected(log, exc, "restoring items")
            app.call_from_thread(self.notify, for_terminal(str(exc)), severity="error", timeout=10)  # type: ignore[attr-defined]
            return
        app.call_from_thread(self._restore_done, len(removal.items), problems, removal.restored_ids)

    def _restore_done(self, n: int, problems: list[str], ids: list[int]) -> None:
        text = f"Brought back {n:,} item{'s' if n != 1 else ''}."
        if problems:
            text += "\n" + "\n".join(problems[:3])
        self.notify(for_terminal(text), severity="warning" if problems else "information", timeout=6)  # type: ignore[attr-defined]
        self.items_restored(ids)


# --- the crop frame (item detail) ----------------------------------------------------------------

CROP_BINDINGS = [
    Binding(
        "f",
        "crop_frame",
        "Crop",
        show=False,
        id="detail.crop",
        tooltip="Set the crop frame: arrows move, shift+arrows resize, a ratio, b fit bucket (exports crop)",
    ),
]


class CropKey:
    """``f`` opens the crop frame for the item the screen shows (``self.view``)."""

    def action_crop_frame(self) -> None:
        view = getattr(self, "view", None)
        path = view.abs_path(view.image_path) if view is not None else None
        if view is None or path is None or not view.width or not view.height:
            self.notify("This item has no image to crop.", timeout=3)  # type: ignore[attr-defined]
            return
        self.run_worker(
            lambda: self._crop_worker(view, path),
            thread=True,
            group="crop",  # type: ignore[attr-defined]
            exit_on_error=False,
        )

    def _crop_worker(self, view, path) -> None:
        from sushitui.dataset.marks import item_marks
        from sushitui.dataset.registry import get_dataset
        from sushitui.tui.screens.crop_dialog import bucket_sizes

        try:
            trainer = (get_dataset(view.dataset_id).trainer or {}).get("format")
            crop = item_marks(view.item_id).crop
            buckets = bucket_sizes(trainer if isinstance(trainer, str) else None)
        except Exception as exc:  # noqa: BLE001 - shown to the user; a bug is logged with its traceback
            log_if_unexpected(log, exc, "opening the crop frame")
            self.app.call_from_thread(self.notify, for_terminal(str(exc)), severity="error")  # type: ignore[attr-defined]
            return
        self.app.call_from_thread(self._open_crop, view, path, crop, buckets)  # type: ignore[attr-defined]

    def _open_crop(self, view, path, crop, buckets) -> None:
        from sushitui.tui.screens.crop_dialog import CropDialog

        name = f"{view.rel_dir}/{view.base_name}" if view.rel_dir else view.base_name
        dialog = CropDialog(path, (view.width, view.height), crop, buckets, name)

        def chosen(result) -> None:
            if result is None:
                return
            rect = None if result == "clear" or result == (0, 0, *dialog.image_size) else result
            what = "crop removed" if rect is None else "crop " + ",".join(map(str, rect))
            self._mark_worker_async([view.item_id], rect, what)

        self.app.push_screen(dialog, chosen)  # type: ignore[attr-defined]

    def _mark_worker_async(self, ids: list[int], rect, what: str) -> None:
        from sushitui.dataset.marks import set_crop

        self._mark(lambda _ids: set_crop(ids[0], rect), what)  # type: ignore[attr-defined]
