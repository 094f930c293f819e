"""The one error model: problems the user can act on, and everything else.

``UserError`` is the base of every domain error (a bad query, an unknown dataset, a
caption file that changed on disk, a model that is not downloaded...): its message says
what happened and what to do, and it is shown as it is — ``sushitui: error: MESSAGE``
with exit code 1 on the command line, a notification in the app. Each face catches it in
one place (``sushitui.cli.main``, the app's worker error handler).

Any other exception is a bug or an environment failure: it is written with its
traceback to the log file (``sushitui.config.log_path()``) and the user is told where.

This module imports nothing from sushitui, so every layer can use it.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can act on; the message says what to do."""


def log_if_unexpected(logger, exc: BaseException, what: str) -> None:
    """For a broad ``except`` that shows the error to the user and goes on: a UserError
    needs nothing more (its message is the whole story); anything else is a bug, so its
    traceback goes to the log file."""
    if not isinstance(exc, UserError):
        logger.error("%s failed", what, exc_info=exc)
