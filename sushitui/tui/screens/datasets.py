"""The datasets screen (DS-1..3): list, new-dataset form, scan with progress and cancel,
edit settings, reindex, remove the index (files on disk are never touched), problems.

Scans run ``sushitui.dataset.registry.add_dataset``/``reindex`` in a thread worker;
progress comes back as messages and a CancelToken stops the scan (what was indexed so
far stays committed). The list stays usable while a scan runs.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, Checkbox, DataTable, Input, Label, Select, Static
from textual.worker import get_current_worker

from sushitui.errors import log_if_unexpected
from sushitui.progress import CancelToken, ProgressEvent, Throttle
from sushitui.sanitize import for_terminal
from sushitui.tui.widgets.confirm import ConfirmDialog
from sushitui.tui.widgets.key_bar import KeyBar
from sushitui.tui.widgets.progress import ProgressPanel

log = logging.getLogger(__name__)

DEFAULT_CAPTION_SUFFIXES = "main,alt,instruction,caption,tags,description"
DEFAULT_IMAGE_SUFFIXES = "source,target,cref,mask"
CAPTION_TYPES = ("tags", "natural_language", "social_media", "instruction", "description", "prompt")
MAX_PROBLEMS_SHOWN = 5000


def fmt_when(ts: float | None) -> str:
    if not ts:
        return "never"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


def split_list(text: str) -> list[str]:
    return [p.strip() for p in text.replace(";", ",").split(",") if p.strip()]


def parse_caption_types(text: str) -> dict[str, str]:
    """``alt=natural_language, notes=description`` → {"alt": "natural_language", ...}; raises ValueError."""
    result: dict[str, str] = {}
    for part in split_list(text):
        if "=" not in part:
            raise ValueError(f"'{part}': write subtype=type, e.g. alt=natural_language")
        subtype, ctype = (s.strip() for s in part.split("=", 1))
        if ctype not in CAPTION_TYPES:
            raise ValueError(f"'{ctype}' is not a caption type ({', '.join(CAPTION_TYPES)})")
        if not subtype:
            raise ValueError(f"'{part}': the subtype is empty")
        result[subtype] = ctype
    return result


@dataclass
class FormValues:
    name: str
    root_path: str
    type: str
    caption_suffixes: list[str]
    image_suffixes: list[str]
    primary_suffix: str
    recursive: bool
    max_depth: int | None
    read_exif: bool
    caption_types: dict[str, str]
    suffix_separator: str = "_"
    folder_caption: str | None = None

    def scan_settings(self) -> dict:
        """The settings that decide how the folder is read (all but name and path),
        as keyword arguments for DatasetSettings and update_settings."""
        return {
            "type": self.type,
            "caption_suffixes": self.caption_suffixes,
            "image_suffixes": self.image_suffixes,
            "primary_suffix": self.primary_suffix,
            "recursive": self.recursive,
            "max_depth": self.max_depth,
            "read_exif": self.read_exif,
            "caption_types": self.caption_types,
            "suffix_separator": self.suffix_separator,
            "folder_caption": self.folder_caption,
        }


def validate_form(raw: dict, existing_names: set[str], editing: bool) -> tuple[FormValues | None, dict[str, str]]:
    """Check the form's raw strings; returns the values or {field: message}."""
    errors: dict[str, str] = {}
    name = raw["name"].strip()
    if not editing:
        if not name:
            errors["name"] = "a name is required (1–100 characters)"
        elif len(name) > 100:
            errors["name"] = f"the name is {len(name)} characters long; at most 100"
        elif any(ord(c) < 32 or c == "\x7f" for c in name):
            errors["name"] = "control characters are not allowed in the name"
        elif name in existing_names:
            errors["name"] = f"a dataset named '{name}' already exists; pick another name"
    root = os.path.expanduser(raw["root_path"].strip())
    if not editing:
        if not root:
            errors["root_path"] = "the folder with the images is required"
        elif not os.path.exists(root):
            errors["root_path"] = "this folder does not exist"
        elif not os.path.isdir(root):
            errors["root_path"] = "this is a file, not a folder"
        elif not os.access(root, os.R_OK | os.X_OK):
            errors["root_path"] = "this folder is not readable (permission denied)"
    caption_suffixes = split_list(raw["caption_suffixes"])
    image_suffixes = split_list(raw["image_suffixes"])
    separator = raw.get("suffix_separator") or "_"
    # an image suffix may name its role: 0=source (InstructPix2Pix's <seed>_0.jpg)
    roles = {s.partition("=")[0]: (s.partition("=")[2] or s.partition("=")[0]) for s in image_suffixes}
    for field_name, values in (("caption_suffixes", caption_suffixes), ("image_suffixes", image_suffixes)):
        parts = [p for v in values for p in (v.split("=", 1) if field_name == "image_suffixes" else [v])]
        bad = [p for p in parts if not p or not all(c.isalnum() or c in "-" for c in p)]
        if bad:
            errors[field_name] = f"suffixes are letters/digits only: {', '.join(bad)}"
        elif any(separator in v.partition("=")[0] for v in values):
            errors[field_name] = f"a suffix contains the separator '{separator}'"
    overlap = set(caption_suffixes) & set(roles)
    if overlap and "image_suffixes" not in errors:
        errors["image_suffixes"] = f"used as caption suffix too: {', '.join(sorted(overlap))}"
    primary = raw["primary_suffix"].strip()
    if primary and image_suffixes and primary not in roles and primary not in roles.values():
        errors["primary_suffix"] = f"must be one of the image suffixes ({', '.join(image_suffixes)})"
    folder_caption = (raw.get("folder_caption") or "").strip() or None
    if folder_caption and ("/" in folder_caption or "\\" in folder_caption):
        errors["folder_caption"] = "a file name (e.g. instruction.txt), not a path"
    depth_text = raw["max_depth"].strip()
    max_depth = None
    if depth_text:
        try:
            max_depth = int(depth_text)
            if max_depth < 0:
                raise ValueError
        except ValueError:
            errors["max_depth"] = "a whole number ≥ 0, or empty for unlimited"
    try:
        caption_types = parse_caption_types(raw["caption_types"])
    except ValueError as exc:
        errors["caption_types"] = str(exc)
        caption_types = {}
    if errors:
        return None, errors
    return (
        FormValues(
            name=name,
            root_path=str(Path(root).resolve()) if root else root,
            type=raw["type"],
            caption_suffixes=caption_suffixes,
            image_suffixes=image_suffixes,
            primary_suffix=primary
            or (image_suffixes[1] if len(image_suffixes) > 1 else (image_suffixes[0] if image_suffixes else "target")),
            recursive=bool(raw["recursive"]),
            max_depth=max_depth,
            read_exif=bool(raw["read_exif"]),
            caption_types=caption_types,
            suffix_separator=separator,
            folder_caption=folder_caption,
        ),
        {},
    )


class DatasetForm(ModalScreen[FormValues | None]):
    """New dataset (every SCAN-4 setting) or edit settings of an existing one."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="dialog.cancel", tooltip="Close without saving"),
        Binding("ctrl+s", "save", "Save", id="dataset_form.save", tooltip="Save these dataset settings"),
    ]

    FIELDS = (
        "name",
        "root_path",
        "caption_suffixes",
        "image_suffixes",
        "primary_suffix",
        "max_depth",
        "caption_types",
        "folder_caption",
    )

    def __init__(self, existing_names: set[str], current: dict | None = None) -> None:
        super().__init__()
        self.existing_names = existing_names
        self.current = current or {}
        self.editing = current is not None

    def compose(self) -> ComposeResult:
        c = self.current
        title = f"Settings of {for_terminal(c.get('name', ''))}" if self.editing else "New dataset"
        with Vertical(id="dataset-form", classes="dialog"):
            yield Static(Text(title, style="bold"), classes="dialog-title")
            with VerticalScroll(id="form-fields"):
                yield from self._field(
                    "name", "Name (1–100 characters, unique)", c.get("name", ""), disabled=self.editing
                )
                yield from self._field(
                    "root_path",
                    "Folder with the images",
                    c.get("root_path", ""),
                    disabled=self.editing,
                    placeholder="/data/my-lora",
                )
                yield Label("Type")
                yield Select(
                    [("auto (detect)", "auto"), ("single images", "single"), ("pairs / groups", "pairs")],
                    value=c.get("type", "auto"),
                    allow_blank=False,
                    id="f-type",
                )
                yield from self._field(
                    "caption_suffixes",
                    "Caption suffixes (comma-separated)",
                    ",".join(c.get("caption_suffixes", [])) if c else DEFAULT_CAPTION_SUFFIXES,
                )
                yield from self._field(
                    "image_suffixes",
                    "Image suffixes (comma-separated; 0=source names a role)",
                    ",".join(c.get("image_suffixes", [])) if c else DEFAULT_IMAGE_SUFFIXES,
                )
                yield Label("Suffix separator")
                yield Select(
                    [("_  x_source.png", "_"), (".  0.src.jpg", "."), ("-  x-masklabel.png (OneTrainer)", "-")],
                    value=c.get("suffix_separator") or "_",
                    allow_blank=False,
                    id="f-suffix_separator",
                )
                yield from self._field(
                    "primary_suffix", "Primary image suffix of groups", c.get("primary_suffix", "target")
                )
                yield Checkbox("Recurse into sub-folders", value=c.get("recursive", True), id="f-recursive")
                depth = c.get("max_depth")
                yield from self._field(
                    "max_depth",
                    "Max depth (empty = unlimited)",
                    "" if depth is None else str(depth),
                    placeholder="unlimited",
                )
                yield Checkbox(
                    "Read EXIF / XMP / IPTC / PNG text captions", value=c.get("read_exif", False), id="f-read_exif"
                )
                types = ", ".join(f"{k}={v}" for k, v in (c.get("caption_types") or {}).items())
                yield from self._field(
                    "caption_types", "Caption type per subtype (optional)", types, placeholder="alt=natural_language"
                )
                yield from self._field(
                    "folder_caption",
                    "Folder caption file: the instruction of every item in its folder (optional; prompt.json is always read)",
                    c.get("folder_caption") or "",
                    placeholder="instruction.txt",
                )
            with Horizontal(classes="dialog-buttons"):
                yield Button(
                    "Save (ctrl+s)" if self.editing else "Create and scan (ctrl+s)", id="save", variant="primary"
                )
                yield Button("Cancel (Esc)", id="cancel")

    def on_mount(self) -> None:
        # The scrolling container is focusable too; typing must land in the first field.
        first = "#f-type" if self.editing else "#f-name"
        self.query_one(first).focus()

    def _field(self, name: str, label: str, value: str, *, disabled: bool = False, placeholder: str = ""):
        yield Label(label)
        yield Input(value=value, id=f"f-{name}", disabled=disabled, placeholder=placeholder)
        error = Static("", id=f"e-{name}", classes="field-error")
        error.display = False
        yield error

    def raw_values(self) -> dict:
        raw = {name: self.query_one(f"#f-{name}", Input).value for name in self.FIELDS}
        raw["type"] = self.query_one("#f-type", Select).value
        raw["recursive"] = self.query_one("#f-recursive", Checkbox).value
        raw["read_exif"] = self.query_one("#f-read_exif", Checkbox).value
        raw["suffix_separator"] = self.query_one("#f-suffix_separator", Select).value
        return raw

    def action_save(self) -> None:
        values, errors = validate_form(self.raw_values(), self.existing_names, self.editing)
        for name in self.FIELDS:
            label = self.query_one(f"#e-{name}", Static)
            message = errors.get(name)
            label.display = bool(message)
            label.update(Text(for_terminal(message or ""), style="bold red"))
        if values is None:
            first = next(name for name in self.FIELDS if name in errors)
            self.query_one(f"#f-{first}", Input).focus()
            return
        self.dismiss(values)

    def action_cancel(self) -> None:
        self.dismiss(None)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_save()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "save":
            self.action_save()
        else:
            self.dismiss(None)


class ProblemsScreen(ModalScreen[None]):
    """The problems of a dataset's last scan report: path and plain reason per file."""

    BINDINGS = [Binding("escape,q", "close", "Close", id="dialog.close", tooltip="Close this list")]

    def __init__(self, dataset_name: str, problems: list[dict], summary: str = "") -> None:
        super().__init__()
        self.dataset_name = dataset_name
        self.problems = problems
        self.summary = summary

    def compose(self) -> ComposeResult:
        with Vertical(id="problems-box", classes="dialog wide"):
            title = Text(f"Scan problems of {for_terminal(self.dataset_name)}: {len(self.problems):,}", style="bold")
            yield Static(title, classes="dialog-title")
            if self.summary:
                yield Static(Text(for_terminal(self.summary), style="dim"))
            table = DataTable(id="problems-table", cursor_type="row", zebra_stripes=True)
            yield table
            yield Static("", id="problem-detail")
            yield Static(Text("Fix the files, then reindex (r on the list). Esc closes.", style="dim"))

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("File", "Problem")
        rows = []
        self._full: list[tuple[str, str]] = []
        for p in self.problems[:MAX_PROBLEMS_SHOWN]:
            path = p.get("path", "") if isinstance(p, dict) else getattr(p, "path", "")
            reason = p.get("reason", "") if isinstance(p, dict) else getattr(p, "reason", str(p))
            self._full.append((for_terminal(path), for_terminal(reason)))
            rows.append((Text(for_terminal(path)), Text(for_terminal(reason))))
        if len(self.problems) > MAX_PROBLEMS_SHOWN:
            rows.append(
                (
                    Text(f"… {len(self.problems) - MAX_PROBLEMS_SHOWN:,} more", style="dim"),
                    Text("see `sushitui dataset show NAME --json`"),
                )
            )
        if not rows:
            rows.append((Text("no problems", style="dim"), Text("")))
        table.add_rows(rows)
        table.focus()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        """The whole reason of the highlighted file (the table cuts long ones)."""
        if 0 <= event.cursor_row < len(self._full):
            path, reason = self._full[event.cursor_row]
            text = Text(path, style="bold")
            text.append("\n" + reason)
            self.query_one("#problem-detail", Static).update(text)

    def action_close(self) -> None:
        self.dismiss(None)


# --- messages ----------------------------------------------------------------------------


class DatasetsLoaded(Message):
    def __init__(self, rows: list[dict]) -> None:
        super().__init__()
        self.rows = rows


class ScanProgress(Message):
    def __init__(self, event: ProgressEvent) -> None:
        super().__init__()
        self.event = event


class ScanFinished(Message):
    def __init__(self, name: str, report, error: str | None, cancelled: bool) -> None:
        super().__init__()
        self.name = name
        self.report = report
        self.error = error
        self.cancelled = cancelled


def dataset_row(ds) -> dict:
    report = ds.last_scan_report or {}
    return {
        "id": ds.id,
        "name": ds.name,
        "root_path": ds.root_path,
        "type": ds.type,
        "caption_suffixes": list(ds.caption_suffixes or []),
        "image_suffixes": list(ds.image_suffixes or []),
        "primary_suffix": ds.primary_suffix,
        "recursive": bool(ds.recursive),
        "max_depth": ds.max_depth,
        "read_exif": bool(ds.read_exif),
        "caption_types": dict(ds.caption_types or {}),
        "suffix_separator": ds.suffix_separator or "_",
        "folder_caption": ds.folder_caption,
        "items": ds.total_items or 0,
        "images": ds.total_images or 0,
        "captions": ds.total_captions or 0,
        "indexed_at": ds.indexed_at,
        "problems": list(report.get("problems") or []),
        "report": report,
    }


def report_summary(report) -> str:
    """One line from a ScanReport object or its stored dict."""
    get = (lambda k: report.get(k)) if isinstance(report, dict) else (lambda k: getattr(report, k, None))
    parts = []
    for key, label in (
        ("files_seen", "files seen"),
        ("items_added", "added"),
        ("items_updated", "updated"),
        ("items_removed", "removed"),
        ("captions", "captions"),
    ):
        value = get(key)
        if isinstance(value, int):
            parts.append(f"{value:,} {label}")
    problems = get("problems") or []
    parts.append(f"{len(problems):,} problems")
    elapsed = get("elapsed")
    if isinstance(elapsed, (int, float)):
        parts.append(f"{elapsed:.1f} s")
    if get("cancelled"):
        parts.append("cancelled")
    return ", ".join(parts)


def findings_cell(count: int | None) -> Text:
    """Items with findings from the dataset's last ``check`` ("—" when never checked)."""
    if count is None:
        return Text("—", style="dim", justify="right")
    return Text(f"{count:,}", style="yellow" if count else "green", justify="right")


def empty_hint() -> Text:
    """What to do first, when no dataset is registered (fits 80 columns)."""
    text = Text()
    text.append("No datasets yet. What to do first:\n\n", style="bold")
    for key, what, more in (
        ("n", "register a folder of images with captions", "(kohya folders, image + .txt, edit pairs, EXIF/XMP)"),
        ("q", "quit, then run `sushitui --demo`", "(a generated sample dataset to try everything on)"),
        ("?", "every key of this screen", ""),
    ):
        text.append(f" {key} ", style="bold reverse")
        text.append(f"  {what}\n")
        if more:
            text.append(f"     {more}\n", style="dim")
    return text


class DatasetsScreen(Screen):
    """The list of registered datasets; the app's home screen."""

    BINDINGS = [
        Binding("enter", "open", "Open", id="datasets.open", tooltip="Browse the highlighted dataset's items"),
        Binding("n", "new", "New", id="datasets.new", tooltip="Add a dataset folder"),
        Binding("e", "edit", "Settings", id="datasets.edit", tooltip="Edit the highlighted dataset's settings"),
        Binding(
            "r",
            "reindex",
            "Reindex",
            id="datasets.reindex",
            tooltip="Scan the folder again for new, changed and removed files",
        ),
        Binding(
            "d,delete",
            "remove",
            "Remove index",
            id="datasets.remove",
            tooltip="Forget this dataset's index (files on disk stay)",
        ),
        Binding(
            "p", "problems", "Problems", id="datasets.problems", tooltip="Files the last scan could not read, and why"
        ),
        Binding(
            "c",
            "cancel_scan",
            "Cancel scan",
            id="datasets.cancel_scan",
            tooltip="Stop the running scan (what is done is kept)",
        ),
        Binding("f5", "refresh", "Refresh", show=False, id="datasets.refresh", tooltip="Read the list again"),
        Binding("q", "app.quit", "Quit", id="datasets.quit", tooltip="Quit sushitui (ctrl+q quits from every screen)"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict] = []
        self.scan_token: CancelToken | None = None
        self.scan_name: str | None = None
        self.last_scan: ScanFinished | None = None
        self._select_after_load: str | None = None

    def compose(self) -> ComposeResult:
        with Horizontal(classes="topbar"):
            yield Static(Text("Datasets", style="bold"), id="datasets-title")
            yield Static("", id="datasets-db")
        yield DataTable(id="datasets-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="datasets-empty")
        yield ProgressPanel(id="scan-panel")
        yield KeyBar()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_column("Name", key="name")
        table.add_column("Items", key="items")
        table.add_column("Images", key="images")
        table.add_column("Indexed", key="indexed")
        table.add_column("Problems", key="problems")
        table.add_column("Findings", key="findings")
        table.add_column("Folder", key="folder")
        self.watch(self.app, "job_status", self._show_job_status)
        self.action_refresh()

    def _show_job_status(self, status: str) -> None:
        """Background work (first-start dictionary load) in the top bar, else the database."""
        label = self.query_one("#datasets-db", Static)
        if status:
            label.update(Text(for_terminal(status), style="bold"))
        else:
            label.update(Text(for_terminal(str(getattr(self.app, "db_path", ""))), style="dim"))

    def check_action(self, action: str, parameters) -> bool | None:
        if action == "cancel_scan":
            return self.scan_token is not None
        if action in ("open", "edit", "reindex", "remove", "problems"):
            return bool(self.rows) or None
        return True

    # -- list ------------------------------------------------------------------------------
    def action_refresh(self) -> None:
        self._load()

    @work(thread=True, exclusive=True, group="datasets-list", exit_on_error=False)
    def _load(self) -> None:
        from sushitui.check.report import findings_counts
        from sushitui.dataset.registry import list_datasets

        rows = [dataset_row(ds) for ds in list_datasets()]
        counts = findings_counts()  # datasets never checked are absent
        for row in rows:
            row["findings"] = counts.get(row["id"])
        if not get_current_worker().is_cancelled:  # a newer load was asked for: its rows are fresher
            self.post_message(DatasetsLoaded(rows))

    def on_datasets_loaded(self, message: DatasetsLoaded) -> None:
        table = self.query_one(DataTable)
        selected = self.current_row()
        keep = selected["name"] if selected else None
        # After a scan the scanned dataset is highlighted: "press p to see the problems"
        # (and e, r, Enter) must act on it, not on the row that happened to be selected.
        # A load that started before the scan's commit (the form closing reloads the list)
        # can still arrive after it: the scanned dataset is then not among its rows, and
        # waits for the next load instead of being forgotten.
        after_scan = self._select_after_load
        if after_scan is not None and any(row["name"] == after_scan for row in message.rows):
            keep, self._select_after_load = after_scan, None
        self.rows = message.rows
        table.clear()
        for row in self.rows:
            problems = len(row["problems"])
            table.add_row(
                Text(for_terminal(row["name"]), style="bold"),
                Text(f"{row['items']:,}", justify="right"),
                Text(f"{row['images']:,}", justify="right"),
                Text(fmt_when(row["indexed_at"])),
                Text(f"{problems:,}" if problems else "–", style="yellow" if problems else "dim", justify="right"),
                findings_cell(row.get("findings")),
                Text(for_terminal(row["root_path"]), style="dim"),
                key=row["name"],
            )
        if keep is not None:
            for i, row in enumerate(self.rows):
                if row["name"] == keep:
                    table.move_cursor(row=i)
        empty = self.query_one("#datasets-empty", Static)
        # The hint takes the table's place at the top: notifications (first start, key map)
        # stack up from the bottom right and must not cover it at 80×24.
        empty.display = not self.rows
        table.display = bool(self.rows)
        empty.update(empty_hint())
        self.refresh_bindings()

    def current_row(self) -> dict | None:
        table = self.query_one(DataTable)
        if not self.rows or table.cursor_row is None or not (0 <= table.cursor_row < len(self.rows)):
            return None
        return self.rows[table.cursor_row]

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open()

    def action_open(self) -> None:
        row = self.current_row()
        if row is None:
            return
        from sushitui.tui.screens.browser import BrowserScreen

        self.app.push_screen(BrowserScreen(row["id"], row["name"], row["root_path"]))

    def on_screen_resume(self) -> None:
        self.action_refresh()

    # -- new / edit ------------------------------------------------------------------------------
    def action_new(self) -> None:
        self.app.push_screen(DatasetForm({r["name"] for r in self.rows}), self._create)

    def _create(self, values: FormValues | None) -> None:
        if values is None:
            return
        if self.scan_token is not None:
            self.notify("A scan is already running; wait for it or cancel it (c).", severity="warning")
            return
        self._start_scan(values.name, values, new=True)

    def action_edit(self) -> None:
        row = self.current_row()
        if row is None:
            return
        self.app.push_screen(DatasetForm(set(), current=row), lambda v: self._edited(row["name"], v))

    def _edited(self, name: str, values: FormValues | None) -> None:
        if values is None:
            return
        self._save_settings(name, values)

    @work(thread=True, exclusive=True, group="datasets-edit", exit_on_error=False)
    def _save_settings(self, name: str, values: FormValues) -> None:
        from sushitui.dataset.registry import update_settings

        try:
            update_settings(name, **values.scan_settings())
        except Exception as exc:  # noqa: BLE001 - shown to the user, the form stays open; a bug is logged
            log_if_unexpected(log, exc, "saving dataset settings")
            self.app.call_from_thread(
                self.notify, f"Settings not saved: {for_terminal(exc)}", severity="error", timeout=10
            )
            return
        self.app.call_from_thread(self._settings_saved, name)

    def _settings_saved(self, name: str) -> None:
        self.action_refresh()

        def answer(ok: bool | None) -> None:
            if ok:
                self._reindex_named(name)

        self.app.push_screen(
            ConfirmDialog(f"Settings of '{name}' saved. Reindex now so they take effect?", yes_label="Reindex"), answer
        )

    # -- scan / reindex ----------------------------------------------------------------------------
    def action_reindex(self) -> None:
        row = self.current_row()
        if row is not None:
            self._reindex_named(row["name"])

    def _reindex_named(self, name: str) -> None:
        if self.scan_token is not None:
            self.notify("A scan is already running; wait for it or cancel it (c).", severity="warning")
            return
        self._start_scan(name, None, new=False)

    def _start_scan(self, name: str, values: FormValues | None, new: bool) -> None:
        self.scan_token = CancelToken()
        self.scan_name = name
        panel = self.query_one(ProgressPanel)
        panel.start(f"{'Scanning' if new else 'Reindexing'} {name} — press c to cancel")
        self.refresh_bindings()
        self._scan(name, values, new, self.scan_token)

    @work(thread=True, group="datasets-scan", exit_on_error=False)
    def _scan(self, name: str, values: FormValues | None, new: bool, token: CancelToken) -> None:
        from sushitui.dataset import registry

        throttle = Throttle(lambda event: self.post_message(ScanProgress(event)), interval=0.1)
        report = None
        error = None
        cancelled = False
        try:
            if new:
                settings = registry.DatasetSettings(
                    name=values.name, root_path=values.root_path, **values.scan_settings()
                )
                _, report = registry.add_dataset(settings, progress=throttle, cancel=token)
            else:
                report = registry.reindex(name, progress=throttle, cancel=token)
            cancelled = bool(getattr(report, "cancelled", False))
        except Exception as exc:  # noqa: BLE001 - the scan row must leave "scanning" and say why; a bug is logged
            log_if_unexpected(log, exc, f"scanning {name}")
            error = str(exc) or type(exc).__name__
        self.post_message(ScanFinished(name, report, error, cancelled))

    def on_scan_progress(self, message: ScanProgress) -> None:
        if self.scan_token is not None:
            self.query_one(ProgressPanel).update_event(message.event)

    def on_scan_finished(self, message: ScanFinished) -> None:
        self.last_scan = message
        self._select_after_load = message.name
        self.scan_token = None
        self.scan_name = None
        self.query_one(ProgressPanel).finish()
        self.refresh_bindings()
        name = for_terminal(message.name)
        if message.error:
            self.notify(f"Scan of {name} failed: {for_terminal(message.error)}", severity="error", timeout=12)
        elif message.cancelled:
            self.notify(
                f"Scan of {name} cancelled; what was indexed so far is kept. Reindex (r) to finish.",
                severity="warning",
                timeout=8,
            )
        else:
            summary = report_summary(message.report) if message.report is not None else ""
            problems = len(getattr(message.report, "problems", None) or [])
            hint = " — press p to see the problems" if problems else ""
            self.notify(
                f"Indexed {name}: {summary}{hint}", severity="warning" if problems else "information", timeout=8
            )
        self.action_refresh()

    def action_cancel_scan(self) -> None:
        if self.scan_token is not None:
            self.scan_token.cancel()
            self.query_one(ProgressPanel).set_status("cancelling… (committing what was indexed so far)")

    # -- remove / problems --------------------------------------------------------------------------
    def action_remove(self) -> None:
        row = self.current_row()
        if row is None:
            return
        if self.scan_name == row["name"]:
            self.notify("Cancel the running scan first (c).", severity="warning")
            return

        def answer(ok: bool | None) -> None:
            if ok:
                self._remove(row["name"])

        self.app.push_screen(
            ConfirmDialog(
                f"Remove the index of '{row['name']}'?",
                detail=f"Its {row['items']:,} items, tags and app-only data are removed from the database.\n"
                f"The files in {row['root_path']} are NOT deleted; you can register the folder again.",
                yes_label="Remove index",
                danger=True,
            ),
            answer,
        )

    @work(thread=True, group="datasets-remove", exit_on_error=False)
    def _remove(self, name: str) -> None:
        from sushitui.dataset.registry import remove_dataset

        try:
            remove_dataset(name)
        except Exception as exc:  # noqa: BLE001 - shown to the user, the list stays; a bug is logged
            log_if_unexpected(log, exc, f"removing {name}")
            self.app.call_from_thread(
                self.notify, f"Could not remove {for_terminal(name)}: {for_terminal(exc)}", severity="error"
            )
            return
        self.app.call_from_thread(self.notify, f"Removed the index of {for_terminal(name)} (files untouched)")
        self.app.call_from_thread(self.action_refresh)

    def action_problems(self) -> None:
        row = self.current_row()
        if row is None:
            return
        self.app.push_screen(
            ProblemsScreen(row["name"], row["problems"], report_summary(row["report"]) if row["report"] else "")
        )
