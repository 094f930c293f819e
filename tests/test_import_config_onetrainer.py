"""OneTrainer concepts (issue 17, trainer configs in): the folders are registered with
suffix separator '-', so OneTrainer's x-masklabel.png and x-condlabel.png group with
x.png as its mask and control image instead of being items of their own."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from sushitui.export.configs_in import import_config
from sushitui.store import Caption, Dataset, Item


def _png(path: Path, color=(10, 20, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), color).save(path)


def test_onetrainer_masklabel_and_condlabel_group_with_their_image(db, tmp_path):
    concept = tmp_path / "concept"
    _png(concept / "cat.png")
    _png(concept / "cat-masklabel.png", (255, 255, 255))
    _png(concept / "cat-condlabel.png", (0, 0, 0))
    (concept / "cat.txt").write_text("cat, sitting", encoding="utf-8")
    _png(concept / "dog-house.png")  # a '-' in a plain name is no suffix
    (concept / "dog-house.txt").write_text("dog, kennel", encoding="utf-8")
    f = tmp_path / "concepts.json"
    f.write_text(
        json.dumps([{"name": "pets", "path": "concept", "text": {"prompt_source": "sample"}}], indent=2),
        encoding="utf-8",
    )

    plan = import_config(f, name_prefix="ot", dry_run=True).plan
    assert plan.entries[0].settings["suffix_separator"] == "-"
    assert not any("masklabel" in n for n in plan.entries[0].unmapped)  # grouped, so nothing to warn about

    result = import_config(f, name_prefix="ot")
    ds = Dataset.get_by_id(result.registered[0]["id"])
    assert ds.suffix_separator == "-"
    got = {i.base_name: i for i in Item.select().where(Item.dataset == ds.id)}
    assert set(got) == {"cat", "dog-house"}  # the label images are no items of their own
    cat = got["cat"]
    assert cat.image_path == "cat.png"
    assert cat.related_images == {"image": "cat.png", "mask": "cat-masklabel.png", "source": "cat-condlabel.png"}
    assert Caption.get((Caption.item == cat.id) & (Caption.subtype == "main")).content == "cat, sitting"
    assert Caption.get((Caption.item == got["dog-house"].id) & (Caption.subtype == "main")).content == "dog, kennel"


def test_other_trainers_folders_keep_the_default_separator_and_say_how_to_group_labels(db, tmp_path):
    folder = tmp_path / "imgs"
    _png(folder / "a.png")
    _png(folder / "a-masklabel.png")
    toml = tmp_path / "dataset.toml"
    toml.write_text(f'[[directory]]\npath = "{folder}"\nnum_repeats = 1\n', encoding="utf-8")
    result = import_config(toml, name_prefix="dp")
    ds = Dataset.get_by_id(result.registered[0]["id"])
    assert ds.suffix_separator == "_"
    assert any("--suffix-separator -" in n for n in result.plan.entries[0].unmapped)
