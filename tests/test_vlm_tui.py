"""The VLM caption dialog and review screen (issue 16, "In the app"), driven with Pilot
against a real OpenAI-compatible server on 127.0.0.1 (tests/vlm_support.py): the prompt
preview, a sample that writes nothing, and a review where only accepted captions are
written (edit, reject, regenerate at another temperature, accept all, a conflict)."""

from __future__ import annotations

import pytest
from PIL import Image
from tui_support import open_browser, register, run, screen_text, settle
from vlm_support import FakeVlmServer


@pytest.fixture(autouse=True)
def no_images(monkeypatch):
    monkeypatch.setenv("SUSHITUI_IMAGES", "off")


@pytest.fixture
def server():
    with FakeVlmServer() as srv:
        yield srv


@pytest.fixture
def env(tmp_path, db_path, server):
    root = tmp_path / "photos"
    root.mkdir()
    Image.new("RGB", (640, 480), (200, 40, 40)).save(root / "cat_01.jpg", quality=90)
    Image.new("RGB", (300, 200), (40, 200, 40)).save(root / "dog_02.png")
    Image.new("RGB", (640, 480), (200, 120, 40)).save(root / "fox_03.jpg", quality=90)
    (root / "fox_03.txt").write_text("fox, snow, 1girl", encoding="utf-8")
    template = tmp_path / "named.txt"
    template.write_text("Describe <<{name}>> from {folder}. Tags: {tags}.", encoding="utf-8")
    register(db_path, root, "pics")
    return {"root": root, "template": str(template)}


def add_endpoint(db_path, server) -> None:
    from sushitui.store import open_database
    from sushitui.tagger import vlm

    db = open_database(db_path)
    try:
        vlm.add_endpoint("local", server.base_url, model="test-vlm")
    finally:
        db.close()


def _app(db_path):
    from sushitui.tui.app import SushiApp

    return SushiApp(db_path, first_start=False)


async def open_dialog(app, pilot, template: str | None):
    from textual.widgets import Input, Select

    from sushitui.tui.screens.caption_dialog import TEMPLATE_FILE, CaptionDialog

    browser = await open_browser(app, pilot)
    await pilot.press("C")
    await settle(pilot, lambda: isinstance(app.screen, CaptionDialog), what="the caption dialog")
    dialog = app.screen
    await settle(pilot, lambda: dialog.endpoints or "none registered" in screen_text(app), what="the endpoints")
    if template:
        dialog.query_one("#cap-template", Select).value = TEMPLATE_FILE
        await pilot.pause()
        dialog.query_one("#cap-template-file", Input).value = template
        await settle(pilot, lambda: "<<" in str(dialog.query_one("#cap-preview-text").render()), what="the preview")
    return browser, dialog


def caption_files(root) -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in root.glob("*_caption.txt")}


def test_dialog_from_the_browser_previews_the_prompt_and_a_sample_writes_nothing(env, db_path, server):
    add_endpoint(db_path, server)
    app = _app(db_path)

    async def go():
        async with app.run_test(size=(120, 40)) as pilot:
            _browser, dialog = await open_dialog(app, pilot, env["template"])
            text = screen_text(app)
            assert "Caption pics: all 3 items" in text
            assert "Describe <<cat_01>> from photos. Tags: ." in text, text  # the highlighted item, variables filled
            assert "local" in text and f"{server.base_url}  model: test-vlm" in text
            await pilot.press("down")  # the preview follows the template: the built-in one now has no <<name>>
            await pilot.press("f2")
            await settle(pilot, lambda: dialog.sample_report is not None, what="the sample")
            text = screen_text(app)
            assert "nothing written" in text
            for name in ("cat_01", "dog_02", "fox_03"):
                assert f"A detailed photo of {name}." in text
            assert sorted(server.names_sent()) == ["cat_01", "dog_02", "fox_03"]
            await pilot.press("escape")
            await settle(pilot, lambda: not isinstance(app.screen, type(dialog)), what="the dialog closed")
        assert caption_files(env["root"]) == {}
        assert sorted(p.name for p in env["root"].iterdir()) == ["cat_01.jpg", "dog_02.png", "fox_03.jpg", "fox_03.txt"]

    run(go())


def test_without_an_endpoint_the_dialog_says_what_to_run(env, db_path):
    from textual.widgets import Button

    app = _app(db_path)

    async def go():
        async with app.run_test(size=(120, 40)) as pilot:
            _browser, dialog = await open_dialog(app, pilot, None)
            text = screen_text(app)
            assert "No VLM endpoint is registered" in text and "sushitui endpoint add local" in text
            assert dialog.query_one("#start", Button).disabled and dialog.query_one("#sample", Button).disabled
            await pilot.press("ctrl+s")  # nothing starts
            await pilot.pause()
            assert dialog.running is None

    run(go())


def test_review_accept_edit_reject_regenerate_and_accept_all(env, db_path, server):
    from textual.widgets import TextArea

    from sushitui.tui.screens.caption_review import CaptionReviewScreen
    from sushitui.tui.widgets.confirm import ConfirmDialog

    add_endpoint(db_path, server)
    server.script = {"fox_03": ["ok", "text:A fox in the snow, asked again."]}
    app = _app(db_path)

    async def go():
        async with app.run_test(size=(120, 40)) as pilot:
            browser, _dialog = await open_dialog(app, pilot, env["template"])
            await pilot.press("ctrl+s")
            await settle(pilot, lambda: isinstance(app.screen, CaptionReviewScreen), what="the review screen")
            review = app.screen
            assert [e.result.name for e in review.entries] == ["cat_01", "dog_02", "fox_03"]
            assert caption_files(env["root"]) == {}  # nothing written before an accept
            text = screen_text(app)
            assert "Review 1/3 cat_01.jpg" in text and "A detailed photo of cat_01." in text
            assert "no caption of this kind yet" in text
            # edit, then accept: the edited text is written
            await pilot.press("e")
            assert isinstance(app.focused, TextArea)
            await pilot.press(*" Red.")  # the cursor starts at the end
            await pilot.press("escape")
            assert app.screen is review and not isinstance(app.focused, TextArea)
            await pilot.press("y")
            await settle(pilot, lambda: review.entries[0].decision == "accepted", what="cat accepted")
            assert caption_files(env["root"]) == {"cat_01_caption.txt": "A detailed photo of cat_01. Red."}
            # reject: not written
            assert review.index == 1
            await pilot.press("n")
            await pilot.pause()
            assert review.entries[1].decision == "rejected" and review.index == 2
            # regenerate: sent again, at another temperature
            sent = len(server.chat_requests())
            await pilot.press("r")
            await settle(pilot, lambda: not review.busy, what="the regenerated answer")
            again = server.chat_requests()[sent:]
            assert [r.name for r in again] == ["fox_03"] and again[0].temperature == 0.7
            assert review.query_one("#review-new", TextArea).text == "A fox in the snow, asked again."
            assert "T=0.7" in screen_text(app)
            # accept all remaining: asks, then writes the rest (the rejected one stays unwritten)
            await pilot.press("A")
            await settle(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="the confirmation")
            await pilot.press("y")
            await settle(pilot, lambda: review.entries[2].decision == "accepted", what="accept all")
            assert caption_files(env["root"]) == {
                "cat_01_caption.txt": "A detailed photo of cat_01. Red.",
                "fox_03_caption.txt": "A fox in the snow, asked again.",
            }
            await pilot.press("escape")
            await settle(pilot, lambda: app.screen is browser, what="back to the browser")
        from sushitui.store import Caption, open_database

        db = open_database(db_path)
        try:
            rows = {c.content: c.source for c in Caption.select().where(Caption.subtype == "caption")}
        finally:
            db.close()
        assert rows == {
            "A detailed photo of cat_01. Red.": "vlm_test-vlm",
            "A fox in the snow, asked again.": "vlm_test-vlm",
        }

    run(go())


def test_a_caption_changed_on_disk_during_review_is_a_conflict(env, db_path, server):
    from textual.widgets import Select

    from sushitui.tui.screens.caption_review import CaptionReviewScreen
    from sushitui.tui.screens.conflict import ConflictDialog

    add_endpoint(db_path, server)
    app = _app(db_path)

    async def go():
        async with app.run_test(size=(120, 40)) as pilot:
            _browser, dialog = await open_dialog(app, pilot, env["template"])
            dialog.query_one("#cap-mode", Select).value = "replace"
            await pilot.press("ctrl+s")
            await settle(pilot, lambda: isinstance(app.screen, CaptionReviewScreen), what="the review screen")
            review = app.screen
            (env["root"] / "cat_01_caption.txt").write_text("typed by hand meanwhile", encoding="utf-8")
            await pilot.press("y")
            await settle(pilot, lambda: isinstance(app.screen, ConflictDialog), what="the conflict dialog")
            assert "typed by hand meanwhile" in screen_text(app)
            await pilot.press("d")  # keep the file's version
            await settle(pilot, lambda: review.entries[0].decision == "kept file", what="the disk version kept")
            assert (env["root"] / "cat_01_caption.txt").read_text(encoding="utf-8") == "typed by hand meanwhile"
            # the next one conflicts too (a file appeared); accept all leaves it alone and says so
            (env["root"] / "dog_02_caption.txt").write_text("also by hand", encoding="utf-8")
            await pilot.press("A")
            await pilot.press("y")
            await settle(pilot, lambda: review.entries[2].decision == "accepted", what="accept all")
            assert review.entries[1].decision == "pending" and "not written" in review.entries[1].note
            assert (env["root"] / "dog_02_caption.txt").read_text(encoding="utf-8") == "also by hand"
            assert (env["root"] / "fox_03_caption.txt").read_text(encoding="utf-8") == "A detailed photo of fox_03."

    run(go())


def test_esc_stops_the_run_and_the_answers_received_are_reviewed(env, db_path, server):
    from sushitui.tui.screens.caption_review import CaptionReviewScreen

    add_endpoint(db_path, server)
    server.script = {"dog_02": ["slow:20"]}
    app = _app(db_path)

    async def go():
        async with app.run_test(size=(120, 40)) as pilot:
            _browser, dialog = await open_dialog(app, pilot, env["template"])
            await pilot.press("ctrl+s")
            await settle(pilot, lambda: len(server.chat_requests()) == 3, what="three requests sent")
            await settle(pilot, lambda: "2/3" in screen_text(app), what="two answers in")
            await pilot.press("escape")
            await settle(pilot, lambda: isinstance(app.screen, CaptionReviewScreen), timeout=15, what="the review")
            await pilot.pause(0.2)  # let the review finish mounting before the app is torn down
            assert [e.result.name for e in app.screen.entries] == ["cat_01", "fox_03"]
        assert caption_files(env["root"]) == {}

    run(go())


def test_dialog_and_review_are_readable_at_80x24(env, db_path, server):
    from sushitui.tui.screens.caption_review import CaptionReviewScreen

    add_endpoint(db_path, server)
    app = _app(db_path)

    async def go():
        async with app.run_test(size=(80, 24)) as pilot:
            _browser, dialog = await open_dialog(app, pilot, env["template"])
            text = screen_text(app)
            for part in (
                "Caption pics",
                "Endpoint",
                "Template",
                "Describe <<cat_01>>",
                "Review (ctrl+s)",
                "Sample 8 (F2)",
                "Close (Esc)",
            ):
                assert part in text, part
            await pilot.press("ctrl+s")
            await settle(pilot, lambda: isinstance(app.screen, CaptionReviewScreen), what="the review screen")
            await pilot.pause(0.2)
            text = screen_text(app)
            for part in (
                "Review 1/3 cat_01.jpg",
                "Caption now",
                "New caption",
                "A detailed photo of cat_01.",
                "Accept",
                "Reject",
                "Regenerate",
            ):
                assert part in text, part

    run(go())


def test_caption_this_item_from_item_detail_and_keep_mine_on_a_conflict(env, db_path, server):
    from textual.widgets import Input, Select

    from sushitui.tui.screens.caption_dialog import TEMPLATE_FILE, CaptionDialog
    from sushitui.tui.screens.caption_review import CaptionReviewScreen
    from sushitui.tui.screens.conflict import ConflictDialog
    from sushitui.tui.screens.item_detail import ItemDetailScreen

    add_endpoint(db_path, server)
    app = _app(db_path)

    async def go():
        async with app.run_test(size=(120, 40)) as pilot:
            browser = await open_browser(app, pilot)
            await pilot.press("right", "right", "enter")  # fox_03
            await settle(
                pilot,
                lambda: isinstance(app.screen, ItemDetailScreen) and app.screen.view is not None,
                what="item detail",
            )
            detail = app.screen
            await pilot.press("C")
            await settle(pilot, lambda: isinstance(app.screen, CaptionDialog), what="the caption dialog")
            dialog = app.screen
            await settle(pilot, lambda: dialog.endpoints, what="the endpoints")
            dialog.query_one("#cap-template", Select).value = TEMPLATE_FILE
            await pilot.pause()
            dialog.query_one("#cap-template-file", Input).value = env["template"]
            await settle(
                pilot,
                lambda: "Describe <<fox_03>> from photos. Tags: fox, snow, 1girl." in screen_text(app),
                what="the preview of this item",
            )
            assert "Caption pics: 1 item" in screen_text(app)
            await pilot.press("ctrl+s")
            await settle(pilot, lambda: isinstance(app.screen, CaptionReviewScreen), what="the review screen")
            review = app.screen
            assert [e.result.name for e in review.entries] == ["fox_03"]
            (env["root"] / "fox_03_caption.txt").write_text("meanwhile", encoding="utf-8")
            await pilot.press("y")
            await settle(pilot, lambda: isinstance(app.screen, ConflictDialog), what="the conflict dialog")
            await pilot.press("m")  # keep mine: written over the file
            await settle(pilot, lambda: review.entries[0].decision == "accepted", what="accepted")
            assert (env["root"] / "fox_03_caption.txt").read_text(encoding="utf-8") == "A detailed photo of fox_03."
            await pilot.press("escape")
            await settle(pilot, lambda: app.screen is detail, what="back to item detail")
            await settle(
                pilot,
                lambda: any(c.content == "A detailed photo of fox_03." for c in detail.view.captions),
                what="item detail shows the new caption",
            )
            assert browser in app.screen_stack

    run(go())
