"""The demo dataset: small pictures drawn with Pillow, tagged by what was drawn.

Every picture is the rendering of a ``Scene`` (sky, land, sun or moon, clouds, trees,
houses, figures, a sign, a colour filter); its Danbooru-style tags and its one-sentence
caption are computed from that same ``Scene``, so each tag is true of its picture by
construction and ``sunset, -tree`` finds exactly the sunsets without trees. Nothing is
downloaded and nothing is licensed: the pictures are generated.

Deterministic: one seed gives identical bytes (random choices come from one
``random.Random(seed)``, geometry is stored in the scene, encoders get fixed settings).

What a demo folder holds (``generate_demo``):
- ``10_scenery/scene_N.png`` + ``scene_N.txt`` (tags) + ``scene_N_caption.txt`` (the sentence),
  numbered 1, 2, … 10, … so the browser's natural name order is visible;
- ``edits/edit_N_source.png`` + ``_target.png`` + ``_instruction.txt`` + ``edit_N.txt``:
  layout-C edit pairs, the same scene before and after one change;
- ``embedded/photo_N.jpg`` (EXIF ImageDescription + XPKeywords) and ``drawing_N.png`` (XMP
  dc:description + dc:subject): captions inside the image, no text files;
- ``bad/``: a truncated PNG and an empty JPEG, which the scan reports and skips.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass, field, replace
from pathlib import Path

# --- the scene vocabulary ----------------------------------------------------------------

SKIES = ("day", "sunset", "night")
LANDS = ("grass", "hills", "sea", "snow")
HAIR = {"black": (30, 28, 32), "blonde": (236, 200, 90), "brown": (120, 72, 40), "pink": (240, 140, 180)}
DRESS = {"red": (210, 40, 50), "blue": (50, 90, 210), "white": (245, 245, 245), "green": (40, 160, 70)}
SHIRT = {"red": (200, 50, 50), "blue": (60, 100, 200), "green": (50, 150, 80), "yellow": (230, 200, 40)}
SIGN_WORDS = ("CAFE", "SHOP", "HELLO", "BEACH", "INN", "EXIT")
SIZES = ((256, 256), (320, 240), (240, 320), (384, 216), (216, 384), (400, 200), (288, 224), (128, 128))
FILTERS = ("none", "red", "greyscale")  # red: the whole picture tinted red (red_theme)

_SKY = {  # top colour, horizon colour
    "day": ((70, 130, 220), (180, 215, 245)),
    "sunset": ((90, 60, 140), (250, 150, 60)),
    "night": ((8, 10, 35), (30, 40, 90)),
}
_GROUND = {"grass": (80, 150, 60), "hills": (70, 130, 55), "sea": (225, 205, 150), "snow": (238, 242, 248)}
_SEA = (40, 90, 160)


@dataclass(frozen=True)
class Figure:
    kind: str  # girl | boy
    hair: str  # key of HAIR
    clothes: str  # key of DRESS (girl) or SHIRT (boy)
    x: float  # centre, as a fraction of the width


@dataclass(frozen=True)
class Scene:
    """Everything that is drawn, with its geometry (fractions of the picture's size), so
    that rendering is a pure function of the scene."""

    width: int
    height: int
    sky: str
    land: str
    horizon: float  # y of the horizon / far edge of the land
    light: str | None = None  # sun | full_moon | crescent_moon
    light_xy: tuple[float, float] = (0.75, 0.2)
    clouds: tuple[tuple[float, float], ...] = ()
    stars: tuple[tuple[float, float], ...] = ()
    hills: tuple[tuple[float, float, float], ...] = ()  # centre x, half width, height
    trees: tuple[tuple[float, float], ...] = ()  # x, size
    houses: tuple[tuple[float, float], ...] = ()  # x, size
    figures: tuple[Figure, ...] = ()
    sign: str | None = None
    sign_x: float = 0.15
    filter: str = "none"


# --- tags and caption, from the scene ------------------------------------------------------

_NUMBER = {1: "a", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight"}


def scene_tags(s: Scene) -> list[str]:
    """The scene's Danbooru-style tags, most telling first (a card shows the first three):
    who, when, where, what is there; then the general and the detail tags."""
    girls = [f for f in s.figures if f.kind == "girl"]
    boys = [f for f in s.figures if f.kind == "boy"]
    coloured = s.filter == "none"  # a tinted or grey picture has no trustworthy colours
    tags: list[str] = []
    if girls:
        tags.append(f"{len(girls)}girl" if len(girls) == 1 else f"{len(girls)}girls")
    if boys:
        tags.append(f"{len(boys)}boy" if len(boys) == 1 else f"{len(boys)}boys")
    tags.append(s.sky)  # day | sunset | night
    tags += {"grass": ["field"], "hills": ["hill"], "sea": ["ocean", "beach"], "snow": ["snow"]}[s.land]
    if s.light == "sun":
        tags.append("sun")
    elif s.light:
        tags += ["moon", s.light]
    if s.trees:
        tags.append("tree")
    if s.houses:
        tags.append("house")
    if s.sign:
        tags.append("sign")
    if len(girls) > 1:
        tags.append("multiple_girls")
    if len(boys) > 1:
        tags.append("multiple_boys")
    if len(s.figures) == 1:
        tags.append("solo")
    if not s.figures:
        tags += ["no_humans", "scenery"]
    tags += ["outdoors", "sky"]
    tags += {"day": [], "sunset": ["evening"], "night": ["night_sky"]}[s.sky]
    if coloured and s.sky == "day":
        tags.append("blue_sky")
    if coloured and s.sky == "sunset":
        tags.append("orange_sky")
    if s.clouds:
        tags.append("cloud")
    if s.stars:
        tags += ["starry_sky", "star_(sky)"]
    tags += {"grass": ["grass"], "hills": ["grass"], "sea": ["water", "horizon", "sand"], "snow": ["winter"]}[s.land]
    if len(s.trees) >= 5:
        tags.append("forest")
    if s.houses:
        tags.append("building")
    if s.sign:
        tags.append("english_text")
    if girls:
        tags += ["long_hair", "dress"]
    if boys:
        tags += ["short_hair", "shirt", "pants"]
    if s.figures:
        tags.append("standing")
    if coloured:
        for f in s.figures:
            hair = f"{f.hair}_hair"
            clothes = f"{f.clothes}_dress" if f.kind == "girl" else f"{f.clothes}_shirt"
            for t in (hair, clothes):
                if t not in tags:
                    tags.append(t)
    if s.filter == "red":
        tags.append("red_theme")
    if s.filter == "greyscale":
        tags += ["greyscale", "monochrome"]
    ratio = s.width / s.height
    if ratio >= 2:
        tags.append("wide_image")
    elif ratio <= 0.5:
        tags.append("tall_image")
    return tags


def _count(n: int, word: str) -> str:
    return f"{_NUMBER.get(n, str(n))} {word}{'s' if n > 1 else ''}"


def _person(f: Figure, coloured: bool) -> str:
    who = "a girl" if f.kind == "girl" else "a boy"
    if not coloured:
        return who
    return f"{who} with {f.hair} hair in a {f.clothes} {'dress' if f.kind == 'girl' else 'shirt'}"


def scene_caption(s: Scene) -> str:
    """One sentence (no commas: it must read as prose, not as tags)."""
    coloured = s.filter == "none"
    land = {
        "grass": "a green field",
        "hills": "green hills",
        "sea": "a sandy beach by the sea",
        "snow": "a snowy field",
    }[s.land]
    cloudy = "cloudy " if s.clouds else ""
    sky = {
        "day": f"a {cloudy or 'clear '}sky",
        "sunset": f"a {cloudy}sunset sky",
        "night": "a starry night sky" if s.stars else "a night sky",
    }[s.sky]
    light = {"sun": "the sun", "full_moon": "a full moon", "crescent_moon": "a crescent moon"}.get(s.light or "")
    if light:
        sky = f"{light} in {sky}"
    things = []
    if s.trees:
        things.append("a forest" if len(s.trees) >= 5 else _count(len(s.trees), "tree"))
    if s.houses:
        things.append(_count(len(s.houses), "house"))
    if s.sign:
        things.append(f'a sign that says "{s.sign}"')
    people = " and ".join(_person(f, coloured) for f in s.figures)
    text = f"{people} standing on {land}" if people else land
    if things:
        text += (" near " if people else " with ") + " and ".join(things)
    text += f" under {sky}"
    if s.filter == "red":
        text += " in red tones"
    elif s.filter == "greyscale":
        text += " in black and white"
    return text[0].upper() + text[1:] + "."


# --- random scenes ---------------------------------------------------------------------------


def random_scene(rnd: random.Random, size: tuple[int, int] | None = None) -> Scene:
    w, h = size or rnd.choice(SIZES)
    sky = rnd.choices(SKIES, weights=(5, 3, 2))[0]
    land = rnd.choices(LANDS, weights=(3, 3, 3, 1))[0]
    horizon = rnd.uniform(0.55, 0.68)
    light = None
    if sky == "night":
        light = rnd.choice(("full_moon", "crescent_moon", None))
    elif rnd.random() < 0.7:
        light = "sun"
    light_xy = (
        rnd.uniform(0.15, 0.85),
        rnd.uniform(0.12, 0.3) if sky != "sunset" else rnd.uniform(0.3, horizon - 0.18),
    )
    clouds = (
        tuple((rnd.uniform(0.05, 0.95), rnd.uniform(0.06, 0.35)) for _ in range(rnd.randint(1, 3)))
        if sky != "night" and rnd.random() < 0.5
        else ()
    )
    stars = (
        tuple((rnd.random(), rnd.uniform(0.0, horizon - 0.1)) for _ in range(rnd.randint(12, 30)))
        if sky == "night" and rnd.random() < 0.8
        else ()
    )
    hills = (
        tuple((rnd.uniform(0, 1), rnd.uniform(0.2, 0.45), rnd.uniform(0.06, 0.15)) for _ in range(rnd.randint(2, 3)))
        if land == "hills"
        else ()
    )
    n_trees = rnd.choices((0, 1, 2, 3, 6), weights=(5, 2, 2, 1, 1))[0]
    trees = tuple(sorted((rnd.uniform(0.05, 0.95), rnd.uniform(0.8, 1.2)) for _ in range(n_trees)))
    n_houses = rnd.choices((0, 1, 2), weights=(6, 3, 1))[0]
    houses = tuple(sorted((rnd.uniform(0.1, 0.9), rnd.uniform(0.8, 1.2)) for _ in range(n_houses)))
    n_figures = rnd.choices((0, 1, 2), weights=(10, 7, 3))[0]
    slots = rnd.sample((0.3, 0.45, 0.6, 0.75), n_figures)
    figures = tuple(
        Figure(kind, rnd.choice(list(HAIR)), rnd.choice(list(DRESS if kind == "girl" else SHIRT)), x)
        for kind, x in ((rnd.choice(("girl", "girl", "boy")), x) for x in sorted(slots))
    )
    sign = rnd.choice(SIGN_WORDS) if rnd.random() < 0.15 else None
    filt = rnd.choices(FILTERS, weights=(17, 2, 2))[0]
    return Scene(
        w,
        h,
        sky,
        land,
        horizon,
        light,
        light_xy,
        clouds,
        stars,
        hills,
        trees,
        houses,
        figures,
        sign,
        rnd.choice((0.12, 0.88)),
        filt,
    )


# --- drawing -------------------------------------------------------------------------------------


def _mix(a, b, t: float):
    return tuple(int(round(x + (y - x) * t)) for x, y in zip(a, b))


def render(s: Scene):
    """The scene as an RGB ``PIL.Image`` (a pure function of the scene)."""
    from PIL import Image, ImageDraw, ImageFont

    w, h = s.width, s.height
    hy = int(s.horizon * h)
    img = Image.new("RGB", (w, h))
    d = ImageDraw.Draw(img)
    top, low = _SKY[s.sky]
    bend = 0.6 if s.sky == "sunset" else 1.0  # a sunset glows well above the horizon
    for y in range(hy):
        d.line([(0, y), (w, y)], fill=_mix(top, low, (y / max(1, hy - 1)) ** bend))
    for sx, sy in s.stars:
        x, y = int(sx * w), int(sy * h)
        d.point([(x, y), (x + 1, y), (x, y + 1)], fill=(250, 250, 220))
    unit = min(w, h)
    if s.light:
        r = max(6, unit // 11)
        cx, cy = int(s.light_xy[0] * w), int(s.light_xy[1] * h)
        colour = {"sun": (255, 236, 120) if s.sky == "day" else (255, 120, 60)}.get(s.light, (245, 245, 225))
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
        if s.light == "crescent_moon":
            d.ellipse(
                [cx - r + r // 2, cy - r - r // 4, cx + r + r // 2, cy + r - r // 4],
                fill=_mix(top, low, (cy / max(1, hy - 1)) ** bend),
            )
    for cloud_x, cloud_y in s.clouds:
        x, y, r = int(cloud_x * w), int(cloud_y * h), max(5, unit // 16)
        white = (250, 250, 250) if s.sky == "day" else (250, 190, 170)
        for dx in (-r, 0, r):
            d.ellipse([x + dx - r, y - r // 2 - (r // 3 if dx == 0 else 0), x + dx + r, y + r // 2], fill=white)
    ground = _GROUND[s.land]
    if s.sky == "night":
        ground = _mix(ground, (10, 15, 40), 0.55)
    if s.land == "sea":
        sea = _SEA if s.sky != "night" else _mix(_SEA, (5, 8, 30), 0.6)
        shore = hy + int(0.12 * h)
        d.rectangle([0, hy, w, shore], fill=sea)
        for i in range(3):  # a few wave lines
            y = hy + 4 + i * max(3, (shore - hy) // 4)
            d.line([(w * 0.1 + i * 20, y), (w * 0.3 + i * 20, y)], fill=_mix(sea, (255, 255, 255), 0.35))
        d.rectangle([0, shore, w, h], fill=ground)
    else:
        d.rectangle([0, hy, w, h], fill=ground)
    for hill_x, half, height in s.hills:
        hill = _mix(ground, (20, 60, 20), 0.25)
        d.ellipse(
            [int((hill_x - half) * w), int(hy - height * h), int((hill_x + half) * w), int(hy + height * h)], fill=hill
        )
    base_y = hy + int(0.16 * h)
    for hx, size in s.houses:
        bw, bh = int(unit * 0.16 * size), int(unit * 0.12 * size)
        x0, y1 = int(hx * w) - bw // 2, base_y
        d.rectangle([x0, y1 - bh, x0 + bw, y1], fill=(200, 170, 130) if s.sky != "night" else (90, 80, 70))
        d.polygon(
            [(x0 - bw // 8, y1 - bh), (x0 + bw // 2, y1 - bh - bh * 3 // 4), (x0 + bw + bw // 8, y1 - bh)],
            fill=(170, 50, 40),
        )
        d.rectangle([x0 + bw // 2 - bw // 8, y1 - bh // 2, x0 + bw // 2 + bw // 8, y1], fill=(90, 60, 40))
        win = (255, 220, 110) if s.sky == "night" else (170, 210, 240)
        d.rectangle([x0 + bw // 8, y1 - bh * 3 // 4, x0 + bw // 8 + bw // 6, y1 - bh // 2], fill=win)
    for tx, size in s.trees:
        th = int(unit * 0.22 * size)
        x, y1 = int(tx * w), base_y + int(0.04 * h)
        d.rectangle([x - max(1, th // 14), y1 - th // 3, x + max(1, th // 14), y1], fill=(100, 65, 35))
        leaf = (30, 110, 45) if s.land != "snow" else (210, 225, 230)
        if s.sky == "night":
            leaf = _mix(leaf, (5, 10, 30), 0.5)
        d.ellipse([x - th // 3, y1 - th, x + th // 3, y1 - th // 4], fill=leaf)
    if s.sign:
        font = ImageFont.load_default()
        x, y1 = int(s.sign_x * w), base_y + int(0.1 * h)
        left, top_, right, bottom = d.textbbox((0, 0), s.sign, font=font)
        sign_w, sign_h = right - left + 8, bottom - top_ + 6
        d.rectangle([x - 1, y1 - sign_h - 4, x + 1, y1 + 8], fill=(110, 80, 50))
        d.rectangle(
            [x - sign_w // 2, y1 - sign_h - 4, x + sign_w // 2, y1 - 4], fill=(240, 230, 200), outline=(110, 80, 50)
        )
        d.text((x - sign_w // 2 + 4 - left, y1 - sign_h - 1 - top_), s.sign, fill=(40, 30, 20), font=font)
    for f in s.figures:
        _draw_figure(d, f, w, h, unit, min(h - 2, base_y + int(0.2 * h)))
    if s.filter == "red":
        img = Image.blend(img, Image.new("RGB", (w, h), (200, 20, 30)), 0.45)
    elif s.filter == "greyscale":
        img = img.convert("L").convert("RGB")
    return img


def _draw_figure(d, f: Figure, w: int, h: int, unit: int, feet: int) -> None:
    tall = int(unit * 0.34)
    x = int(f.x * w)
    head = max(3, tall // 8)
    skin = (245, 205, 170)
    hair = HAIR[f.hair]
    top = feet - tall
    if f.kind == "girl":  # long hair behind the head and shoulders
        d.rectangle([x - head - 1, top + head, x + head + 1, top + head * 4], fill=hair)
    d.ellipse([x - head, top, x + head, top + head * 2], fill=skin)
    d.chord([x - head, top - 1, x + head, top + head * 2 - 2], 180, 360, fill=hair)
    body_top, body_low = top + head * 2, top + int(tall * 0.62)
    if f.kind == "girl":
        d.polygon(
            [
                (x - head // 2, body_top),
                (x + head // 2, body_top),
                (x + head * 3 // 2, body_low),
                (x - head * 3 // 2, body_low),
            ],
            fill=DRESS[f.clothes],
        )
    else:
        d.rectangle([x - head, body_top, x + head, body_low - head], fill=SHIRT[f.clothes])
        d.rectangle([x - head, body_low - head, x + head, body_low], fill=(50, 50, 80))
    leg = (50, 50, 80) if f.kind == "boy" else skin
    d.rectangle([x - head // 2 - 1, body_low, x - 1, feet], fill=leg)
    d.rectangle([x + 1, body_low, x + head // 2 + 1, feet], fill=leg)


# --- edits (layout C) --------------------------------------------------------------------------


@dataclass(frozen=True)
class Edit:
    before: Scene
    after: Scene
    instruction: str


def random_edit(rnd: random.Random) -> Edit:
    """One change to a scene, with the instruction that asks for it."""
    base = random_scene(rnd)
    base = replace(base, filter="none")
    kind = rnd.choice(("to_sunset", "to_night", "add_tree", "remove_people", "add_girl", "red"))
    if kind == "to_sunset":
        before = replace(base, sky="day", stars=(), light="sun" if base.light else None)
        return Edit(
            before,
            replace(before, sky="sunset", light_xy=(before.light_xy[0], base.horizon - 0.15)),
            "Make it a sunset.",
        )
    if kind == "to_night":
        before = replace(base, sky="day", stars=(), light="sun")
        after = replace(
            before,
            sky="night",
            light="full_moon",
            clouds=(),
            stars=tuple((rnd.random(), rnd.uniform(0.0, base.horizon - 0.1)) for _ in range(20)),
        )
        return Edit(before, after, "Turn the day into night with a full moon and stars.")
    if kind == "add_tree":
        before = replace(base, trees=())
        return Edit(before, replace(before, trees=((0.5, 1.1),)), "Add a tree in the middle.")
    if kind == "remove_people":
        before = base if base.figures else replace(base, figures=(Figure("girl", "blonde", "red", 0.45),))
        return Edit(before, replace(before, figures=()), "Remove the people.")
    if kind == "add_girl":
        before = replace(base, figures=())
        return Edit(
            before,
            replace(before, figures=(Figure("girl", "pink", "blue", 0.5),)),
            "Add a girl with pink hair in a blue dress.",
        )
    return Edit(base, replace(base, filter="red"), "Give the picture a red tint.")


# --- the dataset -----------------------------------------------------------------------------------


@dataclass
class DemoItem:
    """What the generator wrote for one item: where, and the scene its picture shows."""

    rel_path: str  # the primary image, relative to the root
    scene: Scene
    tags: list[str]
    caption: str
    kind: str = "scene"  # scene | edit | exif | xmp
    before: Scene | None = None
    instruction: str | None = None


@dataclass
class DemoDataset:
    root: Path
    items: list[DemoItem] = field(default_factory=list)
    bad_files: list[str] = field(default_factory=list)


def _png(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def _write(path: Path, data: bytes | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_bytes(data)


def _exif_jpeg(img, caption: str, tags: list[str]) -> bytes:
    from PIL import Image

    exif = Image.Exif()
    exif[0x010E] = caption  # ImageDescription
    exif[0x9C9E] = ("; ".join(tags) + "\x00").encode("utf-16-le")  # XPKeywords (Windows "Tags")
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=85, exif=exif.tobytes())
    return buf.getvalue()


def _xmp_png(img, caption: str, tags: list[str]) -> bytes:
    from xml.sax.saxutils import escape

    from PIL import PngImagePlugin

    subjects = "".join(f"<rdf:li>{escape(t)}</rdf:li>" for t in tags)
    xmp = (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/">'
        f'<dc:description><rdf:Alt><rdf:li xml:lang="x-default">{escape(caption)}</rdf:li></rdf:Alt></dc:description>'
        f"<dc:subject><rdf:Bag>{subjects}</rdf:Bag></dc:subject>"
        "</rdf:Description></rdf:RDF></x:xmpmeta>"
    )
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", xmp)
    buf = io.BytesIO()
    img.save(buf, format="PNG", pnginfo=info, compress_level=6)
    return buf.getvalue()


def demo_counts(n_items: int) -> tuple[int, int, int]:
    """(scenes, edit pairs, embedded-caption images) for ``n_items`` items in all."""
    edits = max(1, n_items // 25)
    embedded = max(2, n_items // 25)
    return n_items - edits - embedded, edits, embedded


def generate_demo(root: str | Path, n_items: int = 150, seed: int = 7) -> DemoDataset:
    """Write the demo dataset (``n_items`` items, plus two bad files) under ``root``."""
    if n_items < 4:
        raise ValueError("the demo needs at least 4 items (scenes, an edit pair and embedded captions)")
    rnd = random.Random(seed)
    root = Path(root)
    out = DemoDataset(root)
    n_scenes, n_edits, n_embedded = demo_counts(n_items)
    for i in range(1, n_scenes + 1):
        scene = random_scene(rnd)
        tags, caption = scene_tags(scene), scene_caption(scene)
        folder = root / "10_scenery"
        _write(folder / f"scene_{i}.png", _png(render(scene)))
        _write(folder / f"scene_{i}.txt", ", ".join(tags) + "\n")
        _write(folder / f"scene_{i}_caption.txt", caption + "\n")
        out.items.append(DemoItem(f"10_scenery/scene_{i}.png", scene, tags, caption))
    for i in range(1, n_edits + 1):
        edit = random_edit(rnd)
        tags, caption = scene_tags(edit.after), scene_caption(edit.after)
        folder = root / "edits"
        _write(folder / f"edit_{i}_source.png", _png(render(edit.before)))
        _write(folder / f"edit_{i}_target.png", _png(render(edit.after)))
        _write(folder / f"edit_{i}_instruction.txt", edit.instruction + "\n")
        _write(folder / f"edit_{i}.txt", ", ".join(tags) + "\n")
        out.items.append(
            DemoItem(f"edits/edit_{i}_target.png", edit.after, tags, caption, "edit", edit.before, edit.instruction)
        )
    for i in range(1, n_embedded + 1):
        scene = random_scene(rnd)
        tags, caption = scene_tags(scene), scene_caption(scene)
        if i % 2:
            rel = f"embedded/photo_{i}.jpg"
            _write(root / rel, _exif_jpeg(render(scene), caption, tags))
            out.items.append(DemoItem(rel, scene, tags, caption, "exif"))
        else:
            rel = f"embedded/drawing_{i}.png"
            _write(root / rel, _xmp_png(render(scene), caption, tags))
            out.items.append(DemoItem(rel, scene, tags, caption, "xmp"))
    # files a real folder has too: the scan reports them and goes on
    whole = _png(render(random_scene(rnd, (128, 128))))
    _write(root / "bad" / "truncated_1.png", whole[: len(whole) // 2])
    _write(root / "bad" / "empty_2.jpg", b"")
    out.bad_files = ["bad/truncated_1.png", "bad/empty_2.jpg"]
    return out
