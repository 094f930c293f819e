"""Browser speed on a generated dataset (issue 4, BR-2, NF-1), measured with Pilot.

    python tests/benchmarks/bench_tui.py [--n 100000] [--root DIR] [--size 200x60]

- first paint: from pushing the browser screen to the first page of cards on screen
  (and to its thumbnails), compared with the obvious alternative of loading every item
  name into a ``DataTable`` (what a naive browser does) in the same run;
- page move: UI-thread CPU time per PageDown (sum of the event loop's callbacks, from
  the key until the page, its thumbnails and the repaint are done) for prefetched pages
  and for random jumps; the page query itself compared with the same LIMIT/OFFSET in
  raw sqlite3;
- memory: process RSS and the thumbnail cache after paging through many pages (bounded).

The dataset (tiny PNGs + tag captions from ``sushitui.dataset.synthetic``) is generated
and indexed once under ``--root`` and reused by later runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("SUSHITUI_IMAGES", "halfcell")  # what plain tmux users get


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class LoopMeter:
    """UI-thread CPU time: the thread time of every callback the asyncio loop runs."""

    def __init__(self) -> None:
        self.busy = 0.0
        self._orig = asyncio.events.Handle._run
        meter = self

        def _run(handle):
            t = time.thread_time()
            try:
                return meter._orig(handle)
            finally:
                meter.busy += time.thread_time() - t

        self._patched = _run

    def __enter__(self):
        asyncio.events.Handle._run = self._patched
        return self

    def __exit__(self, *exc):
        asyncio.events.Handle._run = self._orig


def prepare(root: Path, db_path: Path, n: int) -> None:
    from sushitui.dataset.registry import DatasetNotFound, DatasetSettings, add_dataset, get_dataset
    from sushitui.dataset.synthetic import generate_dataset
    from sushitui.store import open_database

    db = open_database(db_path)
    try:
        try:
            ds = get_dataset("bench")
            if ds.total_items >= n * 0.99:
                return
        except DatasetNotFound:
            pass
        t = time.perf_counter()
        if not (root / "done").exists():
            print(f"generating {n:,} items in {root} …", flush=True)
            generate_dataset(root / "data", n, seed=11, image_size=(48, 32))
            (root / "done").write_text("ok")
        print(f"indexing … ({time.perf_counter() - t:.0f} s so far)", flush=True)
        add_dataset(DatasetSettings(name="bench", root_path=str(root / "data")))
        print(f"ready in {time.perf_counter() - t:.0f} s", flush=True)
    finally:
        db.close()


async def until(pilot, cond, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError
        await asyncio.sleep(0.002)


async def settle(pilot, screen, quiet: float = 0.15):
    """Wait until no worker of the screen runs and a repaint happened."""
    await pilot.pause()
    while any(w.is_running for w in screen.workers if w.group in ("browser-page", "browser-count")):
        await asyncio.sleep(0.005)
    await asyncio.sleep(quiet)
    await pilot.pause()


async def bench_browser(db_path: Path, size: tuple[int, int], moves: int, jumps: int) -> dict:
    from sushitui.dataset.registry import get_dataset
    from sushitui.tui.app import SushiApp
    from sushitui.tui.screens.browser import BrowserScreen

    app = SushiApp(db_path, first_start=False)
    out: dict = {}
    async with app.run_test(size=size) as pilot:
        await pilot.pause(0.3)
        ds = get_dataset("bench")
        rss0 = rss_mb()
        with LoopMeter() as meter:
            t0 = time.perf_counter()
            screen = BrowserScreen(ds.id, ds.name, ds.root_path)
            await app.push_screen(screen)
            await until(pilot, lambda: screen.first_page_at is not None)
            out["first_paint_ms"] = (screen.first_page_at - t0) * 1000
        out["first_paint_cpu_ms"] = meter.busy * 1000
        await until(pilot, lambda: screen.grid._thumbs)
        out["first_thumbs_ms"] = (time.perf_counter() - t0) * 1000
        await until(pilot, lambda: screen.state.total is not None)
        out["count_ms"] = (screen.counted_at - t0) * 1000
        out["total"] = screen.state.total
        out["capacity"] = screen.capacity
        await settle(pilot, screen, 0.5)

        busy, wall = [], []
        for _ in range(moves):
            n = screen.pages_shown
            with LoopMeter() as meter:
                t = time.perf_counter()
                await pilot.press("pagedown")
                await until(pilot, lambda: screen.pages_shown > n)
                wall.append((time.perf_counter() - t) * 1000)
                await settle(pilot, screen)
            busy.append(meter.busy * 1000)
        out["page_busy"] = busy
        out["page_wall"] = wall

        rnd = random.Random(5)
        jbusy, jwall = [], []
        for _ in range(jumps):
            target = rnd.randrange(0, screen.state.total // screen.capacity) * screen.capacity
            n = screen.pages_shown
            with LoopMeter() as meter:
                t = time.perf_counter()
                screen.state.offset = target
                screen._request_page()
                await until(pilot, lambda: screen.pages_shown > n)
                jwall.append((time.perf_counter() - t) * 1000)
                await settle(pilot, screen)
            jbusy.append(meter.busy * 1000)
        out["jump_busy"] = jbusy
        out["jump_wall"] = jwall

        # memory after paging through many pages
        screen.state.offset = 0
        screen._request_page()
        await settle(pilot, screen)
        out["pages_walked"] = min(150, screen.state.total // screen.capacity - 1)
        for _ in range(out["pages_walked"]):
            n = screen.pages_shown
            await pilot.press("pagedown")
            await until(pilot, lambda: screen.pages_shown > n)
        await settle(pilot, screen)
        out["rss_growth_mb"] = rss_mb() - rss0
        out["thumb_cache_mb"] = app.thumbnails.used_bytes / 2**20
        out["thumb_budget_mb"] = app.thumbnails.budget_bytes / 2**20
        out["thumbs_cached"] = len(app.thumbnails)
    return out


async def bench_datatable(db_path: Path, size: tuple[int, int]) -> float:
    """The naive alternative: every item name in a DataTable before the first paint."""
    from textual.app import App
    from textual.widgets import DataTable

    con = sqlite3.connect(str(db_path))
    rows = con.execute("SELECT base_name, width, height, tag_count FROM item ORDER BY base_name").fetchall()
    con.close()

    class Naive(App):
        def compose(self):
            yield DataTable()

    app = Naive()
    async with app.run_test(size=size) as pilot:
        t = time.perf_counter()
        table = app.query_one(DataTable)
        table.add_columns("name", "w", "h", "tags")
        table.add_rows(rows)
        await pilot.pause()
        return (time.perf_counter() - t) * 1000


def raw_page_ms(db_path: Path, dataset_id: int, limit: int, offsets: list[int]) -> tuple[float, float]:
    """Page query: raw sqlite3 LIMIT/OFFSET vs the browser's load_cards (rows + first tags)."""
    from sushitui.dataset.registry import get_dataset
    from sushitui.store import open_database
    from sushitui.tui.screens.browser import load_cards

    con = sqlite3.connect(str(db_path))
    t = time.perf_counter()
    for off in offsets:
        con.execute(
            "SELECT id, base_name, image_path FROM item WHERE dataset_id=? ORDER BY base_name, id LIMIT ? OFFSET ?",
            (dataset_id, limit, off),
        ).fetchall()
    raw = (time.perf_counter() - t) * 1000 / len(offsets)
    con.close()
    db = open_database(db_path)
    try:
        ds = get_dataset(dataset_id)
        t = time.perf_counter()
        for off in offsets:
            load_cards(dataset_id, ds.root_path, "", "name", False, off, limit)
        ours = (time.perf_counter() - t) * 1000 / len(offsets)
    finally:
        db.close()
    return raw, ours


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--root", default=os.path.join(tempfile.gettempdir(), "sushitui-bench-tui"))
    ap.add_argument("--size", default="200x60")
    ap.add_argument("--moves", type=int, default=20)
    ap.add_argument("--jumps", type=int, default=10)
    args = ap.parse_args()
    root = Path(args.root) / f"n{args.n}"
    root.mkdir(parents=True, exist_ok=True)
    db_path = root / "bench.db"
    prepare(root, db_path, args.n)
    w, h = (int(v) for v in args.size.split("x"))

    res = asyncio.run(bench_browser(db_path, (w, h), args.moves, args.jumps))
    naive = asyncio.run(bench_datatable(db_path, (w, h)))
    from sushitui.store import Dataset, open_database

    db = open_database(db_path)
    ds_id = Dataset.get(Dataset.name == "bench").id
    db.close()
    offsets = [random.Random(1).randrange(0, res["total"] - res["capacity"]) for _ in range(20)]
    raw, ours = raw_page_ms(db_path, ds_id, res["capacity"], offsets)

    print(
        f"\nload average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (wall times include waiting for a core; CPU times do not)"
    )
    print(
        f"browser on {res['total']:,} items at {w}×{h} ({res['capacity']} cards/page, images: {os.environ['SUSHITUI_IMAGES']}), {os.cpu_count()} cores"
    )
    print(f"{'measure':44} {'value':>12}  {'vs':>28}")
    print(
        f"{'first paint (cards on screen)':44} {res['first_paint_ms']:>10.0f}ms  DataTable of all rows {naive:>8.0f}ms = {naive / res['first_paint_ms']:.0f}× slower"
    )
    print(f"{'first paint, UI-thread CPU':44} {res['first_paint_cpu_ms']:>10.0f}ms")
    print(f"{'first thumbnails on screen':44} {res['first_thumbs_ms']:>10.0f}ms")
    print(f"{'count of the result (worker)':44} {res['count_ms']:>10.0f}ms")
    pb, jb = res["page_busy"], res["jump_busy"]
    print(
        f"{'page move, UI-thread CPU p50 / p95 / max':44} {statistics.median(pb):>6.1f} / {pct(pb, 0.95):.1f} / {max(pb):.1f} ms"
    )
    print(f"{'page move, wall incl. Pilot key delivery p50':44} {statistics.median(res['page_wall']):>10.1f}ms")
    print(
        f"{'random jump, UI-thread CPU p50 / p95 / max':44} {statistics.median(jb):>6.1f} / {pct(jb, 0.95):.1f} / {max(jb):.1f} ms"
    )
    print(f"{'random jump, wall to page on screen p50':44} {statistics.median(res['jump_wall']):>10.1f}ms")
    print(
        f"{'page query (worker): load_cards':44} {ours:>10.1f}ms  raw sqlite3 LIMIT/OFFSET {raw:.1f}ms = {ours / raw:.1f}×"
    )
    print(
        f"{'RSS growth after ' + str(res['pages_walked']) + ' more pages':44} {res['rss_growth_mb']:>10.1f}MB  thumbnail cache {res['thumb_cache_mb']:.1f} of {res['thumb_budget_mb']:.0f} MB budget ({res['thumbs_cached']} thumbs)"
    )
    ok = res["first_paint_ms"] <= 300 and pct(pb, 0.95) <= 50
    print("targets: first paint ≤ 300 ms, page move ≤ 50 ms UI-thread:", "met" if ok else "NOT met")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    sys.exit(main())
