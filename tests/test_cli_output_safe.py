"""Issue 14 item 11: what the CLI prints is safe for a terminal whether stdout is one or
a pipe (`sushitui items NAME | cat`): no ESC/OSC sequence, C1 control or bidi override
from a file name or caption gets out raw, a newline in a file name cannot fake a line,
JSON escapes them as \\uXXXX and parses back to the exact strings, and --raw gives the
original bytes to whoever asks for them."""

from __future__ import annotations

import json

import pytest
from cli_support import run_cli
from PIL import Image

TITLE = "\x1b]0;pwned\x07"  # sets the terminal's title
OSC52 = "\x1b]52;c;cHduZWQ=\x07"  # writes the clipboard
CLEAR = "\x1b[2J"  # clears the screen
CSI8 = "\x9b"  # 8-bit CSI
RLO = "\u202e"  # right-to-left override
FAKE_LINE = "\n      99  single          8×8  forged.png  1girl"  # a newline in a file name

NAMES = [f"title{TITLE}x", f"clip{OSC52}y", f"wipe{CLEAR}{CSI8}31m{RLO}gnp", f"line{FAKE_LINE}"]
CAPTION = f"osc52{OSC52}, clear{CLEAR}, csi{CSI8}31m, rlo{RLO}gnp, title{TITLE}"
RAW_BYTES = [s.encode() for s in ("\x1b", "\x07", CSI8, RLO, "\u2066", "\x85")]


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile")
    root = tmp / "pics"
    root.mkdir()
    img = Image.new("RGB", (8, 8))
    for name in NAMES:
        img.save(root / f"{name}.png", format="PNG")
        (root / f"{name}.txt").write_text(CAPTION, encoding="utf-8")
    db = tmp / "h.db"
    res = cli(db, "dataset", "add", "evil", str(root))
    assert res.returncode == 0, res.stderr
    return db, root


def cli(db, *args: str):
    """The CLI with stdout and stderr pipes (not terminals), output as bytes; in this
    process (cli_support.run_cli: UTF-8 pipes that are not a tty, as a real pipe)."""
    return run_cli(*args, db=db, text=False)


def assert_no_raw_controls(data: bytes, where: str) -> None:
    for raw in RAW_BYTES:
        assert raw not in data, f"{where}: {raw!r} printed raw: {data[:400]!r}"


def test_items_piped_prints_no_control_sequences_and_no_forged_lines(hostile):
    db, _ = hostile
    res = cli(db, "items", "evil")
    assert res.returncode == 0, res.stderr
    assert_no_raw_controls(res.stdout, "items")
    lines = res.stdout.decode().splitlines()
    assert len(lines) == len(NAMES)  # one line per item: the newline in a name is shown, not obeyed
    assert not any(line.lstrip().startswith("99 ") for line in lines)
    text = res.stdout.decode()
    # shown as visible escapes, not dropped
    assert "title\\x1b]0;pwned\\x07x.png" in text and "line\\n" in text and "\\x9b31m\\u202egnp" in text
    assert "osc52\\x1b]52;c;cHduZWQ=\\x07" in text


@pytest.mark.parametrize(
    "argv",
    [
        ["dataset", "list"],
        ["dataset", "show", "evil"],
        ["dataset", "reindex", "evil", "--full"],
        ["tag", "add", "evil", "added", "--dry-run"],
        ["dict", "stats"],
    ],
)
def test_other_commands_piped_print_no_control_sequences(hostile, argv):
    db, _ = hostile
    res = cli(db, *argv)
    assert res.returncode in (0, 1), res.stderr
    assert_no_raw_controls(res.stdout, " ".join(argv))
    assert_no_raw_controls(res.stderr, " ".join(argv) + " (stderr)")


def test_tag_add_lists_files_and_problems_safely(hostile):
    db, root = hostile
    res = cli(db, "tag", "add", "evil", "written", "--items", "1,2,3,4", "--dry-run")
    assert res.returncode == 0, res.stderr
    assert_no_raw_controls(res.stdout, "tag add --dry-run")
    files = res.stdout.decode().splitlines()[1:]
    assert len(files) == len(NAMES)  # one line per file: the newline in a name does not add one
    assert "line\\n      99  single" in res.stdout.decode()
    # the real edit: files written or refused (captions holding control characters), each reported safely
    res = cli(db, "tag", "add", "evil", "written", "--items", "1,2,3,4")
    assert res.returncode in (0, 1), res.stderr
    assert_no_raw_controls(res.stdout, "tag add")
    assert_no_raw_controls(res.stderr, "tag add (stderr)")


def test_json_escapes_controls_and_parses_back_to_the_exact_strings(hostile):
    db, _ = hostile
    res = cli(db, "items", "evil", "--json")
    assert res.returncode == 0, res.stderr
    assert_no_raw_controls(res.stdout, "items --json")
    assert b"\\u009b" in res.stdout and b"\\u202e" in res.stdout and b"\\u001b" in res.stdout
    rows = [json.loads(line) for line in res.stdout.decode().splitlines()]
    assert sorted(r["image"] for r in rows) == sorted(f"{n}.png" for n in NAMES)
    assert {r["captions"][0]["content"] for r in rows} == {CAPTION}
    assert [t["tag"] for t in rows[0]["tags"]] == [t.strip() for t in CAPTION.split(",")]


def test_raw_gives_the_original_bytes(hostile):
    db, _ = hostile
    res = cli(db, "items", "evil", "--raw")
    assert res.returncode == 0, res.stderr
    for name in NAMES:
        assert f"{name}.png".encode() in res.stdout
    assert OSC52.encode() in res.stdout and CSI8.encode() in res.stdout


def test_error_messages_on_stderr_are_neutralised_too(hostile):
    db, _ = hostile
    res = cli(db, "group", "import", f"/nonexistent/missing{OSC52}\nsushitui: all good.json")
    assert res.returncode == 2 and b"no such file" in res.stderr
    assert_no_raw_controls(res.stderr, "error")
    assert len(res.stderr.decode().splitlines()) == 1  # the newline in the name does not start a line


def test_a_file_name_that_is_not_utf8_is_reported_safely(tmp_path):
    root = tmp_path / "pics"
    root.mkdir()
    raw_name = b"caf\xe9\x1b[2J"  # Latin-1, not UTF-8, with a control sequence
    Image.new("RGB", (8, 8)).save(str(root).encode() + b"/" + raw_name + b".png", format="PNG")
    db = tmp_path / "b.db"
    res = cli(db, "dataset", "add", "latin", str(root))
    assert res.returncode == 0, res.stderr
    assert b"\\x1b[2J.png: file name is not valid UTF-8" in res.stdout
    assert_no_raw_controls(res.stdout, "dataset add")
