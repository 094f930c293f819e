"""The user's key remapping: ``$XDG_CONFIG_HOME/sushitui/keymap.toml``.

One line per binding, ``binding-id = "keys"`` (several keys comma-separated)::

    "app.quit" = "ctrl+q,f10"
    "browser.quick_tag" = "w"

(a TOML table works too: ``[browser]`` then ``quick_tag = "w"``). The ids are the
``id=`` of the Bindings under ``sushitui/tui/``; ``all_bindings()`` lists them. The
result goes to Textual's ``App.set_keymap``.

A bad file never stops the app: every problem (not TOML, an unknown id, a key name
Textual does not know) becomes one line of the ``problems`` list, which the app shows
as a notification at start, and every good entry still applies. When the file is not
valid TOML as a whole, it is read line by line so the good lines still count.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import pkgutil
import re
import tomllib
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from textual.binding import Binding

MODIFIERS = {"ctrl", "shift", "alt", "meta", "super", "hyper"}


@dataclass
class LoadedKeymap:
    keymap: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def binding_owners() -> list[type]:
    """Every class under ``sushitui.tui`` that declares its own ``BINDINGS``."""
    import sushitui.tui as package

    owners: list[type] = []
    for module_info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        module = importlib.import_module(module_info.name)
        for _name, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == module.__name__ and "BINDINGS" in vars(cls):
                owners.append(cls)
    return owners


def all_bindings() -> dict[str, list[tuple[type, Binding]]]:
    """Binding id -> the (class, Binding) pairs that carry it. One id may be shared on
    purpose (``nav.back`` on every screen), so one remap changes that action everywhere."""
    ids: dict[str, list[tuple[type, Binding]]] = {}
    for cls in binding_owners():
        for binding in vars(cls)["BINDINGS"]:
            if isinstance(binding, Binding) and binding.id:
                ids.setdefault(binding.id, []).append((cls, binding))
    return ids


def _known_key_names() -> set[str]:
    from textual.keys import KEY_NAME_REPLACEMENTS, Keys

    names = {k.value.rsplit("+", 1)[-1] for k in Keys if not k.value.startswith("<")}
    names.update(KEY_NAME_REPLACEMENTS.values())
    return names


def key_problem(keys: str) -> str | None:
    """Why ``keys`` ("ctrl+q,f10") is not a key list Textual understands, or None."""
    if not keys.strip():
        return "no key given"
    known = _known_key_names()
    for key in keys.split(","):
        key = key.strip()
        if not key:
            return f"an empty key in {keys!r} (a comma too many?)"
        if key == "+" or len(key) == 1:
            continue  # any single character ("w", "?", "+")
        *modifiers, name = key.split("+")
        if not name:
            return f"{key!r} is not a key: a key name must follow the last '+' (ctrl+w)"
        bad = [m for m in modifiers if m not in MODIFIERS]
        if bad:
            return f"{key!r}: unknown modifier {bad[0]!r} (modifiers: {', '.join(sorted(MODIFIERS))}, joined with '+')"
        if len(name) == 1 or name in known:
            continue
        try:  # Textual names punctuation by its Unicode name: question_mark, full_stop
            unicodedata.lookup(name.replace("_", " "))
        except KeyError:
            return f"{key!r}: unknown key name {name!r} (examples: f10, escape, pagedown, question_mark, ctrl+w)"
    return None


def _line_of(lines: list[str], binding_id: str) -> int | None:
    """The 1-based line that sets ``binding_id`` (quoted or as a table key), if found."""
    last = binding_id.rsplit(".", 1)[-1]
    for candidates in ((f'"{binding_id}"', f"'{binding_id}'", binding_id), (last,)):
        for number, line in enumerate(lines, 1):
            head = line.split("=", 1)[0].strip()
            if "=" in line and head in candidates:
                return number
    return None


def _flatten(table: dict, prefix: str = "") -> list[tuple[str, object]]:
    out: list[tuple[str, object]] = []
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.extend(_flatten(value, name + "."))
        else:
            out.append((name, value))
    return out


def _parse_line_by_line(lines: list[str]) -> tuple[list[tuple[str, object, int]], list[str]]:
    """Entries of a file that is not TOML as a whole: each ``[table]`` and ``key = value``
    line on its own, so one broken line costs only that line."""
    entries: list[tuple[str, object, int]] = []
    problems: list[str] = []
    prefix = ""
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        header = re.fullmatch(r"\[\s*([^\[\]]+?)\s*\]\s*(#.*)?", text)
        if header:
            prefix = header.group(1).strip().strip("\"'") + "."
            continue
        try:
            parsed = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            reason = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
            problems.append(f'line {number}: not a TOML line ({reason}); write it as "binding.id" = "keys"')
            continue
        for name, value in _flatten(parsed, prefix):
            entries.append((name, value, number))
    return entries, problems


def load_keymap(path: Path, known_ids: set[str] | None = None) -> LoadedKeymap:
    """Read ``path`` into a keymap for ``App.set_keymap``; problems as readable lines.

    A missing file is no problem (most users have none). ``known_ids`` defaults to the
    ids of every binding under ``sushitui/tui``.
    """
    result = LoadedKeymap()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return result
    except (OSError, UnicodeDecodeError) as exc:
        result.problems.append(f"cannot be read ({exc}); fix or remove the file")
        return result
    lines = text.splitlines()
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        result.problems.append("is not valid TOML as a whole: the lines below are skipped, the other lines apply")
        entries, line_problems = _parse_line_by_line(lines)
        result.problems.extend(line_problems)
    else:
        entries = [(name, value, _line_of(lines, name)) for name, value in _flatten(table)]
    if known_ids is None:
        known_ids = set(all_bindings())
    for name, value, line in entries:
        where = f"line {line}, " if line else ""
        if name not in known_ids:
            close = difflib.get_close_matches(name, sorted(known_ids), n=2, cutoff=0.75)
            hint = f" (did you mean {', '.join(close)}?)" if close else " (the help screen, ? or F1, lists the ids)"
            result.problems.append(f"{where}{name!r}: no key binding has this id{hint}; entry ignored")
            continue
        if not isinstance(value, str):
            result.problems.append(
                f'{where}{name!r}: the keys must be a string, e.g. "{name}" = "ctrl+w"; entry ignored'
            )
            continue
        problem = key_problem(value)
        if problem:
            result.problems.append(f"{where}{name!r}: {problem}; entry ignored")
            continue
        result.keymap[name] = ",".join(k.strip() for k in value.split(","))
    return result
