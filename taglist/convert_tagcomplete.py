"""Rebuild the shipped taglist from the tag-autocomplete ``danbooru.csv`` (MIT).

    python taglist/convert_tagcomplete.py PATH/TO/danbooru.csv taglist/

Writes ``<Category>.json`` (``{"tag": count}``, by count then name) for the six
categories and ``aliases.json`` (``{"tag": ["alias", ...]}``). Rows the importer would
reject are reported and left out.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from sushitui.tags.dictionary_formats import CATEGORY_FILES, parse_tagcomplete


def main(src: str, out_dir: str) -> int:
    parsed = parse_tagcomplete(Path(src))
    out = Path(out_dir)
    per_cat: dict[str, list] = {c: [] for c in CATEGORY_FILES}
    aliases: dict[str, list[str]] = {}
    for row in sorted(parsed.rows, key=lambda r: (-r[2], r[0])):
        per_cat[row[1]].append((row[0], row[2]))
        if row[4]:
            aliases[row[0]] = list(row[4])
    for cat, fname in CATEGORY_FILES.items():
        (out / fname).write_text(json.dumps(dict(per_cat[cat]), ensure_ascii=False, indent=0) + "\n", encoding="utf-8")
    (out / "aliases.json").write_text(json.dumps(aliases, ensure_ascii=False, indent=0) + "\n", encoding="utf-8")
    for p in parsed.rejected:
        print(f"rejected {p.where}: {p.tag!r}: {p.reason}", file=sys.stderr)
    print({c: len(v) for c, v in per_cat.items()}, "aliases:", len(aliases))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
