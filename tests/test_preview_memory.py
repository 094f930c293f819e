"""Previews decode at the size the terminal can show (issue 14 item 9).

Four 9,400×9,400 PNGs of ~280 KB each took item detail to 3.3 GB (2.9 GB resident
afterwards) and the browser to 757 MB: Pillow decodes a PNG whole, at 4 bytes per
pixel, and the detail screen decodes the neighbours in parallel. Each test runs the
real code in a fresh process and reads that process's own peak RSS (``VmHWM``, which
exec starts afresh; ``ru_maxrss`` is kept across exec and can report pytest's peak).
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # long stress test: skipped by the quick run, run by CI

TESTS = Path(__file__).resolve().parent
LIMIT_MB = 300
HUGE = 9400  # 88 megapixels: over the preview budget


def solid_png(path: Path, width: int, height: int, rgba: tuple[int, int, int, int] | None = None) -> None:
    """A one-colour PNG written row by row (Pillow would need the whole image in memory):
    9,400×9,400 RGB compresses to ~280 KB, like the images of the report."""
    pixel = bytes(rgba) if rgba else bytes((200, 30, 30))
    row = b"\x00" + pixel * width
    comp = zlib.compressobj(6)
    idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 6 if rgba else 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, list[Path]]:
    root = tmp_path_factory.mktemp("preview-memory")
    huge = root / "huge"
    huge.mkdir()
    solid_png(huge / "a.png", HUGE, HUGE)
    for name in "bcd":
        shutil.copy(huge / "a.png", huge / f"{name}.png")
    # at the budget (36 megapixels), RGBA: these are decoded and shown
    near = root / "near"
    near.mkdir()
    solid_png(near / "e.png", 6000, 6000, (10, 200, 30, 255))
    for name in "fgh":
        shutil.copy(near / "e.png", near / f"{name}.png")
    return {"huge": sorted(huge.glob("*.png")), "near": sorted(near.glob("*.png"))}


def _run_child(code: str, *args: str) -> dict:
    # own_peak_kb reads VmHWM: ru_maxrss survives exec and can report pytest's own peak
    code = "import sys\nsys.path.insert(0, '.')\nfrom reliability_support import own_peak_kb\n" + textwrap.dedent(code)
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120, cwd=TESTS)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


DETAIL_CHILD = """
    import asyncio, json, resource, sys, time
    sys.path.insert(0, ".")
    from sushitui.store import Item, open_database
    from sushitui.dataset.registry import DatasetSettings, add_dataset
    from sushitui.tui.screens.item_detail import ItemDetailScreen
    from sushitui.tui.widgets.preview_pane import PreviewPane
    from textual.widgets import Static
    from detail_helpers import ScreenApp

    db_path, root = sys.argv[1:3]
    db = open_database(db_path)
    ds, _ = add_dataset(DatasetSettings(name="big", root_path=root))
    ids = [i.id for i in Item.select().where(Item.dataset == ds.id).order_by(Item.base_name)]
    app = ScreenApp(lambda: ItemDetailScreen(ids[0], ids))
    shown = []

    def state():
        pane = app.screen.query_one(PreviewPane)
        msg = pane.query_one(".pane-message", Static)
        return str(msg.content) if msg.display else "picture"

    async def go():
        async with app.run_test(size=(120, 40)) as pilot:
            for n in range(len(ids)):
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    await pilot.pause(0.05)
                    s = state()
                    if s != "loading…" and app.screen.item_id == ids[n]:
                        break
                shown.append(state())
                await pilot.press("right")
            await pilot.pause(0.5)  # let the last prefetches finish

    asyncio.run(go())
    print(json.dumps({"shown": shown, "peak_mb": own_peak_kb() / 1024}))
"""


def test_item_detail_of_four_huge_pngs_stays_small_and_says_why(tmp_path, images):
    """The user sees why there is no picture, and memory stays far below the 3.3 GB."""
    root = images["huge"][0].parent
    got = _run_child(DETAIL_CHILD, str(tmp_path / "t.db"), str(root))
    assert len(got["shown"]) == 4
    for text in got["shown"]:
        assert text == f"too large to preview ({HUGE}×{HUGE}); open it in an image viewer", got
    assert got["peak_mb"] < LIMIT_MB, got


def test_item_detail_of_images_within_the_budget_shows_them_in_bounded_memory(tmp_path, images):
    """36-megapixel RGBA PNGs (144 MB each decoded, the most the budget lets through)
    are shown; the neighbours are decoded one at a time, so the peaks do not add up."""
    root = images["near"][0].parent
    got = _run_child(DETAIL_CHILD, str(tmp_path / "t.db"), str(root))
    assert got["shown"] == ["picture"] * 4, got
    assert got["peak_mb"] < LIMIT_MB, got


CACHE_CHILD = """
    import json, os, resource, sys, threading
    from sushitui.dataset.preview import PreviewCache
    from sushitui.dataset.thumbnails import ThumbnailCache

    kind, paths = sys.argv[1], sys.argv[2:]
    if kind == "thumbnails":  # the browser: a page of cards decoded by its thread pool
        cache = ThumbnailCache()
        results = cache.load_many([(p, 1) for p in paths])
    else:  # the detail screens: current image and prefetched neighbours, each in a thread
        cache = PreviewCache()
        results = [None] * len(paths)

        def one(i):
            results[i] = cache.load(paths[i], 1)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(len(paths))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    with open(f"/proc/{os.getpid()}/statm") as fh:
        resident_mb = int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    print(json.dumps({
        "shown": [list(r.image.size) if r.image is not None else r.reason for r in results],
        "peak_mb": own_peak_kb() / 1024,
        "resident_mb": resident_mb,
    }))
"""


@pytest.mark.parametrize("kind", ["thumbnails", "previews"])
def test_huge_pngs_are_refused_from_the_header_in_both_caches(images, kind):
    got = _run_child(CACHE_CHILD, kind, *map(str, images["huge"]))
    assert got["shown"] == [f"too large to preview ({HUGE}×{HUGE}); open it in an image viewer"] * 4, got
    assert got["peak_mb"] < 100, got  # nothing of the 353 MB per image is ever allocated


@pytest.mark.parametrize("kind, box", [("thumbnails", 256), ("previews", 1024)])
def test_big_decodes_take_turns_and_give_their_memory_back(images, kind, box):
    """Four 144 MB decodes at once would peak near 600 MB; taking turns and returning
    the freed pixels to the system keeps the peak under the limit and the process
    small afterwards (it stayed at 2.9 GB)."""
    if not Path("/proc/self/statm").exists():
        pytest.skip("reads the resident size from /proc (Linux)")
    got = _run_child(CACHE_CHILD, kind, *map(str, images["near"]))
    assert got["shown"] == [[box, box]] * 4, got
    assert got["peak_mb"] < LIMIT_MB - 50, got
    assert got["resident_mb"] < 120, got
