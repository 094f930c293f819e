"""Quick tagging: how long after Enter is the next image on screen? (QT-4)

Generates N 2-megapixel JPEGs (1920×1080, photo-like noise) with tag captions, opens the
real QuickTagScreen in Textual's headless test harness at 120×40, and for each image
toggles a preset and presses Enter (which saves in the background and moves on). Reports
the time from the key press to the next image being set on screen (and to the next
frame), with prefetching on, against the same run with prefetching off (decode on
demand), plus the plain cost of decoding one image for reference.

    python tests/benchmarks/bench_quicktag.py [--n 30]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def make_images(root: Path, n: int) -> None:
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    base = Image.radial_gradient("L").resize((1920, 1080))
    for i in range(n):
        noise = Image.effect_noise((1920, 1080), 40 + i % 20)
        img = Image.merge("RGB", (base, noise, Image.blend(base, noise, 0.5)))
        img.save(root / f"photo_{i:04d}.jpg", quality=88)
        (root / f"photo_{i:04d}.txt").write_text("1girl, solo, outdoors", encoding="utf-8")


async def run_once(ds_id: int, ids: list[int], prefetch: bool) -> tuple[list[float], list[float]]:
    from textual.app import App

    from sushitui.dataset.preview import shared_preview_cache
    from sushitui.tui.screens.quick_tag import QuickTagScreen
    from sushitui.tui.widgets.cell_image import CellImage

    painted_at = [0.0]
    original = CellImage.render_line

    def timed_render_line(self, y):
        strip = original(self, y)
        painted_at[0] = time.perf_counter()  # the last line of the new picture drawn
        return strip

    CellImage.render_line = timed_render_line

    shared_preview_cache().clear()
    QuickTagScreen.PREFETCH = prefetch

    class BenchApp(App):
        def on_mount(self) -> None:
            self.push_screen(QuickTagScreen(ds_id, ids))

    shown, painted = [], []
    app = BenchApp()
    async with app.run_test(size=(120, 40)) as pilot:
        screen = None
        for _ in range(500):
            await pilot.pause(0.01)
            screen = app.screen
            if isinstance(screen, QuickTagScreen) and screen.shown_item == ids[0] and screen.shown_at:
                break
        await asyncio.sleep(0.5)  # the user looks at the first image; prefetch runs meanwhile
        for i in range(len(ids) - 1):
            await pilot.press("1")
            t0 = time.perf_counter()
            await pilot.press("enter")
            while not (screen.shown_item == ids[i + 1] and screen.shown_at > t0):
                await asyncio.sleep(0.001)
            shown.append(screen.shown_at - t0)
            while painted_at[0] < screen.shown_at:
                await asyncio.sleep(0.001)
            await asyncio.sleep(0.01)  # let the rest of the frame's lines be drawn
            painted.append(painted_at[0] - t0)
            await asyncio.sleep(0.3)  # a fast user: 0.3 s per image
        while screen.pending_saves:
            await asyncio.sleep(0.01)
    CellImage.render_line = original
    return shown, painted


def fmt(values: list[float]) -> str:
    ms = sorted(v * 1000 for v in values)
    p95 = ms[min(len(ms) - 1, int(len(ms) * 0.95))]
    return f"{statistics.median(ms):8.1f} {p95:8.1f} {ms[-1]:8.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=30, help="images (default 30)")
    args = parser.parse_args()
    from sushitui.dataset.preview import decode_preview
    from sushitui.dataset.registry import DatasetSettings, add_dataset
    from sushitui.store import Item, open_database

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_images(tmp / "photos", args.n)
        open_database(tmp / "bench.db")
        ds, _ = add_dataset(DatasetSettings(name="bench", root_path=str(tmp / "photos")))
        from sushitui.dataset.item_view import set_presets

        set_presets(ds.id, ["smile"])
        ids = [i.id for i in Item.select(Item.id).where(Item.dataset == ds.id).order_by(Item.base_name)]
        files = sorted((tmp / "photos").glob("*.jpg"))
        t = time.perf_counter()
        for f in files[:10]:
            decode_preview(f)
        decode_ms = (time.perf_counter() - t) / min(10, len(files)) * 1000
        with_prefetch = asyncio.run(run_once(ds.id, ids, True))
        without = asyncio.run(run_once(ds.id, ids, False))
    print(f"quick tagging, {args.n} JPEGs 1920×1080, Enter → next image (ms)")
    print(f"{'':34} {'median':>8} {'p95':>8} {'max':>8}")
    print(f"{'prefetch on:  image set':34} {fmt(with_prefetch[0])}")
    print(f"{'prefetch on:  picture drawn':34} {fmt(with_prefetch[1])}")
    print(f"{'prefetch off: image set':34} {fmt(without[0])}")
    print(f"{'prefetch off: picture drawn':34} {fmt(without[1])}")
    print(f"{'plain decode of one image':34} {decode_ms:8.1f}")
    ratio = statistics.median(without[1]) / max(1e-9, statistics.median(with_prefetch[1]))
    print(f"prefetch makes moving on {ratio:.1f}× faster (median, frame drawn); target ≤ 100 ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
