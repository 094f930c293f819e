"""The one edit path for captions: file first (atomic, conflict-checked), then the index."""

import pytest

from sushitui.dataset.caption_files import CaptionConflict, read_caption
from sushitui.dataset.captions import TagEdit, item_tags, set_tags, set_tags_many, set_text
from sushitui.store import Caption, Dataset, Item, ItemTag


def make_item(root, name, caption=None, rel_dir=""):
    ds = Dataset.get_or_create(name="d", defaults={"root_path": str(root)})[0]
    folder = root / rel_dir if rel_dir else root
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.png").write_bytes(b"png")
    item = Item.create(
        dataset=ds,
        base_name=name,
        rel_dir=rel_dir,
        group_key=f"{rel_dir}/{name}",
        image_path=f"{rel_dir + '/' if rel_dir else ''}{name}.png",
    )
    if caption is not None:
        p = folder / f"{name}.txt"
        p.write_text(caption)
        st = read_caption(p).state
        c = Caption.create(
            item=item,
            type="tags",
            subtype="main",
            content=caption,
            file_path=f"{rel_dir + '/' if rel_dir else ''}{name}.txt",
            file_size=st.size,
            file_mtime_ns=st.mtime_ns,
            file_sha256=st.sha256,
            encoding="utf-8",
        )
        for i, t in enumerate(caption.split(", ")):
            ItemTag.create(item=item, caption=c, tag=t, norm=t.replace("_", " "), position=i, subtype="main")
    return item


def test_set_tags_writes_file_in_user_order_and_updates_index(db, tmp_path):
    item = make_item(tmp_path, "a", "1girl, long_hair")
    set_tags(item, ["smile", "1girl", "long_hair", "Smile"])
    assert (tmp_path / "a.txt").read_text() == "smile, 1girl, long_hair"
    assert item_tags(item) == ["smile", "1girl", "long_hair"]
    assert Item.get_by_id(item.id).tag_count == 3


def test_new_caption_file_is_created_beside_the_image(db, tmp_path):
    item = make_item(tmp_path, "b", rel_dir="sub/dir")
    set_tags(item, ["cat"])
    assert (tmp_path / "sub/dir/b.txt").read_text() == "cat"
    assert Caption.get(Caption.item == item).file_path == "sub/dir/b.txt"


def test_changed_file_is_a_conflict_and_nothing_changes(db, tmp_path):
    item = make_item(tmp_path, "c", "dog")
    (tmp_path / "c.txt").write_text("dog, edited in vim")
    with pytest.raises(CaptionConflict):
        set_tags(item, ["cat"])
    assert (tmp_path / "c.txt").read_text() == "dog, edited in vim"
    assert item_tags(item) == ["dog"]
    set_tags(item, ["cat"], force=True)  # the user chose to keep the app's version
    assert (tmp_path / "c.txt").read_text() == "cat"


def test_bulk_reports_conflicts_per_file_and_goes_on(db, tmp_path):
    items = [make_item(tmp_path, f"i{n}", "x") for n in range(5)]
    (tmp_path / "i2.txt").write_text("someone else")
    report = set_tags_many([TagEdit(i, ["x", "new"]) for i in items])
    assert report.changed == 4 and len(report.problems) == 1
    assert report.problems[0].path == "i2.txt" and report.problems[0].conflict is not None
    assert (tmp_path / "i2.txt").read_text() == "someone else"
    assert all((tmp_path / f"i{n}.txt").read_text() == "x, new" for n in (0, 1, 3, 4))


def test_tagger_sources_and_confidences_are_kept_on_later_edits(db, tmp_path):
    item = make_item(tmp_path, "d", "a")
    set_tags_many([TagEdit(item, ["a", "b"], sources={"b": ("auto_wd", 0.9)})], source="user")
    set_tags(item, ["b", "a", "c"])
    rows = {r.tag: (r.source, r.confidence) for r in ItemTag.select().where(ItemTag.item == item)}
    assert rows["b"] == ("auto_wd", 0.9)
    assert rows["c"][0] == "user"


def _rows(item):
    return [
        (r.tag, r.norm, r.position, r.subtype)
        for r in ItemTag.select().where(ItemTag.item == item).order_by(ItemTag.position)
    ]


def _reindexed_rows(tags, subtype="main"):
    from sushitui.tags.normalize import match_key

    return [(t, match_key(t), i, subtype) for i, t in enumerate(tags)]


@pytest.mark.parametrize(
    "new",
    [
        ["1girl", "long_hair", "smile", "blue eyes"],  # appended
        ["trigger", "1girl", "long_hair", "smile"],  # inserted first: every position moves
        ["smile", "long_hair"],  # one removed, order changed
        ["1girl", "Long Hair", "smile"],  # same key, new spelling
        ["1girl", "short hair", "smile"],  # replaced
        [],  # emptied
    ],
)
def test_index_rows_after_an_edit_are_what_a_fresh_read_gives(db, tmp_path, new):
    """Only the rows that differ are written; what remains must equal a fresh read."""
    item = make_item(tmp_path, "r", "1girl, long_hair, smile")
    ids_before = {r.norm: r.id for r in ItemTag.select().where(ItemTag.item == item)}
    set_tags(item, new)
    assert _rows(item) == _reindexed_rows(new)
    kept = {r.norm: r.id for r in ItemTag.select().where(ItemTag.item == item)}
    for norm, row_id in kept.items():  # unchanged tags keep their rows (not deleted and re-added)
        if norm in ids_before:
            assert row_id == ids_before[norm]


def test_an_index_with_a_repeated_tag_is_rewritten_whole(db, tmp_path):
    item = make_item(tmp_path, "dup", "a, b")
    cap = Caption.get(Caption.item == item)
    ItemTag.create(item=item, caption=cap, tag="a", norm="a", position=2, subtype="main")  # an old build's duplicate
    set_tags(item, ["a", "b", "c"])
    assert _rows(item) == _reindexed_rows(["a", "b", "c"])


def test_text_caption_written_to_suffixed_file(db, tmp_path):
    item = make_item(tmp_path, "e", "a")
    set_text(item, "natural_language", "caption", "A cat on a mat.")
    assert (tmp_path / "e_caption.txt").read_text() == "A cat on a mat."
    (tmp_path / "e_caption.txt").write_text("changed")
    with pytest.raises(CaptionConflict):
        set_text(item, "natural_language", "caption", "Mine.")


def test_tags_never_overwrite_a_prose_caption_in_the_same_file(db, tmp_path):
    item = make_item(tmp_path, "f")
    (tmp_path / "f.txt").write_text("A long description of a cat sitting on a mat in the sun.")
    st = read_caption(tmp_path / "f.txt").state
    Caption.create(
        item=item,
        type="natural_language",
        subtype="main",
        content="A long description",
        file_path="f.txt",
        file_size=st.size,
        file_mtime_ns=st.mtime_ns,
        file_sha256=st.sha256,
    )
    report = set_tags_many([TagEdit(item, ["cat"])])
    assert report.changed == 0 and len(report.problems) == 1
    assert "holds a natural language caption" in report.problems[0].reason
    assert "--subtype" in report.problems[0].reason
    assert (tmp_path / "f.txt").read_text().startswith("A long description")
    set_tags(item, ["cat"], subtype="tags")
    assert (tmp_path / "f_tags.txt").read_text() == "cat"


def test_progress_bar_keeps_its_carriage_return_and_neutralises_text(capsys):
    from sushitui.cli.common import TerminalProgress
    from sushitui.progress import ProgressEvent

    bar = TerminalProgress("scan \x1b[31mred", enabled=True)
    bar(ProgressEvent("scanning", 5, 10))
    written = capsys.readouterr().err
    assert written.startswith("\r") and "\\x0d" not in written
    assert "\x1b[31m" not in written and "\\x1b[31mred" in written


def test_fresh_database_from_the_cli_has_the_default_groups(tmp_path, capsys):
    from sushitui.cli import main

    assert main(["--db", str(tmp_path / "fresh.db"), "group", "list", "--json"]) == 0
    out = capsys.readouterr().out
    for name in ["Character", "Copyright", "Artist", "General", "Quality", "Rating", "Meta"]:
        assert name in out


def test_captions_of_a_new_subtype_survive_a_full_reindex(db, tmp_path):
    """x_<subtype>.txt is read back only when <subtype> is a caption suffix: writing the
    first one registers it, so a reindex keeps what the user (or the tagger) wrote."""
    from sushitui.dataset.registry import DatasetSettings, add_dataset, get_dataset, reindex
    from sushitui.dataset.synthetic import png_bytes

    root = tmp_path / "ds"
    root.mkdir()
    for i, base in enumerate(("a", "b")):
        (root / f"{base}.png").write_bytes(png_bytes(8, 8, i + 1))
        (root / f"{base}.txt").write_text("1girl, smile")
    ds, _ = add_dataset(DatasetSettings(name="sub", root_path=str(root)))
    item = Item.get((Item.dataset == ds.id) & (Item.base_name == "a"))
    set_tags(item, ["wd tag", "other"], subtype="wd")
    set_text(item, "natural_language", "blip", "a girl smiling at the camera.")
    assert (root / "a_wd.txt").read_text() == "wd tag, other"
    assert {"wd", "blip"} <= set(get_dataset("sub").caption_suffixes)
    before = sorted((c.type, c.subtype, c.file_path, c.content) for c in Caption.select().where(Caption.item == item))
    report = reindex("sub", full=True)
    after = sorted((c.type, c.subtype, c.file_path, c.content) for c in Caption.select().where(Caption.item == item))
    assert after == before and not report.problems
    assert item_tags(item, "wd") == ["wd tag", "other"]


def test_a_subtype_that_cannot_be_read_back_is_refused_up_front(db, tmp_path):
    from sushitui.dataset import bulk_edit
    from sushitui.tagger.autotag import AutotagError, autotag

    item = make_item(tmp_path, "u", "a")
    with pytest.raises(Exception, match=r"cannot name a caption file.*'auto-wd'"):
        set_tags(item, ["b"], subtype="auto_wd")
    assert not (tmp_path / "u_auto_wd.txt").exists()
    with pytest.raises(bulk_edit.BulkError, match="letters, digits and '-'"):
        bulk_edit.bulk_add("d", None, "b", subtype="auto_wd")
    with pytest.raises(AutotagError, match="cannot name a caption file"):
        autotag("d", subtype="wd_tags")  # refused before any model is looked for
    with pytest.raises(bulk_edit.BulkError, match="image suffixes"):
        bulk_edit.bulk_add("d", None, "b", subtype="mask")
    assert (tmp_path / "u.txt").read_text() == "a"


@pytest.mark.parametrize("bad", ["../outside.txt", "sub/../../outside.txt", "/tmp/outside.txt"])
def test_a_caption_path_outside_the_dataset_is_never_written(db, tmp_path, bad):
    """The index is data too: a path that leaves the dataset root (a tampered or foreign
    database) is refused, and nothing is written outside the root."""
    from sushitui.dataset.caption_files import CaptionFileError

    root = tmp_path / "root"
    item = make_item(root, "p", "a")
    Caption.update(file_path=bad).where(Caption.item == item).execute()
    with pytest.raises(CaptionFileError, match="outside the dataset root"):
        set_tags(item, ["b"])
    assert not (tmp_path / "outside.txt").exists() and (root / "p.txt").read_text() == "a"
    report = set_tags_many([TagEdit(item, ["b"])], batch_sync=True)  # the bulk path reports it per item
    assert report.changed == 0 and "outside the dataset root" in report.problems[0].reason
    assert not (tmp_path / "outside.txt").exists()


def test_editing_an_embedded_caption_writes_a_file_a_reindex_reads_back(db, tmp_path):
    """Metadata captions (EXIF/PNG text) are never rewritten: an edit goes to
    x_<subtype>.txt with the subtype spelled as a scan reads it back, and the image's
    own caption stays as it was."""
    import io

    import piexif
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    from sushitui.dataset.registry import DatasetSettings, add_dataset, reindex

    root = tmp_path / "meta"
    root.mkdir()
    info = PngInfo()
    info.add_text("Description", "a cat on a sofa")
    Image.new("RGB", (8, 8), "red").save(root / "p.png", pnginfo=info)
    exif = piexif.dump({"0th": {piexif.ImageIFD.XPKeywords: tuple("cat, sofa\x00".encode("utf-16-le"))}})
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), "blue").save(buf, "JPEG", exif=exif)
    (root / "j.jpg").write_bytes(buf.getvalue())
    ds, _ = add_dataset(DatasetSettings(name="meta", root_path=str(root), read_exif=True))

    def captions(base):
        item = Item.get((Item.dataset == ds.id) & (Item.base_name == base))
        return item, sorted(
            (c.type, c.subtype, c.source, c.file_path, c.content) for c in Caption.select().where(Caption.item == item)
        )

    p, before_p = captions("p")
    (embedded_text,) = [c for c in before_p if c[2] == "png_text"]
    set_text(p, embedded_text[0], embedded_text[1], "a black cat on a red sofa")
    j, before_j = captions("j")
    (embedded_tags,) = [c for c in before_j if c[0] == "tags"]
    set_tags(j, ["cat", "sofa", "indoors"], subtype=embedded_tags[1])

    safe_text, safe_tags = embedded_text[1].replace("_", "-"), embedded_tags[1].replace("_", "-")
    assert (root / f"p_{safe_text}.txt").read_text() == "a black cat on a red sofa"
    assert (root / f"j_{safe_tags}.txt").read_text() == "cat, sofa, indoors"
    after = {b: captions(b)[1] for b in ("p", "j")}
    assert embedded_text in after["p"] and embedded_tags in after["j"]  # the metadata captions are untouched
    report = reindex("meta", full=True)
    assert not report.problems
    assert {b: captions(b)[1] for b in ("p", "j")} == after  # what was saved is what a reindex reads
    assert item_tags(j, safe_tags) == ["cat", "sofa", "indoors"]


def test_two_edits_of_one_item_in_a_batch_leave_the_last(db, tmp_path):
    item = make_item(tmp_path, "twice", "a, b")
    report = set_tags_many([TagEdit(item, ["a", "c"]), TagEdit(item, ["c", "d"])], batch_sync=True)
    assert report.changed == 1 and (tmp_path / "twice.txt").read_text() == "c, d"
    assert _rows(item) == _reindexed_rows(["c", "d"])
