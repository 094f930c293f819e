"""NF-4: text from files (dataset folder and file names, captions, EXIF fields, tag
names, run names) never reaches the terminal raw. Every screen of the app is rendered
with Pilot and its characters read back; the CLI's output is read through a real pty
(the CLI neutralises when stdout is a terminal)."""

from __future__ import annotations

import asyncio
import os
import pty
import re
import select
import subprocess
import sys
import time

import pytest
from reliability_support import cli_env
from tui_support import screen_text, settle

pytestmark = pytest.mark.slow  # long stress test: skipped by the quick run, run by CI

OSC52 = "\x1b]52;c;cHduZWQ=\x07"  # a clipboard write
CLEAR = "\x1b[2J"
BIDI = "\u202e"  # right-to-left override
C1 = "\x9b"  # 8-bit CSI
PAYLOAD = f"{OSC52}{CLEAR}{BIDI}x{C1}y\x85z\x08"

# what must never appear raw on the screen: C0 (apart from the newline that joins rows),
# DEL, C1 and the bidi controls
RAW = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def assert_neutral(text: str, where: str) -> None:
    bad = RAW.findall(text)
    assert not bad, f"{where}: raw control/bidi characters reach the terminal: {sorted(set(map(repr, bad)))}"


@pytest.fixture
def hostile(tmp_path, db_path):
    """A dataset whose folder, file names, captions, EXIF, dictionary, and run carry the payload."""
    from PIL import Image

    from sushitui.dataset.registry import DatasetSettings, add_dataset
    from sushitui.store import DictionaryTag, Item, open_database
    from sushitui.training.runs import create_run

    root = tmp_path / f"folder{CLEAR}{BIDI}"
    root.mkdir()
    img = Image.new("RGB", (32, 24), (200, 30, 30))
    exif = Image.Exif()
    exif[0x010E] = f"desc {OSC52}{CLEAR}\x08end"  # ImageDescription (EXIF ASCII: C0 only)
    exif[0x9C9C] = f"xp {PAYLOAD}".encode("utf-16-le")  # XPComment: UTF-16, any character
    exif[0x013B] = "artist"
    img.save(root / f"evil{PAYLOAD}.jpg", exif=exif)
    (root / f"evil{PAYLOAD}.txt").write_text(f"tag{OSC52}one, {BIDI}gnp, plain", encoding="utf-8")
    img.save(root / "plain.png")
    (root / "plain.txt").write_text(f"solo, {CLEAR}wipe", encoding="utf-8")
    db = open_database(db_path)
    try:
        ds, _ = add_dataset(DatasetSettings(name=f"set{BIDI}\x85name", root_path=str(root), read_exif=True))
        DictionaryTag.create(tag=f"dict{OSC52}tag", norm=f"dict{OSC52}tag", category=0, count=10**9)
        create_run(f"run{C1}{BIDI}x", ds.name)
        ids = [i.id for i in Item.select().order_by(Item.base_name)]
    finally:
        db.close()
    return root, ds.name, ids


def test_every_screen_shows_hostile_text_neutralised(hostile, db_path, monkeypatch):
    monkeypatch.setenv("SUSHITUI_IMAGES", "off")
    from sushitui.tui.app import SushiApp
    from sushitui.tui.screens.browser import BrowserScreen
    from sushitui.tui.screens.datasets import DatasetsScreen
    from sushitui.tui.screens.dictionary import DictionaryScreen
    from sushitui.tui.screens.item_detail import ItemDetailScreen
    from sushitui.tui.screens.runs import RunsScreen

    root, name, ids = hostile
    shots: dict[str, str] = {}

    async def go():
        app = SushiApp(db_path, first_start=False)
        async with app.run_test(size=(160, 50)) as pilot:
            await settle(pilot, lambda: isinstance(app.screen, DatasetsScreen) and app.screen.rows, 30, what="datasets")
            await pilot.pause(0.2)
            shots["datasets"] = screen_text(app)
            await pilot.press("enter")
            await settle(
                pilot, lambda: isinstance(app.screen, BrowserScreen) and app.screen.state.total, 30, what="browser"
            )
            await settle(pilot, lambda: "\\x1b" in screen_text(app), 30, what="the cards")
            shots["browser"] = screen_text(app)
            await pilot.press("enter")  # the first item: evil...
            await settle(
                pilot,
                lambda: isinstance(app.screen, ItemDetailScreen) and app.screen.view is not None,
                30,
                what="item detail",
            )
            await settle(pilot, lambda: "\\x1b]52" in screen_text(app), 30, what="the tags")
            shots["detail"] = screen_text(app)
            app.screen.query_one("#exif").collapsed = False  # the EXIF / XMP fields, unfolded
            await pilot.pause(0.3)
            shots["detail+exif"] = screen_text(app) + "\n" + str(app.screen.query_one("#exif-body").render())
            app.push_screen(DictionaryScreen())
            await settle(
                pilot,
                lambda: isinstance(app.screen, DictionaryScreen) and "dict\\x1b" in screen_text(app),
                30,
                what="dictionary",
            )
            shots["dictionary"] = screen_text(app)
            app.pop_screen()
            await pilot.press("ctrl+r")
            await settle(
                pilot, lambda: isinstance(app.screen, RunsScreen) and "run\\x9b" in screen_text(app), 30, what="runs"
            )
            await pilot.pause(0.3)
            shots["runs"] = screen_text(app)

    asyncio.run(go())
    for where, text in shots.items():
        assert_neutral(text, where)
    # the payload is shown (as visible escapes), not silently dropped
    assert "\\u202e" in shots["datasets"]
    assert "\\x1b" in shots["browser"]
    assert "\\x1b]52" in shots["detail"]
    assert "xp \\x1b]52" in shots["detail+exif"] and "\\u202e" in shots["detail+exif"]
    assert "\\x1b]52" in shots["dictionary"]
    assert "\\x9b" in shots["runs"] or "\\u202e" in shots["runs"]


def test_prose_caption_editor_shows_hostile_text_neutralised(hostile, db_path, monkeypatch):
    monkeypatch.setenv("SUSHITUI_IMAGES", "off")
    from detail_helpers import ScreenApp

    from sushitui.tui.screens.item_detail import ItemDetailScreen

    root, name, ids = hostile
    shots = {}

    async def go():
        app = ScreenApp(lambda: ItemDetailScreen(ids[0], ids))
        async with app.run_test(size=(160, 50)) as pilot:
            await settle(pilot)
            # the XPComment of the EXIF block becomes a social-media caption
            app.screen.query_one("#caption-tabs").active = "tab-social_media"
            await pilot.pause(0.3)
            shots["social media tab"] = screen_text(app)

    asyncio.run(go())
    assert "xp " in shots["social media tab"]
    assert_neutral(shots["social media tab"], "social media tab")


def _read_pty(args: list[str], env: dict, timeout: float = 60) -> str:
    """Run the CLI with stdout and stderr on a pseudo-terminal; everything it wrote."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(args, stdout=slave, stderr=slave, stdin=subprocess.DEVNULL, env=env, close_fds=True)
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r, _, _ = select.select([master], [], [], 0.2)
        if r:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed its side
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    proc.wait(timeout=10)
    os.close(master)
    return b"".join(chunks).decode("utf-8", errors="replace")


def test_cli_output_to_a_terminal_is_neutralised(hostile, db_path):
    root, name, ids = hostile
    env = {**cli_env(db_path), "COLUMNS": "200", "NO_COLOR": "1"}
    cli = [sys.executable, "-m", "sushitui"]
    outputs = {
        "dataset list": _read_pty([*cli, "dataset", "list"], env),
        "dataset show": _read_pty([*cli, "dataset", "show", name], env),
        "items": _read_pty([*cli, "items", name], env),
        "tag add": _read_pty([*cli, "tag", "add", name, "added"], env),
        "dict search": _read_pty([*cli, "dict", "search", "dict"], env),
        "run list": _read_pty([*cli, "run", "list"], env),
        "error": _read_pty([*cli, "dataset", "show", f"missing{OSC52}"], env),
    }
    for where, text in outputs.items():
        # the CLI may colour its own output; what must never pass is the payload
        for raw in (OSC52, CLEAR, BIDI, C1, "\x85", "\x08"):
            assert raw not in text, f"{where}: {raw!r} printed raw: {text[:300]!r}"
    assert "\\x1b" in outputs["items"] and "\\u202e" in outputs["dataset list"]
    assert "\\x1b]52" in outputs["dict search"] and "\\x1b]52" in outputs["error"]
    # piped output (not a terminal) stays byte-exact for scripts
    res = subprocess.run([*cli, "items", name, "--json"], env=env, capture_output=True, text=True)
    assert res.returncode == 0 and "evil" in res.stdout
