"""Where sushitui keeps its data and settings: the database path, the log file, the user's
keymap file, the shipped taglist folder."""

from __future__ import annotations

import os
from pathlib import Path

APP_DIR_NAME = "sushitui"
DB_FILE_NAME = "sushitui.db"
DB_ENV_VAR = "SUSHITUI_DB"
KEYMAP_FILE_NAME = "keymap.toml"
LOG_FILE_NAME = "sushitui.log"


def data_dir() -> Path:
    """``$XDG_DATA_HOME/sushitui`` (``~/.local/share/sushitui`` when unset)."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(Path.home(), ".local", "share")
    return Path(base) / APP_DIR_NAME


def config_dir() -> Path:
    """``$XDG_CONFIG_HOME/sushitui`` (``~/.config/sushitui`` when unset)."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(Path.home(), ".config")
    return Path(base) / APP_DIR_NAME


def keymap_path() -> Path:
    """The user's key remapping file (``binding-id = "keys"`` lines); it may not exist."""
    return config_dir() / KEYMAP_FILE_NAME


def log_path() -> Path:
    """The log file: errors that are not the user's to fix, with their tracebacks, and
    whatever ``--log-level`` lets through (``$XDG_DATA_HOME/sushitui/sushitui.log``)."""
    return data_dir() / LOG_FILE_NAME


def default_db_path() -> Path:
    return data_dir() / DB_FILE_NAME


def resolve_db_path(cli_value: str | os.PathLike | None = None) -> Path:
    """``--db`` wins over ``SUSHITUI_DB``, which wins over the XDG default."""
    if cli_value:
        return Path(cli_value).expanduser()
    env = os.environ.get(DB_ENV_VAR)
    if env:
        return Path(env).expanduser()
    return default_db_path()


def taglist_dir() -> Path:
    """The shipped ``taglist/`` folder (tag-group definitions and the tag dictionary).

    ``sushitui/_taglist`` links to the repository's ``taglist/``: in a checkout or an
    editable install it resolves there, and a wheel carries the files under that name.
    """
    return Path(__file__).resolve().parent / "_taglist"
