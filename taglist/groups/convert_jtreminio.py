"""Regenerate the shipped group files from jtreminio/danbooru-tag-groups (MIT).

    python taglist/groups/convert_jtreminio.py /path/to/tag-groups-jtreminio

Writes ``10-jtreminio.json``: a handful of broad groups, each the union of the leaves of
one or more top-level branches of ``tag_tree.json``, and adds Character / Copyright /
Artist members to the default groups from the ``_data`` lists (``00-defaults.json`` keeps
its hand-written Quality / Rating / Meta lists). Tags are written with spaces instead of
underscores (kaomoji keep theirs); matching ignores the difference anyway.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from sushitui.tags.normalize import clean, match_key, underscores_to_spaces  # noqa: E402

# broad group -> (colour, top-level branches of tag_tree.json)
BROAD = {
    "Body": ("#F4A261", ["body"]),
    "Clothes": ("#B5838D", ["clothes"]),
    "Composition": ("#90BE6D", ["image composition"]),
    "Places": ("#84A59D", ["locations", "elements", "plants"]),
    "Objects": ("#F6BD60", ["objects", "weapons", "vehicles", "technology / sci-fi", "food"]),
    "Creatures": ("#9D8189", ["creatures"]),
    "Actions": ("#A2D2FF", ["verbs and gerunds"]),
}
MAX_CHARACTERS = 6000
MAX_COPYRIGHTS = 800
MAX_ARTISTS = 3000


def leaves(node, root: Path) -> list[str]:
    out: list[str] = []
    if isinstance(node, dict):
        for v in node.values():
            out.extend(leaves(v, root))
    elif isinstance(node, list):
        for t in node:
            if not isinstance(t, str):
                continue
            if t.startswith("$ref:"):
                path = root / t.split(":", 1)[1].strip()
                if path.is_file():
                    lines = [ln.strip() for ln in path.read_text(encoding="utf-8", errors="replace").splitlines()]
                    lines = [ln for ln in lines if ln and not ln.startswith("#")]
                    if not any("," in ln for ln in lines):
                        out.extend(lines)
            else:
                out.append(t)
    return out


def tidy(tags) -> list[str]:
    seen, out = set(), []
    for t in tags:
        t = clean(underscores_to_spaces(clean(t)))
        k = match_key(t)
        if t and "," not in t and k not in seen:
            seen.add(k)
            out.append(t)
    return sorted(out, key=match_key)


def prompt_lines(path: Path) -> list[list[str]]:
    rows = []
    for ln in path.read_text(encoding="utf-8", errors="replace").splitlines():
        ln = ln.strip()
        if ln and not ln.startswith("#"):
            rows.append([clean(p) for p in ln.split(",") if clean(p)])
    return rows


def main(src: Path) -> None:
    tree = json.loads((src / "tag_tree.json").read_text(encoding="utf-8"))
    broad = []
    for name, (color, branches) in BROAD.items():
        tags = []
        for b in branches:
            tags.extend(leaves(tree[b], src))
        broad.append({"name": name, "color": color, "description": f"Danbooru tag groups: {', '.join(branches)}", "tags": tidy(tags)})

    data = src / "_data"
    characters: Counter = Counter()
    copyrights: Counter = Counter()
    for f in sorted((data / "characters").glob("*/NoobAI-XL_danbooru.txt")) + sorted((data / "characters").glob("*/noob-wiki.txt")):
        for row in prompt_lines(f):
            characters[row[0]] += 1
            if len(row) > 1 and not row[1][:1].isdigit():
                copyrights[row[1]] += 1
    for f in sorted((data / "characters" / "names").glob("*.txt")):
        copyrights[f.stem.replace("_", " ")] += 5
        for ln in f.read_text(encoding="utf-8", errors="replace").splitlines():
            if ln.strip() and not ln.startswith("#"):
                characters[ln.strip()] += 1
    artists = [ln.strip() for ln in (data / "artists" / "artists.txt").read_text(encoding="utf-8").splitlines()
               if ln.strip() and not ln.startswith("#")]
    defaults_path = HERE / "00-defaults.json"
    defaults = json.loads(defaults_path.read_text(encoding="utf-8"))
    by_name = {g["name"]: g for g in defaults["groups"]}
    by_name["Character"]["tags"] = tidy(t for t, _ in characters.most_common(MAX_CHARACTERS))
    by_name["Copyright"]["tags"] = tidy(t for t, _ in copyrights.most_common(MAX_COPYRIGHTS))
    by_name["Artist"]["tags"] = tidy(artists[:MAX_ARTISTS])
    defaults_path.write_text(json.dumps(defaults, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    out = {
        "source": "jtreminio/danbooru-tag-groups @56a1697 (MIT), see README.md",
        "groups": broad,
    }
    (HERE / "10-jtreminio.json").write_text(json.dumps(out, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    for g in defaults["groups"] + broad:
        print(f"{g['name']:<12}{len(g['tags']):>6}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
