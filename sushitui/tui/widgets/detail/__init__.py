"""The panes of the item detail screen (IT-1..9), one widget each, talking to the screen
by messages: ``ImagePane`` (the item's images), ``TagsTab`` (tag captions, with undo),
``TextTab`` (one prose caption type), ``CaptionList`` (every caption of the item) and
``MetaPane`` (file facts, related images, EXIF/XMP). The screen owns loading, saving
(``sushitui.tui.edit_flow``) and navigation; a pane only shows and edits."""

from sushitui.tui.widgets.detail.caption_list import CaptionEditDialog, CaptionList, ExportCaptionDialog
from sushitui.tui.widgets.detail.image_pane import ImagePane
from sushitui.tui.widgets.detail.meta_pane import MetaPane, fmt_ts, human_size
from sushitui.tui.widgets.detail.tags_tab import TagsTab
from sushitui.tui.widgets.detail.text_tab import TAB_LABELS, SafeTextArea, TextTab

__all__ = [
    "CaptionEditDialog",
    "CaptionList",
    "ExportCaptionDialog",
    "ImagePane",
    "MetaPane",
    "SafeTextArea",
    "TAB_LABELS",
    "TagsTab",
    "TextTab",
    "fmt_ts",
    "human_size",
]
