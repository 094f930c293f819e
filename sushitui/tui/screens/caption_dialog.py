"""Caption with a vision-language model (issue 16, "In the app"): the endpoint, the
template and its settings, the prompt as it would be sent for the highlighted item
(variables filled in), a sample run that writes nothing, and the run itself in a thread
worker with a progress bar; Esc stops it, keeping every answer received.

Nothing is written from here. The run asks the server with ``write=False``
(``sushitui.tagger.vlm.caption_items``); ``dismiss`` returns a ``CaptionReviewScreen``
holding the answers for the opener to push (None: closed, or nothing to review), where
each caption is written only when accepted.
"""

from __future__ import annotations

import os
from dataclasses import replace

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static
from textual.worker import get_current_worker

from sushitui.progress import CancelToken, ProgressEvent
from sushitui.sanitize import for_terminal
from sushitui.tui.widgets.progress import ProgressPanel

SAMPLE_SIZE = 8
TEMPLATE_FILE = "__file__"
MODE_CHOICES = (
    ("without a caption", "skip-existing"),
    ("all (replace)", "replace"),
    ("all (append)", "append"),
)
NO_ENDPOINT = (
    "No VLM endpoint is registered. In a shell, register your server (vLLM, SGLang, Ollama, llama-server, "
    "LM Studio…), then open this dialog again:\n"
    "  sushitui endpoint add local http://127.0.0.1:8000/v1 --model MODEL\n"
    "  sushitui endpoint test local"
)


def result_label(result) -> str:
    """How an answer is named: its image's dataset-relative path (base names repeat
    across folders: 00.jpg in each), else the item's name."""
    return (result.images[0] if result.images else result.image_path) or result.name


def in_dataset_order(results) -> list:
    """The report lists answers as they came; screens show them in the dataset's order."""
    return sorted(results, key=lambda r: (result_label(r), r.item_id))


def parse_temperature(text: str) -> float | None:
    """A temperature from the field (blank: the server's default); raises ValueError
    with a message for the user."""
    text = text.strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"Temperature: {text!r} is not a number") from None
    if not 0.0 <= value <= 2.0:
        raise ValueError("Temperature: must be between 0 and 2")
    return value


class CaptionDialog(ModalScreen):
    """Caption the selection, a search result or one item with a VLM, for review."""

    DEFAULT_CSS = """
    CaptionDialog #caption-dialog {
        width: 100; max-width: 100%; height: 100%; max-height: 40;
        background: $surface; border: thick $primary; padding: 0 1;
    }
    CaptionDialog #cap-form, CaptionDialog #cap-file-row { height: auto; }
    CaptionDialog .dialog-title { margin-bottom: 0; height: auto; }
    CaptionDialog .caption-row { height: auto; }
    CaptionDialog .caption-row > Vertical { width: 1fr; height: auto; margin-right: 1; }
    CaptionDialog #cap-endpoint-status { height: auto; max-height: 5; color: $text-muted; }
    CaptionDialog #cap-endpoint-status.warning { color: $warning; }
    CaptionDialog .caption-box { height: 1fr; min-height: 3; border: round $primary; padding: 0 1; }
    CaptionDialog #cap-results { border: round $success; }
    CaptionDialog ProgressPanel { height: auto; }
    CaptionDialog .dialog-buttons { margin-top: 0; }
    """

    BINDINGS = [
        Binding(
            "escape",
            "cancel",
            "Cancel / close",
            id="dialog.cancel",
            tooltip="Stop a running caption run (every answer received is kept), or close",
        ),
        Binding(
            "ctrl+s",
            "start",
            "Caption for review",
            id="caption.start",
            tooltip="Caption the items with these settings and review the answers (nothing is written until accepted)",
        ),
        Binding(
            "f2",
            "sample",
            "Sample",
            id="caption.sample",
            tooltip=f"Caption {SAMPLE_SIZE} items spread over the target and show the answers; writes nothing",
        ),
    ]

    def __init__(
        self,
        dataset_id: int,
        item_ids: list[int] | None = None,
        query: str | None = None,
        current_id: int | None = None,
    ) -> None:
        super().__init__()
        self.dataset_id = dataset_id
        self.item_ids = list(item_ids) if item_ids else None
        self.query_text = (query or "").strip() or None
        self.current_id = current_id if current_id is not None else (self.item_ids[0] if self.item_ids else None)
        self.token = CancelToken()
        self.running: str | None = None  # "sample" | "run" while a worker runs
        self.endpoints: list = []
        self.report = None
        self.results: list = []
        self.sample_report = None
        self.preview = None  # the PromptPreview shown
        self.dataset_root = ""

    # --- layout -------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        from sushitui.tagger.vlm.templates import BUILTIN, DEFAULT_TEMPLATE

        with Vertical(id="caption-dialog"):  # not .dialog: that one is narrow and as high as its content
            yield Static(Text("Caption with a VLM", style="bold"), id="cap-title", classes="dialog-title")
            with Vertical(id="cap-form"):
                with Horizontal(classes="caption-row"):
                    with Vertical():
                        yield Label("Endpoint")
                        yield Select([], prompt="(reading…)", id="cap-endpoint", compact=True)
                    with Vertical():
                        yield Label("Template")
                        yield Select(
                            [(name, name) for name in BUILTIN] + [("file…", TEMPLATE_FILE)],
                            value=DEFAULT_TEMPLATE,
                            allow_blank=False,
                            id="cap-template",
                            compact=True,
                        )
                    with Vertical():
                        yield Label("Items")
                        yield Select(
                            list(MODE_CHOICES), value="skip-existing", allow_blank=False, id="cap-mode", compact=True
                        )
                with Horizontal(classes="caption-row"):
                    with Vertical():
                        yield Label("Subtype (file suffix)")
                        yield Input("", placeholder="caption", id="cap-subtype", compact=True)
                    with Vertical():
                        yield Label("Temperature")
                        yield Input("", placeholder="server default", id="cap-temperature", compact=True)
                    with Vertical():
                        yield Label("Trigger word")
                        yield Input("", placeholder="for {trigger}", id="cap-trigger", compact=True)
                with Vertical(id="cap-file-row"):
                    yield Label("Template file (plain text: the prompt; or TOML with prompt, system, type)")
                    yield Input("", placeholder="/path/template.txt", id="cap-template-file", compact=True)
            yield Static("", id="cap-endpoint-status")
            with VerticalScroll(id="cap-preview", classes="caption-box"):
                yield Static("", id="cap-preview-text")
            with VerticalScroll(id="cap-results", classes="caption-box"):
                yield Static("", id="cap-results-text")
            error = Static("", id="cap-error", classes="field-error")
            error.display = False
            yield error
            yield ProgressPanel(id="cap-progress")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Review (ctrl+s)", id="start", variant="primary", compact=True)
                yield Button(f"Sample {SAMPLE_SIZE} (F2)", id="sample", compact=True)
                yield Button("Cancel (Esc)", id="cancel", compact=True)

    def on_mount(self) -> None:
        self.query_one("#cap-results").display = False
        self.query_one("#cap-file-row").display = False
        self.query_one("#cap-preview").border_title = "Prompt"
        self.query_one("#cap-results").border_title = "Sample: nothing written"
        self._set_buttons()
        self.query_one("#cap-template", Select).focus()
        self._load_context()
        self._refresh_preview()

    @work(thread=True, exclusive=True, group="caption-context", exit_on_error=False)
    def _load_context(self) -> None:
        """Dataset, how many items, the registered endpoints (off the UI thread)."""
        from sushitui.dataset.items import count_items
        from sushitui.dataset.registry import DatasetNotFound, get_dataset
        from sushitui.tagger.vlm import list_endpoints

        try:
            ds = get_dataset(self.dataset_id)
            name, root = ds.name, ds.root_path
        except DatasetNotFound:
            name, root = f"dataset {self.dataset_id}", ""
        if self.item_ids is not None:
            scope = f"{len(self.item_ids):,} item" + ("s" if len(self.item_ids) != 1 else "")
        elif self.query_text:
            scope = f"items matching {self.query_text!r}"
            try:
                scope = f"{count_items(self.dataset_id, self.query_text):,} {scope}"
            except Exception:  # noqa: BLE001 - the count is decoration; a bad query shows when run
                pass
        else:
            scope = f"all {count_items(self.dataset_id):,} items"
        endpoints = list_endpoints()
        if not get_current_worker().is_cancelled:
            self.app.call_from_thread(self._show_context, name, root, scope, endpoints)

    def _show_context(self, name: str, root: str, scope: str, endpoints: list) -> None:
        self.dataset_root = root
        self.query_one("#cap-title", Static).update(Text(for_terminal(f"Caption {name}: {scope}"), style="bold"))
        self.endpoints = endpoints
        select = self.query_one("#cap-endpoint", Select)
        if endpoints:
            select.set_options([(e.name, e.name) for e in endpoints])  # the model and URL: the line below
            select.value = endpoints[0].name
        else:
            select.set_options([])
            select.prompt = "(none registered)"
        self._show_endpoint_status()
        self._set_buttons()

    def _endpoint(self):
        value = self.query_one("#cap-endpoint", Select).value
        return next((e for e in self.endpoints if e.name == value), None)

    def _show_endpoint_status(self) -> None:
        from sushitui.tagger.vlm import privacy_notice

        status = self.query_one("#cap-endpoint-status", Static)
        ep = self._endpoint()
        warning = False
        if not self.endpoints:
            text, warning = NO_ENDPOINT, True
        elif ep is None:
            text = "choose an endpoint"
        else:
            lines = [f"{ep.base_url}  model: {ep.model or 'the first the server lists'}"]
            if ep.api_key_env and not ep.key_present:
                lines.append(
                    f"the key variable {ep.api_key_env} is not set in this environment: set it and restart "
                    "sushitui, or the server will refuse the requests"
                )
                warning = True
            if notice := privacy_notice(ep.base_url):
                lines.append(notice)
                warning = True
            text = "\n".join(lines)
        status.set_class(warning, "warning")
        status.update(Text(for_terminal(text, multiline=True)))

    def _set_buttons(self) -> None:
        ready = bool(self.endpoints) and self.running is None
        self.query_one("#start", Button).disabled = not ready
        self.query_one("#sample", Button).disabled = not ready
        self.query_one("#cap-form").disabled = self.running is not None
        self.query_one("#cancel", Button).label = "Stop (Esc)" if self.running else "Close (Esc)"

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "cap-endpoint":
            self._show_endpoint_status()
        elif event.select.id in ("cap-template", "cap-mode"):
            self.query_one("#cap-file-row").display = event.value == TEMPLATE_FILE
            self._refresh_preview()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id in ("cap-trigger", "cap-subtype", "cap-template-file"):
            self._refresh_preview()

    # --- settings -----------------------------------------------------------------------
    def _show_error(self, message: str | None) -> None:
        err = self.query_one("#cap-error", Static)
        err.display = bool(message)
        err.update(Text(for_terminal(message or "", multiline=True), style="bold"))

    def build_options(self):
        """CaptionOptions from the form (never writing); raises ValueError with a
        message for the user."""
        from sushitui.tagger.vlm import CaptionOptions

        temperature = parse_temperature(self.query_one("#cap-temperature", Input).value)
        subtype = self.query_one("#cap-subtype", Input).value.strip() or None
        if subtype and any(not (ch.isalnum() or ch in "-_") for ch in subtype):
            raise ValueError("Subtype: letters, digits, - and _ only")
        endpoint = self.query_one("#cap-endpoint", Select).value
        template = str(self.query_one("#cap-template", Select).value)
        if template == TEMPLATE_FILE:
            template = os.path.expanduser(self.query_one("#cap-template-file", Input).value.strip())
            if not template:
                raise ValueError("Template file: enter the path of a template file, or choose a built-in template")
        return CaptionOptions(
            endpoint=endpoint if isinstance(endpoint, str) else None,
            template=template,
            subtype=subtype,
            mode=str(self.query_one("#cap-mode", Select).value),
            temperature=temperature,
            trigger=self.query_one("#cap-trigger", Input).value.strip() or None,
            write=False,
        )

    # --- the prompt preview ---------------------------------------------------------------
    def _refresh_preview(self) -> None:
        try:
            opts = self.build_options()
        except ValueError as exc:
            self._show_preview(None, str(exc))
            return
        if self.current_id is None:
            self._show_preview(None, "no item under the cursor: the prompt is shown for one item")
            return
        self._preview_worker(self.current_id, opts)

    @work(thread=True, exclusive=True, group="caption-preview", exit_on_error=False)
    def _preview_worker(self, item_id: int, opts) -> None:
        from sushitui.tagger.vlm import VlmError, preview_prompt

        try:
            preview, problem = preview_prompt(item_id, opts), None
        except VlmError as exc:
            preview, problem = None, str(exc)
        except Exception as exc:  # noqa: BLE001 - a preview never takes the dialog down
            preview, problem = None, f"{type(exc).__name__}: {exc}"
        if not get_current_worker().is_cancelled:
            self.app.call_from_thread(self._show_preview, preview, problem)

    def _show_preview(self, preview, problem: str | None) -> None:
        if not self.is_attached:
            return
        self.preview = preview
        text = Text()
        if preview is None:
            text.append(for_terminal(problem or ""), style="bold red")
        else:
            self.query_one("#cap-preview").border_title = for_terminal(
                f"Prompt for {', '.join(preview.images) or 'this item'} → {preview.ctype}/{preview.subtype}"
            )
            if preview.system:
                text.append("system: ", style="bold")
                text.append(for_terminal(preview.system, multiline=True) + "\n")
            text.append("user: ", style="bold")
            text.append(for_terminal(preview.prompt, multiline=True))
            if preview.problem:
                text.append("\n" + for_terminal(preview.problem), style="bold red")
        self.query_one("#cap-preview-text", Static).update(text)

    # --- running ------------------------------------------------------------------------
    def _begin(self, kind: str):
        if self.running is not None or not self.endpoints:
            return None
        try:
            opts = self.build_options()
        except ValueError as exc:
            self._show_error(str(exc))
            return None
        self._show_error(None)
        self.running = kind
        self.token = CancelToken()
        self._set_buttons()
        title = (
            f"Sampling up to {SAMPLE_SIZE} items (nothing is written)" if kind == "sample" else "Captioning for review"
        )
        self.query_one(ProgressPanel).start(title + " — Esc stops, keeping the answers received")
        return opts

    def action_sample(self) -> None:
        opts = self._begin("sample")
        if opts is not None:
            self._run(opts, sample=True)

    def action_start(self) -> None:
        opts = self._begin("run")
        if opts is not None:
            self.results = []
            self._run(opts, sample=False)

    @work(thread=True, exclusive=True, group="caption-run", exit_on_error=False, description="Captioning")
    def _run(self, opts, sample: bool) -> None:
        from sushitui.tagger import vlm

        app = self.app  # the dialog may be closed (second Esc) before the run ends
        target = vlm.CaptionTarget(query=self.query_text, item_ids=self.item_ids)

        def progress(event: ProgressEvent) -> None:
            app.call_from_thread(self._on_progress, event)

        try:
            if sample:
                report = vlm.sample(self.dataset_id, target, opts, n=SAMPLE_SIZE, progress=progress, cancel=self.token)
            else:
                report = vlm.caption_items(self.dataset_id, target, opts, progress=progress, cancel=self.token)
        except vlm.VlmError as exc:
            app.call_from_thread(self._on_failed, str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - never crash the app
            app.call_from_thread(self._on_failed, f"captioning failed: {type(exc).__name__}: {exc}")
            return
        app.call_from_thread(self._on_done, report, opts, sample)

    def _on_progress(self, event: ProgressEvent) -> None:
        if self.is_attached:
            self.query_one(ProgressPanel).update_event(event)

    def _finish_run(self) -> None:
        self.running = None
        self.query_one(ProgressPanel).finish()
        self._set_buttons()

    def _on_failed(self, message: str) -> None:
        if not self.is_attached:
            self.app.notify(
                f"Captioning stopped: {for_terminal(message)}", severity="warning", timeout=10, markup=False
            )
            return
        self._finish_run()
        self._show_error(message)

    @staticmethod
    def summary(report) -> str:
        done = report.answered + report.flagged + report.failed
        line = (
            ("Stopped — " if report.cancelled else "")
            + f"{done} answered ({report.cached} from the cache, {report.requests} sent), "
            f"{report.flagged} flagged, {report.failed} failed"
        )
        if report.skipped_existing:
            line += f", {report.skipped_existing} skipped (have a caption)"
        return line + f" in {report.elapsed_s:.1f} s"

    def _on_done(self, report, opts, sample: bool) -> None:
        if not self.is_attached:
            # closed with a second Esc: the answers are cached, a new run sends them no more
            self.app.notify(
                f"Captioning ended in the background: {self.summary(report)} (cached, nothing written)",
                timeout=8,
                markup=False,
            )
            return
        self._finish_run()
        if sample:
            self.sample_report = report
            self._show_sample(report)
            return
        self.report = report
        reviewable = in_dataset_order(r for r in report.results if r.status in ("answered", "flagged", "failed"))
        if not reviewable:
            self._show_error(
                "Nothing to review: "
                + self.summary(report)
                + ("\nChoose “all (replace)” under Items to caption them again." if report.skipped_existing else "")
            )
            return
        from sushitui.tui.screens.caption_review import CaptionReviewScreen

        self.notify(
            self.summary(report),
            severity="warning" if report.cancelled or report.failed else "information",
            timeout=6,
            markup=False,
        )
        self.dismiss(
            CaptionReviewScreen(
                self.dataset_id,
                reviewable,
                opts,
                model=report.model,
                ctype=report.ctype,
                subtype=report.subtype,
                root=self.dataset_root,
            )
        )

    def _show_sample(self, report) -> None:
        box = self.query_one("#cap-results")
        box.display = True
        box.border_title = f"Sample of {len(report.results)}: nothing written"
        text = Text()
        text.append(for_terminal(self.summary(report)) + "\n", style="dim")
        for r in in_dataset_order(report.results):
            text.append(for_terminal(result_label(r)) + ": ", style="bold")
            if r.status in ("flagged", "failed"):
                text.append(for_terminal(f"⚠ {r.problem}") + " ", style="bold red")
            text.append(for_terminal(r.text or "", multiline=False) + "\n")
        for note in report.notes[:2]:
            text.append(f"note: {for_terminal(note)}\n", style="dim")
        if report.notice:
            text.append(for_terminal(report.notice) + "\n", style="yellow")
        self.query_one("#cap-results-text", Static).update(text)

    def action_cancel(self) -> None:
        if self.running:
            if self.token.cancelled:
                self.dismiss(None)  # a second Esc gives the app back; the run stops on its own
                return
            self.token.cancel()
            self.query_one(ProgressPanel).set_status("stopping… the answers received are kept (Esc again closes)")
            return
        self.dismiss(None)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "start":
            self.action_start()
        elif event.button.id == "sample":
            self.action_sample()
        else:
            self.action_cancel()


def with_temperature(options, temperature: float | None):
    """The options of a regenerate: another temperature, sent again (not from the cache)."""
    return replace(options, temperature=temperature, read_cache=False, mode="replace", write=False)
