"""Health checks and scans on PostgreSQL (issue 21): the stored token counts behind
``tokens:``/``t5tokens:`` reload after another client stores more, and an unchanged XMP
sidecar is not re-read by every reindex. Each runs on both backends."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pg_support import both_backends_db_path, other_connection  # noqa: F401  (db_path: a file, or a URL)
from PIL import Image

from sushitui.store import open_database


@pytest.fixture
def db(db_path):
    database = open_database(db_path)
    yield database
    database.close()


def test_stored_token_counts_reload_when_another_client_adds_or_completes_them(db, db_path):
    from sushitui.check import tokens as T

    texts = ["a photo of a cat", "1girl, solo, smile"]
    T.stored_counts(texts, t5=False)  # CLIP counts only, T5 still unknown
    T.prepare_counters()
    assert T._stored[T.digest(texts[0])] == (5, None)

    # another client (another machine) counts T5 too, and stores a text this one never saw
    other = other_connection(db_path)
    try:
        with other:
            other.execute("UPDATE caption_tokens SET t5 = 8 WHERE digest = ?", (T.digest(texts[0]),))
            other.execute(
                'INSERT INTO "caption_tokens" ("digest", "clip", "t5") VALUES (?, ?, ?)', (T.digest("new"), 1, 2)
            )
    finally:
        other.close()
    T.prepare_counters()
    assert T._stored[T.digest(texts[0])] == (5, 8)
    assert T._stored[T.digest("new")] == (1, 2)


def _jpeg(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (16, 12), (10, 120, 30)).save(path, "JPEG")


def _xmp(subjects: list[str]) -> str:
    lis = "".join(f"<rdf:li>{s}</rdf:li>" for s in subjects)
    return (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/">'
        f"<dc:subject><rdf:Bag>{lis}</rdf:Bag></dc:subject></rdf:Description></rdf:RDF></x:xmpmeta>"
    )


def test_an_unchanged_sidecar_is_not_reread_and_a_changed_one_is(db, tmp_path):
    from sushitui.dataset.registry import DatasetSettings, add_dataset, reindex
    from sushitui.store import Caption, Item

    root = tmp_path / "photos"
    _jpeg(root / "a.jpg")
    _jpeg(root / "b.jpg")
    side = root / "a.xmp"
    side.write_text(_xmp(["one"]), "utf-8")
    ds, _ = add_dataset(DatasetSettings("p", str(root)))
    _jpeg(root / "c.jpg")  # the folder changed: every file in it is compared with the catalogue
    report = reindex(ds)
    assert (report.items_added, report.items_updated) == (1, 0)  # the sidecar's item is not read again
    side.write_text(_xmp(["one", "two"]), "utf-8")
    os.utime(side, ns=(side.stat().st_mtime_ns + 10**9,) * 2)
    assert reindex(ds).items_updated == 1
    item = Item.get(Item.image_path == "a.jpg")
    caption = Caption.get((Caption.item == item.id) & (Caption.subtype == "xmp_dc_subject"))
    assert caption.content == "one, two"
    _jpeg(root / "d.jpg")
    report = reindex(ds)
    assert (report.items_added, report.items_updated) == (1, 0)


def _dataset(root: Path, captions: dict[str, str]) -> int:
    from sushitui.dataset.registry import DatasetSettings, add_dataset

    for name, text in captions.items():
        _jpeg(root / f"{name}.jpg")
        (root / f"{name}.txt").write_text(text, "utf-8")
    ds, _ = add_dataset(DatasetSettings("set", str(root)))
    return ds.id


def test_token_and_character_counts_in_queries(db, tmp_path):
    import sushitui.check  # noqa: F401 - gives the query language its tokens:/t5tokens: counters
    from sushitui.dataset.items import count_items, page_cards

    long = ", ".join(f"tag number {i}" for i in range(40))
    ds_id = _dataset(tmp_path / "set", {"short": "ohwx", "mid": "ohwx, 1girl, smile", "long": f"ohwx, {long}"})

    def names(query: str) -> list[str]:
        return sorted(c.name for c in page_cards(ds_id, query, "name", False, 0, 50, root=str(tmp_path / "set")))

    assert names("tokens:>75") == ["long"]
    assert names("tokens:<4") == ["short"]  # "ohwx" is 3 CLIP tokens
    assert names("t5tokens:>100") == ["long"]
    assert names("chars:>300") == ["long"]
    assert names("tokens:<4 | tokens:>75") == ["long", "short"]
    assert count_items(ds_id, "tokens:>4") == 2
    assert count_items(ds_id, "-tokens:>75") == 2


def test_items_from_an_offset_without_a_limit(db, tmp_path):
    from sushitui.dataset.items import list_items

    ds_id = _dataset(tmp_path / "set", {f"i{i}": "x" for i in range(4)})
    assert [i.base_name for i in list_items(ds_id, sort="name", offset=2)] == ["i2", "i3"]
