"""sushitui: prepare image datasets for Stable Diffusion fine-tuning from the terminal.

The package is split into a core (store, dataset, tags, tagger, export, training) that
never imports Textual and never prints, and two thin faces over it: ``sushitui.cli`` and
``sushitui.tui``.
"""

__version__ = "0.1.0"
