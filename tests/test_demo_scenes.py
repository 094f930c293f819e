"""The demo dataset: drawn scenes whose tags are true of their pictures, found by the
query language as a user would expect, the same bytes from the same seed."""

from __future__ import annotations

import json
import random
import time
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image, ImageStat

from sushitui.dataset.demo_scenes import (
    Scene,
    demo_counts,
    generate_demo,
    random_scene,
    render,
    scene_caption,
    scene_tags,
)

TAGLIST = Path(__file__).parents[1] / "sushitui" / "_taglist"


def _band(img: Image.Image, y0: float, y1: float) -> tuple[float, float, float]:
    w, h = img.size
    return tuple(ImageStat.Stat(img.crop((0, int(y0 * h), w, max(int(y0 * h) + 1, int(y1 * h))))).mean)


def _share(img: Image.Image, y0: float, y1: float, pred) -> float:
    """The share of the pixels of a horizontal band for which ``pred(r, g, b)`` holds."""
    w, h = img.size
    data = img.crop((0, max(0, int(y0 * h)), w, int(y1 * h))).tobytes()
    px = list(zip(data[0::3], data[1::3], data[2::3]))
    return sum(1 for p in px if pred(*p)) / max(1, len(px))


def _differs(scene: Scene, **without) -> bool:
    """Whether the thing the fields describe is visible: the picture changes without it."""
    return render(scene).tobytes() != render(replace(scene, **without)).tobytes()


# Each tag the generator may write, with what it claims of the scene and, where a pixel
# test is cheap, of the picture. A tag missing here fails the test.
def _people(s, kind):
    return [f for f in s.figures if f.kind == kind]


TRUTH = {
    "1girl": lambda s, im: len(_people(s, "girl")) == 1 and _differs(s, figures=()),
    "2girls": lambda s, im: len(_people(s, "girl")) == 2 and _differs(s, figures=()),
    "multiple_girls": lambda s, im: len(_people(s, "girl")) >= 2,
    "1boy": lambda s, im: len(_people(s, "boy")) == 1 and _differs(s, figures=()),
    "2boys": lambda s, im: len(_people(s, "boy")) == 2 and _differs(s, figures=()),
    "multiple_boys": lambda s, im: len(_people(s, "boy")) >= 2,
    "solo": lambda s, im: len(s.figures) == 1,
    "no_humans": lambda s, im: not s.figures,
    "scenery": lambda s, im: not s.figures,
    "standing": lambda s, im: bool(s.figures),
    "long_hair": lambda s, im: bool(_people(s, "girl")),
    "dress": lambda s, im: bool(_people(s, "girl")),
    "short_hair": lambda s, im: bool(_people(s, "boy")),
    "shirt": lambda s, im: bool(_people(s, "boy")),
    "pants": lambda s, im: bool(_people(s, "boy")),
    "outdoors": lambda s, im: True,
    "sky": lambda s, im: True,
    "day": lambda s, im: s.sky == "day" and (s.filter != "none" or _band(im, 0, 0.1)[2] > 150),
    "blue_sky": lambda s, im: (
        s.sky == "day" and s.filter == "none" and _band(im, 0, 0.1)[2] > _band(im, 0, 0.1)[0] + 60
    ),
    "sunset": lambda s, im: s.sky == "sunset",
    "evening": lambda s, im: s.sky == "sunset",
    "orange_sky": lambda s, im: (
        s.sky == "sunset"
        and s.filter == "none"
        and _share(im, s.horizon - 0.3, s.horizon, lambda r, g, b: r > 200 and 90 < g < 200 and b < 120) > 0.05
    ),
    "night": lambda s, im: s.sky == "night" and sum(_band(im, 0, 0.1)) / 3 < 60,
    "night_sky": lambda s, im: s.sky == "night",
    "sun": lambda s, im: s.light == "sun" and s.sky != "night" and _differs(s, light=None),
    "moon": lambda s, im: s.light in ("full_moon", "crescent_moon") and _differs(s, light=None),
    "full_moon": lambda s, im: s.light == "full_moon" and s.sky == "night",
    "crescent_moon": lambda s, im: s.light == "crescent_moon" and s.sky == "night",
    "cloud": lambda s, im: bool(s.clouds) and _differs(s, clouds=()),
    "starry_sky": lambda s, im: bool(s.stars) and _differs(s, stars=()),
    "star_(sky)": lambda s, im: bool(s.stars),
    "grass": lambda s, im: s.land in ("grass", "hills"),
    "field": lambda s, im: s.land == "grass",
    "hill": lambda s, im: s.land == "hills" and bool(s.hills) and _differs(s, hills=()),
    "ocean": lambda s, im: s.land == "sea",
    "water": lambda s, im: s.land == "sea",
    "horizon": lambda s, im: s.land == "sea",
    "beach": lambda s, im: s.land == "sea",
    "sand": lambda s, im: s.land == "sea",
    "snow": lambda s, im: s.land == "snow",
    "winter": lambda s, im: s.land == "snow",
    "tree": lambda s, im: bool(s.trees) and _differs(s, trees=()),
    "forest": lambda s, im: len(s.trees) >= 5,
    "house": lambda s, im: bool(s.houses) and _differs(s, houses=()),
    "building": lambda s, im: bool(s.houses),
    "sign": lambda s, im: s.sign is not None and _differs(s, sign=None),
    "english_text": lambda s, im: s.sign is not None and _differs(s, sign=s.sign[::-1] + "X"),
    "red_theme": lambda s, im: (
        s.filter == "red" and (lambda c: c[0] > c[1] + 40 and c[0] > c[2] + 30)(ImageStat.Stat(im).mean)
    ),
    "greyscale": lambda s, im: (
        s.filter == "greyscale" and (lambda r, g, b: r.tobytes() == g.tobytes() == b.tobytes())(*im.split())
    ),
    "monochrome": lambda s, im: s.filter == "greyscale",
    "wide_image": lambda s, im: im.width >= 2 * im.height,
    "tall_image": lambda s, im: im.height >= 2 * im.width,
}
COLOUR_TAGS = ("_hair", "_dress", "_shirt")


def _true(tag: str, s: Scene, im: Image.Image) -> bool:
    if tag not in TRUTH and tag.endswith(
        COLOUR_TAGS
    ):  # blonde_hair, red_dress, green_shirt: a figure drawn so, in colour
        colour, part = tag.rsplit("_", 1)
        return s.filter == "none" and any(
            (f.hair if part == "hair" else f.clothes) == colour
            and (part == "hair" or (part == "dress") == (f.kind == "girl"))
            for f in s.figures
        )
    assert tag in TRUTH, f"no check for the demo tag {tag!r}"
    return TRUTH[tag](s, im)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo") / "demo"
    return generate_demo(root, 60, seed=11)


def test_the_demo_has_the_items_asked_for_and_two_bad_files(demo):
    scenes, edits, embedded = demo_counts(60)
    assert scenes + edits + embedded == 60 and edits >= 1 and embedded >= 2
    assert len(demo.items) == 60
    assert [i.kind for i in demo.items].count("edit") == edits
    assert {i.kind for i in demo.items} == {"scene", "edit", "exif", "xmp"}
    assert all((demo.root / i.rel_path).is_file() for i in demo.items)
    assert len(demo.bad_files) == 2
    ratios = {
        round(Image.open(demo.root / i.rel_path).width / Image.open(demo.root / i.rel_path).height, 2)
        for i in demo.items
    }
    assert len(ratios) >= 5  # square, landscape, portrait, wide, tall: buckets have something to show


@pytest.mark.slow
def test_every_tag_is_true_of_its_picture_by_construction(demo):
    for item in demo.items:
        im = Image.open(demo.root / item.rel_path).convert("RGB")
        if item.kind == "exif":  # JPEG: the pixel checks read the lossless rendering of the same scene
            im = render(item.scene)
        assert im.size == (item.scene.width, item.scene.height)
        assert item.tags == scene_tags(item.scene)
        false = [t for t in item.tags if not _true(t, item.scene, im)]
        assert not false, f"{item.rel_path}: {false} are not true of {item.scene}"


@pytest.mark.slow
def test_tags_over_many_scenes_are_true_and_real_danbooru_tags():
    known = set(json.loads((TAGLIST / "General.json").read_text())) | set(
        json.loads((TAGLIST / "Meta.json").read_text())
    )
    rnd = random.Random(5)
    for _ in range(80):
        s = random_scene(rnd)
        tags = scene_tags(s)
        assert len(tags) == len(set(tags))
        assert set(tags) <= known, set(tags) - known
        im = render(s)
        assert [t for t in tags if not _true(t, s, im)] == [], s
        # exactly one of the figure summaries
        assert ("no_humans" in tags) != bool(s.figures)
        caption = scene_caption(s)
        assert caption.endswith(".") and "," not in caption  # prose, not a tag list


def test_the_files_say_what_the_scene_holds(demo):
    for item in demo.items:
        path = demo.root / item.rel_path
        if item.kind == "scene":
            assert path.with_suffix(".txt").read_text(encoding="utf-8") == ", ".join(item.tags) + "\n"
            assert (path.parent / f"{path.stem}_caption.txt").read_text(encoding="utf-8") == item.caption + "\n"
        elif item.kind == "edit":
            base = path.name[: -len("_target.png")]
            assert (path.parent / f"{base}.txt").read_text(encoding="utf-8") == ", ".join(item.tags) + "\n"
            assert (path.parent / f"{base}_instruction.txt").read_text(encoding="utf-8") == item.instruction + "\n"
            before = Image.open(path.parent / f"{base}_source.png")
            assert before.tobytes() == render(item.before).tobytes() != Image.open(path).tobytes()


def test_the_same_seed_gives_the_same_bytes(tmp_path):
    a = generate_demo(tmp_path / "a", 24, seed=3)
    generate_demo(tmp_path / "b", 24, seed=3)
    generate_demo(tmp_path / "c", 24, seed=4)

    def files(root):
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    fa, fb, fc = files(tmp_path / "a"), files(tmp_path / "b"), files(tmp_path / "c")
    assert len(fa) > 24 + len(a.bad_files) and fa == fb
    assert fa != fc


@pytest.mark.slow
def test_the_default_demo_is_generated_in_under_5_seconds_of_cpu(tmp_path):
    from sushitui.dataset.demo import DEMO_ITEMS

    start = time.process_time()  # CPU time: other people's tests on this machine do not count
    generate_demo(tmp_path / "d", DEMO_ITEMS)
    assert time.process_time() - start < 5


def test_queries_on_the_scanned_demo_find_exactly_what_they_say(db, demo):
    from sushitui.dataset.registry import DatasetSettings, add_dataset
    from sushitui.store import Caption, Item
    from sushitui.tags.query import matching_item_ids

    ds, report = add_dataset(DatasetSettings("demo", str(demo.root), read_exif=True))
    assert ds.total_items == 60
    assert sorted(p.path for p in report.problems if p.path.startswith("bad/")) == sorted(demo.bad_files)
    path_of = dict(Item.select(Item.id, Item.image_path).where(Item.dataset == ds.id).tuples())
    by_path = {i.rel_path: i for i in demo.items}
    assert set(path_of.values()) == set(by_path)

    def found(query):
        return {path_of[i] for i in matching_item_ids(ds.id, query)}

    def expected(pred):
        return {p for p, i in by_path.items() if pred(i.scene)}

    assert found("sunset, -tree") == expected(lambda s: s.sky == "sunset" and not s.trees)
    assert found("no_humans") == expected(lambda s: not s.figures)
    assert found("1girl") == expected(lambda s: len(_people(s, "girl")) == 1)
    assert found("night, moon") == expected(lambda s: s.sky == "night" and s.light is not None)
    assert found("ocean | snow") == expected(lambda s: s.land in ("sea", "snow"))
    # embedded captions were read: the EXIF and XMP items have their tags and sentence
    for item in demo.items:
        if item.kind in ("exif", "xmp"):
            item_id = next(k for k, v in path_of.items() if v == item.rel_path)
            sources = {c.source: c.content for c in Caption.select().where(Caption.item == item_id)}
            assert set(sources) == {item.kind}
            texts = set(Caption.select(Caption.content).where(Caption.item == item_id).tuples())
            assert (item.caption,) in texts


def test_the_demo_command_prepares_the_drawn_dataset(db, tmp_path):
    from sushitui.dataset.demo import prepare_demo
    from sushitui.dataset.registry import get_dataset
    from sushitui.tags.query import count_matches

    ds = get_dataset(prepare_demo(tmp_path / "data", n_items=40))
    assert ds.total_items == 40 and ds.read_exif
    assert (tmp_path / "data" / "demo" / "10_scenery" / "scene_1.png").is_file()
    assert count_matches(ds.id, "outdoors") == 40
    assert count_matches(ds.id, "tag_00521") == 0  # not the old made-up vocabulary
