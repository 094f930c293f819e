"""Auto-tag dialog (AT-3, AT-4): model, thresholds, categories, mode, device; then the
run itself in a thread worker with a progress bar, cancel, and the provider in use.

The provider line is always visible while and after the run: a CPU fallback of
``--device auto`` is shown in the warning colour, never silently.
``dismiss`` returns the ``AutotagReport`` (None when closed without running).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, Select, Static
from textual.worker import get_current_worker

from sushitui.errors import UserError
from sushitui.progress import CancelToken, ProgressEvent
from sushitui.sanitize import for_terminal
from sushitui.tui.widgets.progress import ProgressPanel

if TYPE_CHECKING:
    from sushitui.tagger.autotag import AutotagOptions

log = logging.getLogger(__name__)

CATEGORY_CHOICES = ("general", "character", "quality", "rating", "copyright", "artist", "meta", "model")
CUSTOM = "__custom__"


def parse_threshold(text: str, *, allow_blank: bool) -> float | None:
    """A threshold from a field; raises ValueError with a message for the user."""
    text = text.strip()
    if not text:
        if allow_blank:
            return None
        raise ValueError("enter a number between 0 and 1")
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise ValueError("must be between 0 and 1")
    return value


class AutotagDialog(ModalScreen):
    """Auto-tag the current item, a selection, a query result or the whole dataset."""

    DEFAULT_CSS = """
    AutotagDialog #autotag-form { height: auto; max-height: 12; }
    AutotagDialog .autotag-row { height: auto; }
    AutotagDialog .autotag-row > Vertical { width: 1fr; height: auto; margin-right: 1; }
    AutotagDialog .autotag-row > Input { width: 1fr; margin-right: 1; }
    AutotagDialog .autotag-row > Checkbox { width: auto; margin-right: 2; }
    AutotagDialog .autotag-cats { height: auto; layout: grid; grid-size: 4; grid-gutter: 0 1; grid-rows: 1; }
    AutotagDialog .autotag-cats Checkbox { width: 100%; }
    AutotagDialog #autotag-provider { height: auto; }
    AutotagDialog #model-status { height: auto; max-height: 3; color: $text-muted; }
    AutotagDialog .dialog-buttons { margin-top: 0; }
    AutotagDialog #autotag-provider.fallback { color: $warning; }
    AutotagDialog #autotag-provider.gpu { color: $success; }
    AutotagDialog #autotag-result { height: auto; max-height: 8; }
    AutotagDialog #custom-model { height: auto; }
    """

    BINDINGS = [
        Binding(
            "escape",
            "cancel",
            "Cancel / close",
            tooltip="Stop a running auto-tag (what is done is kept), or close",
            id="dialog.cancel",
        ),
        Binding("ctrl+s", "start", "Start", tooltip="Start auto-tagging with these settings", id="autotag.start"),
        Binding(
            "ctrl+d",
            "start_job",
            "Run in background",
            id="autotag.background",
            tooltip="Run as a background job: it goes on when you quit; the jobs screen (ctrl+b) follows it",
        ),
    ]

    def __init__(self, dataset_id: int, item_ids: list[int] | None = None, query: str | None = None) -> None:
        super().__init__()
        self.dataset_id = dataset_id
        self.item_ids = list(item_ids) if item_ids else None
        self.query_text = query or None
        self.token = CancelToken()
        self.running = False
        self.report = None
        self.models: list[tuple[str, str]] = []
        self.cached: dict[str, bool] = {}

    # --- layout -------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="autotag-dialog"):
            yield Static(Text("Auto-tag", style="bold"), id="autotag-title", classes="dialog-title")
            with VerticalScroll(id="autotag-form"):
                with Horizontal(classes="autotag-row"):
                    with Vertical():
                        yield Label("Model")
                        yield Select(
                            [("cl-1.02 (default)", "cl-1.02")],
                            value="cl-1.02",
                            allow_blank=False,
                            id="at-model",
                            compact=True,
                        )
                    with Vertical():
                        yield Label("Device")
                        yield Select(
                            [("auto (CUDA, else CPU)", "auto"), ("cuda", "cuda"), ("cpu", "cpu")],
                            value="auto",
                            allow_blank=False,
                            id="at-device",
                            compact=True,
                        )
                yield Static("", id="model-status")
                with Vertical(id="custom-model"):
                    yield Label("Model file or folder / label file")
                    with Horizontal(classes="autotag-row"):
                        yield Input(placeholder="/path/model.onnx or folder", id="at-model-path", compact=True)
                        yield Input(placeholder="selected_tags.csv or tag_mapping.json", id="at-labels", compact=True)
                with Horizontal(classes="autotag-row"):
                    with Vertical():
                        yield Label("Threshold")
                        yield Input("0.35", id="at-threshold", compact=True)
                    with Vertical():
                        yield Label("Character threshold")
                        yield Input("", placeholder="model default", id="at-char-threshold", compact=True)
                    with Vertical():
                        yield Label("Mode")
                        yield Select(
                            [("replace", "replace"), ("add", "add"), ("skip tagged", "skip")],
                            value="replace",
                            allow_blank=False,
                            id="at-mode",
                            compact=True,
                        )
                    with Vertical():
                        yield Label("Subtype")
                        yield Input("main", id="at-subtype", compact=True)
                yield Label("Categories")
                with Vertical(classes="autotag-cats"):
                    for cat in CATEGORY_CHOICES:
                        yield Checkbox(
                            cat, value=cat in ("general", "character", "quality"), id=f"at-cat-{cat}", compact=True
                        )
                with Horizontal(classes="autotag-row"):
                    yield Checkbox("Dictionary mapping", value=True, id="at-dict", compact=True)
                    yield Checkbox("Dry run", value=False, id="at-dry", compact=True)
            error = Static("", id="autotag-error", classes="field-error")
            error.display = False
            yield error
            yield Static("", id="autotag-provider")
            yield ProgressPanel(id="autotag-progress")
            yield Static("", id="autotag-result")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Start (ctrl+s)", id="start", variant="primary", compact=True)
                yield Button("Cancel (Esc)", id="cancel", compact=True)

    def on_mount(self) -> None:
        self.query_one("#custom-model").display = False
        self.query_one("#at-model", Select).focus()
        self._load_context()

    @work(thread=True, exclusive=True, group="autotag-context", exit_on_error=False)
    def _load_context(self) -> None:
        """Dataset name, how many items, which models are in the local cache (off the UI thread)."""
        from sushitui.dataset.items import count_items
        from sushitui.dataset.registry import DatasetNotFound, get_dataset
        from sushitui.tagger.hub import locate
        from sushitui.tagger.registry import BUILTIN, DEFAULT_MODEL

        try:
            name = get_dataset(self.dataset_id).name
        except DatasetNotFound:
            name = f"dataset {self.dataset_id}"
        if self.item_ids is not None:
            scope = f"{len(self.item_ids)} item" + ("s" if len(self.item_ids) != 1 else "")
        elif self.query_text:
            scope = f"items matching {self.query_text!r}"
            try:
                # the core's count (the fast path for plain tag queries), not a query built here
                scope = f"{count_items(self.dataset_id, self.query_text):,} items matching {self.query_text!r}"
            except UserError:  # a bad query: the run itself will say so
                pass
        else:
            scope = f"all {count_items(self.dataset_id):,} items"
        cached: dict[str, bool] = {}
        for key, spec in BUILTIN.items():
            try:
                cached[key] = locate(spec) is not None
            except Exception:  # noqa: BLE001 - a broken cache entry (huggingface_hub raises many types) is "not cached"
                log.warning("looking up the cached files of %s failed", key, exc_info=True)
                cached[key] = False
        options = [(key + (" (default)" if key == DEFAULT_MODEL else ""), key) for key in BUILTIN]
        options.append(("custom file…", CUSTOM))
        if not get_current_worker().is_cancelled:
            self.app.call_from_thread(self._show_context, name, scope, options, cached)

    def _show_context(self, name: str, scope: str, options: list[tuple[str, str]], cached: dict[str, bool]) -> None:
        self.query_one("#autotag-title", Static).update(Text(for_terminal(f"Auto-tag {name}: {scope}"), style="bold"))
        self.models = options
        self.cached = cached
        select = self.query_one("#at-model", Select)
        current = select.value
        with self.prevent(Select.Changed):
            select.set_options(options)
            select.value = current if any(v == current for _, v in options) else options[0][1]
        self._show_model_status(select.value)

    def _show_model_status(self, key) -> None:
        from sushitui.tagger.hub import is_offline

        if key == CUSTOM:
            text = "your own ONNX model: give the model file (or folder) and its label file"
        elif self.cached.get(key):
            text = "✓ in the local Hugging Face cache"
        elif is_offline():
            text = (
                f"not in the cache and HF_HUB_OFFLINE is set: run `sushitui models download {key}` where there "
                f"is network, or choose “custom file…” above"
            )
        else:
            text = (
                f"not in the cache: downloaded when the run starts (needs network). Offline? Run "
                f"`sushitui models download {key}` where there is network, or choose “custom file…” above"
            )
        self.query_one("#model-status", Static).update(Text(text))

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "at-model":
            self.query_one("#custom-model").display = event.value == CUSTOM
            self._show_model_status(event.value)

    # --- settings -----------------------------------------------------------------------
    def _show_error(self, message: str | None) -> None:
        err = self.query_one("#autotag-error", Static)
        err.display = bool(message)
        err.update(Text(for_terminal(message or ""), style="bold"))

    def build_options(self):
        """AutotagOptions from the form; raises ValueError with a message for the user."""
        from sushitui.tagger.autotag import AutotagOptions

        try:
            threshold = parse_threshold(self.query_one("#at-threshold", Input).value, allow_blank=False)
        except ValueError as exc:
            raise ValueError(f"Threshold: {exc}") from None
        try:
            char = parse_threshold(self.query_one("#at-char-threshold", Input).value, allow_blank=True)
        except ValueError as exc:
            raise ValueError(f"Character threshold: {exc}") from None
        cats = tuple(c for c in CATEGORY_CHOICES if self.query_one(f"#at-cat-{c}", Checkbox).value)
        if not cats:
            raise ValueError("Choose at least one category")
        subtype = self.query_one("#at-subtype", Input).value.strip() or "main"
        if any(not (ch.isalnum() or ch in "-_") for ch in subtype):
            raise ValueError("Subtype: letters, digits, - and _ only")
        model = self.query_one("#at-model", Select).value
        model_path = labels = None
        if model == CUSTOM:
            model_path = self.query_one("#at-model-path", Input).value.strip()
            labels = self.query_one("#at-labels", Input).value.strip() or None
            if not model_path:
                raise ValueError("Enter the model file (or a folder with model.onnx and its label file)")
            model = None
        return AutotagOptions(
            model=model,
            model_path=model_path,
            labels_path=labels,
            threshold=threshold,
            character_threshold=char,
            categories=cats,
            mode=self.query_one("#at-mode", Select).value,
            subtype=subtype,
            device=self.query_one("#at-device", Select).value,
            dictionary_mapping=self.query_one("#at-dict", Checkbox).value,
            dry_run=self.query_one("#at-dry", Checkbox).value,
        )

    # --- running ------------------------------------------------------------------------
    def _claim_start(self) -> AutotagOptions | None:
        """The form's options, with the dialog marked running; None when a run is going
        already or the form is invalid (its error is shown)."""
        if self.running:
            return None
        try:
            opts = self.build_options()
        except ValueError as exc:
            self._show_error(str(exc))
            return None
        self._show_error(None)
        self.running = True
        return opts

    def action_start(self) -> None:
        opts = self._claim_start()
        if opts is None:
            return
        self.token = CancelToken()
        self.query_one("#autotag-form").disabled = True
        self.query_one("#start", Button).disabled = True
        self.query_one("#cancel", Button).label = "Stop (Esc)"
        self.query_one("#autotag-result", Static).update("")
        self._set_provider("Provider: loading the model…", "")
        self.query_one(ProgressPanel).start("Auto-tagging")
        self._run(opts)

    def action_start_job(self) -> None:
        """The same run as a job (``sushitui autotag ... --detach``): it outlives the app."""
        opts = self._claim_start()
        if opts is None:
            return
        self._start_job(opts)

    @work(thread=True, exclusive=True, group="autotag", exit_on_error=False, description="Starting the auto-tag job")
    def _start_job(self, opts) -> None:
        from sushitui.dataset.registry import get_dataset
        from sushitui.jobs import submit_autotag

        app = self.app
        try:
            job = submit_autotag(app.db_path, get_dataset(self.dataset_id).name, opts, self.query_text, self.item_ids)
        except UserError as exc:
            self.running = False
            app.call_from_thread(self._show_error, str(exc))
            return
        app.call_from_thread(
            app.notify,
            for_terminal(
                f"Auto-tag job {job.id} started: it goes on if you quit; the jobs screen (ctrl+b) shows its progress"
            ),
            markup=False,
        )
        app.call_from_thread(self.dismiss, None)

    @work(thread=True, exclusive=True, group="autotag", exit_on_error=False, description="Auto-tagging")
    def _run(self, opts) -> None:
        from sushitui.tagger.autotag import autotag

        app = self.app  # the dialog may be closed (second Esc) before the run ends

        def progress(event: ProgressEvent) -> None:
            app.call_from_thread(self._on_progress, event)

        try:
            report = autotag(
                self.dataset_id,
                query=self.query_text,
                item_ids=self.item_ids,
                options=opts,
                progress=progress,
                cancel=self.token,
            )
        except UserError as exc:  # AutotagError, DatasetNotFound, ...: the message says what to do
            app.call_from_thread(self._on_failed, str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - the dialog must leave its running state (NF-5); the bug is logged
            log.exception("auto-tagging failed")
            app.call_from_thread(self._on_failed, f"auto-tagging failed: {type(exc).__name__}: {exc}")
            return
        app.call_from_thread(self._on_done, report)

    def _set_provider(self, text: str, kind: str) -> None:
        widget = self.query_one("#autotag-provider", Static)
        widget.set_class(kind == "fallback", "fallback")
        widget.set_class(kind == "gpu", "gpu")
        widget.update(Text(for_terminal(text)))

    def _on_progress(self, event: ProgressEvent) -> None:
        if not self.is_attached:  # closed with a second Esc; the run ends in the background
            return
        self.query_one(ProgressPanel).update_event(event)
        if event.phase == "downloading":
            self._set_provider(event.message + " (this can take minutes)…", "")
        elif event.message:
            on_gpu = event.message.startswith("CUDAExecutionProvider")
            kind = "gpu" if on_gpu else ("" if "(CPU requested)" in event.message else "fallback")
            self._set_provider(f"Provider: {event.message}", kind)

    def _finish_run(self) -> None:
        self.running = False
        self.query_one(ProgressPanel).finish()
        self.query_one("#autotag-form").disabled = False
        self.query_one("#start", Button).disabled = False
        self.query_one("#cancel", Button).label = "Close (Esc)"

    def _on_failed(self, message: str) -> None:
        if not self.is_attached:
            self.app.notify(f"Auto-tag stopped: {for_terminal(message)}", severity="warning", timeout=10, markup=False)
            return
        self._finish_run()
        self._set_provider("", "")
        if "--model-path" in message:
            # The core's advice names CLI flags; say what that is in this dialog.
            message += "\nHere: choose “custom file…” as Model and give the model file and its label file."
        self._show_error(message)

    def _on_done(self, report) -> None:
        if not self.is_attached:
            self.app.notify(
                f"Auto-tag ended in the background: tagged {report.tagged}, failed {len(report.failed)}",
                timeout=8,
                markup=False,
            )
            return
        self._finish_run()
        self.report = report
        prov = report.provider
        kind = (
            "gpu"
            if prov and prov["active"] == "CUDAExecutionProvider"
            else ("fallback" if prov and prov["requested"] != "cpu" else "")
        )
        self._set_provider(f"Provider: {report.provider_line}", kind)
        verb = "would change" if report.dry_run else "tagged"
        lines = [
            ("Cancelled — run again to resume. " if report.cancelled else "")
            + f"{verb} {report.tagged}, unchanged {report.unchanged}, from cache {report.cached}, "
            f"inferred {report.inferred}, skipped (had tags) {report.skipped_existing}, failed {len(report.failed)} "
            f"in {report.elapsed_s:.1f} s",
        ]
        lines += [f"note: {n}" for n in report.notes[:2]]
        lines += [f"{p.path}: {p.reason}" for p in report.failed[:4]]
        if len(report.failed) > 4:
            lines.append(f"… and {len(report.failed) - 4} more (sushitui autotag --json lists all)")
        self.query_one("#autotag-result", Static).update(Text(for_terminal("\n".join(lines), multiline=True)))
        self.notify(lines[0], severity="warning" if report.failed or report.cancelled else "information", timeout=6)

    def action_cancel(self) -> None:
        if self.running:
            if self.token.cancelled:
                # A model download cannot be interrupted (30 s without network): a second
                # Esc gives the user the app back; the run stops on its own.
                self.dismiss(self.report)
                return
            self.token.cancel()
            self.query_one(ProgressPanel).set_status("stopping after the current batch… (Esc again closes this dialog)")
            return
        self.dismiss(self.report)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "start":
            self.action_start()
        else:
            self.action_cancel()
