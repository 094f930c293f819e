"""The crop frame: set an item's crop rectangle with the keyboard, drawn over the picture.

Arrows move the frame, shift+arrows resize it, ``a`` / ``A`` cycle the aspect ratios of
the trainer's buckets (kohya's at 1024 unless the dataset's trainer settings say
otherwise), ``b`` fits the nearest bucket with the least of the picture lost, ``r`` the
whole image, Enter saves, ``x`` removes the crop, Esc leaves without saving. The picture
is drawn in half-block cells (two pixels per cell, any terminal, 80×24 included); what
the crop cuts away is dimmed and the frame's edge is yellow. Nothing on disk changes but
the dataset's marks file: exports write the cropped image (``sushitui.export.crops``).
"""

from __future__ import annotations

import logging

from rich.style import Style
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

from sushitui.dataset import crop_frame
from sushitui.errors import log_if_unexpected
from sushitui.sanitize import for_terminal

log = logging.getLogger(__name__)

PREVIEW_MAX_SIDE = 512  # decoded once at this size; the cells need far fewer pixels
DIM = 0.3
EDGE = (255, 214, 0)


def bucket_sizes(trainer: str | None, resolution: int = 1024) -> list[tuple[int, int]]:
    """The trainer's bucket sizes (kohya's when the trainer has no fixed list)."""
    from sushitui.check import buckets

    if trainer == "onetrainer":
        return buckets.onetrainer_bucket_resolutions(resolution)
    return buckets.kohya_bucket_resolutions((resolution, resolution))


def render_cells(img, crop: crop_frame.Crop, size: tuple[int, int], cols: int, rows: int) -> Text:
    """The picture in ``cols``×``rows`` half-block cells with the crop drawn on it.
    ``img``: an RGB Pillow image of the picture (any scale); ``size``: the picture's
    real size, in which ``crop`` is given."""
    width, height = size
    scale = min(cols / width, rows * 2 / height)
    pw, ph = max(1, round(width * scale)), max(2, round(height * scale))
    ph += ph % 2
    small = img.resize((pw, ph))
    px = small.load()
    x, y, w, h = crop
    # the frame in preview pixels
    fx0, fy0 = x * pw / width, y * ph / height
    fx1, fy1 = (x + w) * pw / width, (y + h) * ph / height

    def color(i: int, j: int) -> tuple[int, int, int]:
        r, g, b = px[i, j][:3]
        inside = fx0 <= i + 0.5 < fx1 and fy0 <= j + 0.5 < fy1
        if not inside:
            return int(r * DIM), int(g * DIM), int(b * DIM)
        edge = (
            i == int(fx0) or i == max(int(fx0), int(fx1 - 0.5)) or j == int(fy0) or j == max(int(fy0), int(fy1 - 0.5))
        )
        return EDGE if edge else (r, g, b)

    text = Text()
    for row in range(ph // 2):
        for i in range(pw):
            top, bottom = color(i, row * 2), color(i, row * 2 + 1)
            text.append(
                "▀",
                Style(color=f"rgb({top[0]},{top[1]},{top[2]})", bgcolor=f"rgb({bottom[0]},{bottom[1]},{bottom[2]})"),
            )
        if row < ph // 2 - 1:
            text.append("\n")
    return text


class CropDialog(ModalScreen):
    """Edit one item's crop; dismisses with the rectangle to save, "clear", or None."""

    DEFAULT_CSS = """
    CropDialog { align: center middle; }
    CropDialog #crop-box { width: 100%; height: 100%; padding: 0 1; background: $panel; }
    CropDialog #crop-title { height: 1; }
    CropDialog #crop-picture { height: 1fr; }
    CropDialog #crop-help { height: 1; color: $text-muted; }
    """

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="dialog.cancel", tooltip="Leave without changing the crop"),
        Binding(
            "enter,ctrl+s",
            "save",
            "Save crop",
            id="crop.save",
            tooltip="Save this crop (exports write the cropped image)",
        ),
        Binding(
            "x,delete", "clear", "No crop", id="crop.clear", tooltip="Remove the crop: the whole image is exported"
        ),
        Binding("up", "move(0, -1)", "Up", show=False, id="crop.up", tooltip="Move the frame up"),
        Binding("down", "move(0, 1)", "Down", show=False, id="crop.down", tooltip="Move the frame down"),
        Binding("left", "move(-1, 0)", "Left", show=False, id="crop.left", tooltip="Move the frame left"),
        Binding("right", "move(1, 0)", "Right", show=False, id="crop.right", tooltip="Move the frame right"),
        Binding("shift+up", "resize(0, -1)", "Shorter", show=False, id="crop.shorter", tooltip="Make the frame lower"),
        Binding("shift+down", "resize(0, 1)", "Taller", show=False, id="crop.taller", tooltip="Make the frame taller"),
        Binding(
            "shift+left", "resize(-1, 0)", "Narrower", show=False, id="crop.narrower", tooltip="Make the frame narrower"
        ),
        Binding("shift+right", "resize(1, 0)", "Wider", show=False, id="crop.wider", tooltip="Make the frame wider"),
        Binding(
            "a",
            "aspect(1)",
            "Next ratio",
            id="crop.next_aspect",
            tooltip="The next aspect ratio of the trainer's buckets",
        ),
        Binding(
            "A", "aspect(-1)", "Previous ratio", show=False, id="crop.prev_aspect", tooltip="The previous aspect ratio"
        ),
        Binding(
            "b",
            "fit_bucket",
            "Fit bucket",
            id="crop.fit_bucket",
            tooltip="The nearest bucket's ratio, as large as the picture allows",
        ),
        Binding("r", "reset", "Whole image", show=False, id="crop.reset", tooltip="The frame around the whole image"),
    ]

    def __init__(
        self, path, size: tuple[int, int], crop: crop_frame.Crop | None, buckets: list[tuple[int, int]], name: str = ""
    ) -> None:
        super().__init__()
        self.path = path
        self.image_size = size
        self.crop = crop_frame.clamp(crop, *size) if crop else crop_frame.full(*size)
        self.buckets = buckets
        self.presets = crop_frame.aspect_presets(buckets)
        self.preset_index: int | None = None
        self.aspect: float | None = None  # a chosen ratio, kept while resizing
        self.item_name = name
        self.image = None

    def compose(self) -> ComposeResult:
        with Vertical(id="crop-box"):
            yield Static("", id="crop-title")
            yield Static("loading the picture…", id="crop-picture")
            yield Static(
                "arrows move · shift+arrows size · a ratio · b bucket · r all · ⏎ save · x none · esc", id="crop-help"
            )

    def on_mount(self) -> None:
        self._update_title()
        self._load()

    @work(thread=True, exclusive=True, group="crop-picture", exit_on_error=False)
    def _load(self) -> None:
        from PIL import Image, ImageOps

        try:
            with Image.open(self.path) as img:
                # the upright size (EXIF orientation applied), in which crops are given
                size = img.size[::-1] if img.getexif().get(0x0112, 1) in (5, 6, 7, 8) else img.size
                img.draft("RGB", (PREVIEW_MAX_SIDE, PREVIEW_MAX_SIDE))
                picture = ImageOps.exif_transpose(img).convert("RGB")
                picture.thumbnail((PREVIEW_MAX_SIDE, PREVIEW_MAX_SIDE))
        except Exception as exc:  # noqa: BLE001 - the frame can be set without the picture; a bug is logged
            log_if_unexpected(log, exc, "crop preview")
            self.app.call_from_thread(self._picture_failed, str(exc))
            return
        self.app.call_from_thread(self._picture_ready, picture, size)

    def _picture_ready(self, img, size: tuple[int, int]) -> None:
        self.image = img
        if size != self.image_size:  # the index's size is the stored one; the picture decides
            self.image_size = size
            self.crop = crop_frame.clamp(self.crop, *size)
        self._draw()

    def _picture_failed(self, why: str) -> None:
        self.query_one("#crop-picture", Static).update(
            Text(for_terminal(f"the picture cannot be shown: {why}"), style="red")
        )

    def on_resize(self) -> None:
        self._draw()

    def _update_title(self) -> None:
        x, y, w, h = self.crop
        t = Text("Crop ", style="bold")
        t.append(for_terminal(self.item_name), style="bold")
        t.append(f"  {x},{y},{w},{h}  of {self.image_size[0]}×{self.image_size[1]}")
        g = __import__("math").gcd(w, h)
        t.append(f"  ratio {w // g}:{h // g}" if w // g < 100 else f"  ratio {w / h:.3f}", style="dim")
        if self.aspect and self.preset_index is not None:
            b = self.presets[self.preset_index]
            t.append(f"  locked to bucket {b[0]}×{b[1]}", style="cyan")
        self.query_one("#crop-title", Static).update(t)

    def _draw(self) -> None:
        self._update_title()
        if self.image is None:
            return
        area = self.query_one("#crop-picture", Static).size
        cols, rows = max(4, area.width), max(2, area.height)
        self.query_one("#crop-picture", Static).update(render_cells(self.image, self.crop, self.image_size, cols, rows))

    def _set(self, crop: crop_frame.Crop) -> None:
        self.crop = crop
        self._draw()

    # -- keys ----------------------------------------------------------------------------
    def action_move(self, dx: int, dy: int) -> None:
        step = crop_frame.step_of(*self.image_size)
        self._set(crop_frame.move(self.crop, dx * step, dy * step, *self.image_size))

    def action_resize(self, dw: int, dh: int) -> None:
        step = crop_frame.step_of(*self.image_size)
        self._set(crop_frame.resize(self.crop, dw * step, dh * step, *self.image_size, aspect=self.aspect))

    def action_aspect(self, direction: int) -> None:
        if not self.presets:
            return
        if self.preset_index is None:
            ratio = self.crop[2] / self.crop[3]
            ahead = [i for i, b in enumerate(self.presets) if (b[0] / b[1] > ratio + 1e-9) == (direction > 0)]
            self.preset_index = (ahead[0] if direction > 0 else ahead[-1]) if ahead else 0
        else:
            self.preset_index = (self.preset_index + direction) % len(self.presets)
        b = self.presets[self.preset_index]
        self.aspect = b[0] / b[1]
        self._set(crop_frame.with_aspect(self.crop, self.aspect, *self.image_size))

    def action_fit_bucket(self) -> None:
        if not self.buckets:
            return
        crop, bucket = crop_frame.fit_bucket(self.crop, self.buckets, *self.image_size)
        self.aspect = bucket[0] / bucket[1]
        self.preset_index = next((i for i, b in enumerate(self.presets) if abs(b[0] / b[1] - self.aspect) < 1e-3), None)
        self._set(crop)

    def action_reset(self) -> None:
        self.aspect = None
        self.preset_index = None
        self._set(crop_frame.full(*self.image_size))

    def action_save(self) -> None:
        self.dismiss(self.crop)

    def action_clear(self) -> None:
        self.dismiss("clear")

    def action_cancel(self) -> None:
        self.dismiss(None)
