"""Export dialog (EX-1..3): format, target folder, caption options and the trigger word,
with a live preview of three captions exactly as the trainer will read them; the export
runs in a thread worker with a progress bar and can be cancelled (OUTDIR is then left
empty).

The trigger word is asked explicitly: forgetting it wastes a whole training run, so
exporting without one needs a second press of Export. ``dismiss`` returns the
``ExportReport`` (None when closed without exporting).
"""

from __future__ import annotations

import logging

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, Select, Static

from sushitui.errors import UserError
from sushitui.progress import CancelToken, ProgressEvent
from sushitui.sanitize import for_terminal
from sushitui.tui.widgets.progress import ProgressPanel

log = logging.getLogger(__name__)

# format -> (short label for the list, what the trainer reads: one line under the list)
FORMATS = {
    "txt": ("txt (kohya N_name folders)", "sd-scripts DreamBooth: N_name/ folders, image + .txt caption"),
    "kohya-toml": ("kohya-toml (dataset config)", "sd-scripts: image + .txt, dataset.toml for --dataset_config"),
    "kohya-json": ("kohya-json (fine-tuning)", "sd-scripts fine-tuning: metadata.json captions + dataset.toml"),
    "kohya-jsonl": ("kohya-jsonl (JSONL metadata)", "sd-scripts: JSONL captions, dataset.toml names it metadata_file"),
    "ai-toolkit": ("ai-toolkit (dataset YAML)", "ai-toolkit: images/ + .txt (control/, mask/), dataset.yaml"),
    "diffusers": ("diffusers (HF imagefolder)", "diffusers --train_data_dir: imagefolder metadata.jsonl (text)"),
    "onetrainer": ("onetrainer (concepts.json)", "OneTrainer: a concept per folder, image + .txt, concepts.json"),
    "diffusion-pipe": ("diffusion-pipe (dataset.toml)", "diffusion-pipe: image + .txt, dataset.toml [[directory]]"),
    "musubi": ("musubi (musubi-tuner TOML)", "musubi-tuner: image_directory + .txt, dataset config TOML"),
}
FORMAT_CHOICES = [(label, fmt) for fmt, (label, _what) in FORMATS.items()]
LINK_CHOICES = [("hard link", "link"), ("symlink", "symlink"), ("copy", "copy")]
PREVIEW_DELAY_S = 0.25


def format_hint(fmt: str) -> Text:
    """The line under the format list: what the chosen trainer reads."""
    return Text(for_terminal(FORMATS.get(fmt, ("", ""))[1]))


class ExportDialog(ModalScreen):
    """Export the whole dataset, a selection (``item_ids``) or a query result."""

    DEFAULT_CSS = """
    ExportDialog #export-dialog { width: 100; max-width: 100%; height: auto; max-height: 100%; }
    ExportDialog #export-form { height: auto; max-height: 14; }
    ExportDialog .export-row { height: auto; }
    ExportDialog .export-row > Vertical { width: 1fr; height: auto; margin-right: 1; }
    ExportDialog .export-row > Checkbox { width: auto; margin-right: 2; }
    ExportDialog #export-trigger-hint { color: $text-muted; height: auto; }
    ExportDialog #export-format-hint { color: $text-muted; height: 1; text-wrap: nowrap; text-overflow: ellipsis; }
    ExportDialog #export-preview { height: auto; max-height: 7; border: round $primary; padding: 0 1;
                                   text-wrap: nowrap; text-overflow: ellipsis; }
    ExportDialog #export-error { color: $error; height: auto; }
    ExportDialog #export-result { height: auto; max-height: 6; }
    """

    BINDINGS = [
        Binding(
            "escape",
            "cancel",
            "Cancel / close",
            tooltip="Stop a running export (nothing is left in the folder), or close",
            id="dialog.cancel",
        ),
        Binding("ctrl+s", "start", "Export", tooltip="Export with these settings", id="export.start"),
    ]

    def __init__(self, dataset_id: int, item_ids: list[int] | None = None, query: str | None = None) -> None:
        super().__init__()
        self.dataset_id = dataset_id
        self.item_ids = list(item_ids) if item_ids else None
        self.query_text = query.strip() if query and query.strip() else None
        self.token = CancelToken()
        self.running = False
        self.report = None
        self.preview_texts: list[str] = []
        self._confirmed_no_trigger = False
        self._confirmed_captions = False
        self.known_subtypes: set[str] | None = None  # caption subtypes the dataset has
        self._preview_timer = None

    # --- layout -------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="export-dialog"):
            yield Static(Text("Export for training", style="bold"), id="export-title", classes="dialog-title")
            with VerticalScroll(id="export-form"):
                with Horizontal(classes="export-row"):
                    with Vertical():
                        yield Label("Format")
                        yield Select(FORMAT_CHOICES, value="txt", allow_blank=False, id="ex-format", compact=True)
                    with Vertical():
                        yield Label("Images")
                        yield Select(LINK_CHOICES, value="link", allow_blank=False, id="ex-link", compact=True)
                yield Static(format_hint("txt"), id="export-format-hint")
                yield Label("Output folder (new or empty)")
                yield Input(placeholder="/path/to/new/folder", id="ex-outdir", compact=True)
                yield Label("Trigger word (first in every caption)")
                yield Input(
                    placeholder="e.g. ohwx person — leave empty only if you train without one",
                    id="ex-trigger",
                    compact=True,
                )
                yield Static("", id="export-trigger-hint")
                with Horizontal(classes="export-row"):
                    with Vertical():
                        yield Label("Captions, in order")
                        yield Input("main", id="ex-caption", compact=True)
                    with Vertical():
                        yield Label("Exclude tag groups")
                        yield Input("", placeholder="e.g. Meta", id="ex-exclude", compact=True)
                    with Vertical():
                        yield Label("Repeats")
                        yield Input("", placeholder="from folder names", id="ex-repeats", compact=True)
                with Horizontal(classes="export-row"):
                    yield Checkbox("Aliases", value=False, id="ex-aliases", compact=True)
                    yield Checkbox("Underscores → spaces", value=False, id="ex-underscores", compact=True)
                    yield Checkbox("Escape ( )", value=False, id="ex-parens", compact=True)
                    yield Checkbox("Zip", value=False, id="ex-zip", compact=True)
            yield Static(Text("Preview: loading…"), id="export-preview")
            error = Static("", id="export-error")
            error.display = False
            yield error
            yield ProgressPanel(id="export-progress")
            yield Static("", id="export-result")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Export (ctrl+s)", id="start", variant="primary", compact=True)
                yield Button("Cancel (Esc)", id="cancel", compact=True)

    def on_mount(self) -> None:
        self.query_one("#ex-trigger", Input).focus()
        self._show_scope()
        self._load_subtypes()
        self._schedule_preview()

    # --- options ------------------------------------------------------------------------
    def build_options(self):
        """ExportOptions from the form; raises ValueError with a message for the user."""
        from sushitui.export import ExportOptions

        repeats_text = self.query_one("#ex-repeats", Input).value.strip()
        repeats = None
        if repeats_text:
            if not repeats_text.isdecimal() or int(repeats_text) < 1:
                raise ValueError("repeats must be a whole number of at least 1 (or empty)")
            repeats = int(repeats_text)
        trigger = self.query_one("#ex-trigger", Input).value.strip() or None
        options = ExportOptions(
            format=str(self.query_one("#ex-format", Select).value),
            query=self.query_text,
            item_ids=self.item_ids,
            caption=tuple(c.strip() for c in self.query_one("#ex-caption", Input).value.split(",") if c.strip())
            or ("main",),
            exclude_groups=tuple(g.strip() for g in self.query_one("#ex-exclude", Input).value.split(",") if g.strip()),
            aliases=self.query_one("#ex-aliases", Checkbox).value,
            underscores_to_spaces=self.query_one("#ex-underscores", Checkbox).value,
            escape_parens=self.query_one("#ex-parens", Checkbox).value,
            trigger=trigger,
            repeats=repeats,
            link_mode=str(self.query_one("#ex-link", Select).value),
            zip=self.query_one("#ex-zip", Checkbox).value,
        )
        from sushitui.export import ExportError

        try:
            options.validate()
        except ExportError as exc:
            raise ValueError(str(exc)) from None
        return options

    # --- scope line ------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="export-scope", exit_on_error=False)
    def _show_scope(self) -> None:
        from sushitui.dataset.registry import DatasetNotFound, get_dataset

        try:
            ds = get_dataset(self.dataset_id)
        except DatasetNotFound:  # removed meanwhile: the export itself will say so
            ds = None
        name = ds.name if ds else f"#{self.dataset_id}"
        if self.item_ids is not None:
            scope = f"{len(self.item_ids):,} selected items"
        elif self.query_text:
            scope = f"items matching {self.query_text!r}"
        else:
            scope = f"all {ds.total_items:,} items" if ds else "all items"
        self.app.call_from_thread(
            self.query_one("#export-title", Static).update,
            Text.assemble(("Export for training: ", "bold"), for_terminal(name), f" — {scope}"),
        )

    @work(thread=True, exclusive=True, group="export-subtypes", exit_on_error=False)
    def _load_subtypes(self) -> None:
        from sushitui.dataset.items import caption_kinds

        # The export picks by subtype ("main" is also the unsuffixed caption) or by type.
        self.app.call_from_thread(self._subtypes_loaded, caption_kinds(self.dataset_id))

    def _subtypes_loaded(self, known: set[str]) -> None:
        self.known_subtypes = known
        self._schedule_preview()

    def caption_warning(self, wanted: tuple[str, ...]) -> str | None:
        """A typo in "Captions, in order" exported every image with an empty caption; the
        preview only said "(no caption)". Say which subtypes exist instead."""
        if not self.known_subtypes or any(w in self.known_subtypes for w in wanted):
            return None
        have = ", ".join(sorted(self.known_subtypes))
        return f"No item has a caption {', '.join(wanted)}; this dataset has: {have}"

    # --- live preview ---------------------------------------------------------------------
    @on(Input.Changed)
    @on(Checkbox.Changed)
    @on(Select.Changed)
    def _options_changed(self, event) -> None:
        if isinstance(event, Select.Changed) and event.select.id == "ex-format":
            self.query_one("#export-format-hint", Static).update(format_hint(str(event.value)))
        if getattr(event, "input", None) is not None and event.input.id == "ex-trigger":
            self._confirmed_no_trigger = False
        if getattr(event, "input", None) is not None and event.input.id == "ex-caption":
            self._confirmed_captions = False
        self._schedule_preview()

    def _schedule_preview(self) -> None:
        if self._preview_timer is not None:
            self._preview_timer.stop()
        self._preview_timer = self.set_timer(PREVIEW_DELAY_S, self._refresh_preview)

    def _refresh_preview(self) -> None:
        self._preview_timer = None
        try:
            options = self.build_options()
        except ValueError as exc:
            self._show_preview(None, str(exc))
            return
        self._trigger_hint(options.trigger)
        self._load_preview(options)

    @work(thread=True, exclusive=True, group="export-preview", exit_on_error=False)
    def _load_preview(self, options) -> None:
        from sushitui.export import ExportError, preview_captions

        try:
            previews = preview_captions(self.dataset_id, options, n=3)
        except (ExportError, ValueError) as exc:
            self.app.call_from_thread(self._show_preview, None, str(exc))
            return
        self.app.call_from_thread(self._show_preview, [(p.image, p.text) for p in previews], None)

    def _show_preview(self, rows: list[tuple[str, str]] | None, error: str | None) -> None:
        box = self.query_one("#export-preview", Static)
        if error is not None:
            box.update(Text.assemble(("Preview: ", "bold"), (for_terminal(error), "red")))
            return
        self.preview_texts = [text for _, text in rows or []]
        # one line per caption (cut at the edge by the CSS) so all three stay visible at 80×24
        out = Text.assemble(("Preview — captions exactly as the trainer reads them:", "bold"))
        if not rows:
            out.append("\n(no items to export)")
        for image, text in rows or []:
            out.append("\n")
            out.append(for_terminal(image.rsplit("/", 1)[-1]) + ": ", style="dim")
            out.append(for_terminal(text) if text else "(no caption)")
        try:
            warning = self.caption_warning(self.build_options().caption)
        except ValueError:
            warning = None
        if warning:
            out.append("\n" + for_terminal(warning), style="yellow")
        box.update(out)

    def _trigger_hint(self, trigger: str | None) -> None:
        hint = self.query_one("#export-trigger-hint", Static)
        if trigger:
            fmt = str(self.query_one("#ex-format", Select).value)
            where = {
                "ai-toolkit": "trigger_word and keep_tokens",
                "txt": "first token",
                "diffusers": "first words",
                "onetrainer": "keep_tags_count",
                "diffusion-pipe": "first token",
                "musubi": "first token",
            }.get(fmt, "keep_tokens")
            hint.update(Text(f"'{for_terminal(trigger)}' goes first in every caption ({where} keeps it there)"))
        else:
            hint.update(Text("No trigger word: captions are exported as they are.", style="yellow"))

    # --- running ------------------------------------------------------------------------------
    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "start":
            self.action_start()
        elif event.button.id == "cancel":
            self.action_cancel()

    def _error(self, message: str | None) -> None:
        box = self.query_one("#export-error", Static)
        box.display = bool(message)
        box.update(Text(for_terminal(message or "")))

    def action_start(self) -> None:
        if self.running:
            return
        if self.report is not None:
            self.dismiss(self.report)
            return
        try:
            options = self.build_options()
        except ValueError as exc:
            self._error(str(exc))
            return
        outdir = self.query_one("#ex-outdir", Input).value.strip()
        if not outdir:
            self._error("enter the output folder (a new or empty folder)")
            self.query_one("#ex-outdir", Input).focus()
            return
        warning = self.caption_warning(options.caption)
        if warning and not self._confirmed_captions:
            self._confirmed_captions = True
            self._error(f"{warning}. Fix the Captions field, or press Export again to export without captions.")
            self.query_one("#ex-caption", Input).focus()
            return
        if not options.trigger and not self._confirmed_no_trigger:
            self._confirmed_no_trigger = True
            self._error("No trigger word set. Type one, or press Export again to export without a trigger word.")
            self.query_one("#ex-trigger", Input).focus()
            return
        self._error(None)
        self.running = True
        self.token = CancelToken()
        self.query_one("#start", Button).disabled = True
        self.query_one(ProgressPanel).start(f"Exporting as {options.format} to {outdir}")
        self._run_export(outdir, options)

    @work(thread=True, exclusive=True, group="export", exit_on_error=False, description="Exporting")
    def _run_export(self, outdir: str, options) -> None:
        from sushitui.export import export_dataset

        def progress(event: ProgressEvent) -> None:
            self.app.call_from_thread(self.query_one(ProgressPanel).update_event, event)

        try:
            report = export_dataset(self.dataset_id, outdir, options, progress=progress, cancel=self.token)
        except UserError as exc:  # ExportError, DatasetNotFound, ...: the message says what to do
            self.app.call_from_thread(self._on_failed, str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - the dialog must leave its running state; the bug is logged
            log.exception("export failed")
            self.app.call_from_thread(self._on_failed, f"export failed: {type(exc).__name__}: {exc}")
            return
        self.app.call_from_thread(self._on_done, report)

    def _on_failed(self, message: str) -> None:
        self.running = False
        self.query_one(ProgressPanel).finish()
        self.query_one("#start", Button).disabled = False
        self._error(message)

    def _on_done(self, report) -> None:
        self.running = False
        self.query_one(ProgressPanel).finish()
        start = self.query_one("#start", Button)
        start.disabled = False
        if report.cancelled:
            self.query_one("#export-result", Static).update(Text("Export cancelled; nothing was left in the folder."))
            return
        self.report = report
        start.label = "Close"
        where = report.zip_path or report.outdir
        lines = [
            f"Exported {report.items_exported:,} of {report.items_total:,} items as {report.format} to {where}",
            f"{report.files_written:,} files in {report.elapsed:.1f}s ({report.files_per_s:,.0f} files/s)"
            + (f"; configs: {', '.join(report.config_files)}" if report.config_files else ""),
        ]
        if report.renamed:
            lines.append(f"{len(report.renamed):,} names made unique")
        if report.shortened:
            first = report.shortened[0]
            lines.append(
                f"{len(report.shortened):,} long names shortened (a hash of the full name at the end; captions, masks "
                f"and control images keep the pairing), e.g. {first.source} -> {first.exported}"
            )
        if report.problems:
            lines.append(
                f"{len(report.problems):,} problems, e.g. {report.problems[0].path}: {report.problems[0].reason}"
            )
        self.query_one("#export-result", Static).update(Text(for_terminal("\n".join(lines), multiline=True)))
        self.app.notify(lines[0], title="Export finished", timeout=6)

    def action_cancel(self) -> None:
        if self.running:
            self.token.cancel()
            self.query_one(ProgressPanel).set_status("cancelling…")
            return
        self.dismiss(self.report)
