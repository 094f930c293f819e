"""The import contracts of pyproject.toml ([tool.importlinter]) hold, and a violation fails.

Layers point down only: store <- tags <- dataset <- {tagger, export, training} <- {cli, tui};
config, progress, sanitize and workers import none of them; only the TUI imports Textual
or Rich; the TUI imports no peewee and no store models (known exceptions are listed in
pyproject.toml). On failure the message is import-linter's report: which import, where.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "pyproject.toml"
LINT = "from importlinter.cli import lint_imports_command; lint_imports_command()"


def lint_imports(package_parent: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` on the ``sushitui`` package found in ``package_parent``, with the
    contracts of the pyproject.toml there (no cache: nothing written into the checkout)."""
    env = {**os.environ, "PYTHONPATH": str(package_parent)}
    return subprocess.run(
        [sys.executable, "-c", LINT, "--no-cache", "--no-logo"],
        cwd=package_parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_import_contracts_hold():
    result = lint_imports(REPO)
    assert result.returncode == 0, f"import contracts broken:\n{result.stdout}\n{result.stderr}"
    assert "0 broken" in result.stdout and "KEPT" in result.stdout


def _contracts() -> dict[str, dict]:
    import tomllib

    with CONFIG.open("rb") as f:
        return {c["id"]: c for c in tomllib.load(f)["tool"]["importlinter"]["contracts"]}


def test_every_top_level_package_is_placed_in_the_contracts():
    """A new package (say sushitui/foo/) is in no layer until someone puts it in one, and
    the Textual rule lists its sources by name: a missing one would go unchecked."""
    import pkgutil

    import sushitui

    top = {f"sushitui.{m.name}" for m in pkgutil.iter_modules(sushitui.__path__)} - {"sushitui.__main__"}
    contracts = _contracts()
    layered = {f"sushitui.{name.strip()}" for layer in contracts["layers"]["layers"] for name in layer.split("|")}
    shared = set(contracts["shared-modules"]["source_modules"])
    assert top - layered - shared == set(), "add these to a layer (or the shared modules) in pyproject.toml"
    assert set(contracts["no-textual-outside-tui"]["source_modules"]) == top - {"sushitui.tui"}
    assert set(contracts["shared-modules"]["forbidden_modules"]) == layered


@pytest.fixture(scope="module")
def package_copy(tmp_path_factory) -> Path:
    """The sources of ``sushitui`` (Python files only) and the contracts in a scratch folder."""
    parent = tmp_path_factory.mktemp("arch")

    def not_python(folder: str, names: list[str]) -> list[str]:
        return [
            n
            for n in names
            if not n.endswith(".py") and not (Path(folder) / n).is_dir() or n == "__pycache__" or n == "_taglist"
        ]

    shutil.copytree(REPO / "sushitui", parent / "sushitui", ignore=not_python)
    shutil.copy(CONFIG, parent / "pyproject.toml")
    return parent


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("store/db.py", "from sushitui.tags import normalize", "Layers point down"),
        ("tags/normalize.py", "from sushitui.dataset import items", "Layers point down"),
        ("tagger/hub.py", "from sushitui.export import formats", "Layers point down"),  # siblings stay apart
        ("cli/dict_cmd.py", "from sushitui.tui.widgets import confirm", "Layers point down"),
        ("progress.py", "from sushitui.store import db", "config, progress, sanitize and workers"),
        ("dataset/items.py", "import rich.text", "Only sushitui.tui imports Textual or Rich"),
        ("export/formats.py", "from textual.app import App", "Only sushitui.tui imports Textual or Rich"),
        ("tui/widgets/confirm.py", "import peewee", "sushitui.tui imports no peewee"),
        ("tui/widgets/confirm.py", "from sushitui.store import Item", "sushitui.tui builds no queries"),
    ],
)
def test_a_deliberate_violation_fails_with_the_contract_and_the_import(package_copy, module, line, contract):
    path = package_copy / "sushitui" / module
    original = path.read_text(encoding="utf-8")
    path.write_text(original + f"\n{line}  # deliberate violation\n", encoding="utf-8")
    try:
        result = lint_imports(package_copy)
    finally:
        path.write_text(original, encoding="utf-8")
    report = " ".join(result.stdout.split())  # import-linter wraps long lines
    assert result.returncode != 0, report
    assert f"{contract}" in report and "BROKEN" in report
    importer = "sushitui." + module.removesuffix(".py").replace("/", ".")
    assert importer in report, report


def test_item_detail_stays_split_into_panes_none_over_400_lines():
    """Issue 15 §4: the item detail screen was one 1,164-line module with a 77-method class.
    Its panes are widgets of their own (tui/widgets/detail/), its keys a module of their own
    (screens/detail_keys.py); this keeps the screen module and every pane class readable in
    one sitting, so the next feature lands in the pane it belongs to."""
    import ast

    screen = REPO / "sushitui" / "tui" / "screens" / "item_detail.py"
    assert len(screen.read_text().splitlines()) < 400, f"{screen.name} is back over 400 lines"
    too_long = []
    for module in sorted((REPO / "sushitui" / "tui" / "widgets" / "detail").glob("*.py")) + [screen]:
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 >= 400:
                too_long.append(f"{module.name}:{node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert not too_long, f"pane classes over 400 lines: {too_long}"
