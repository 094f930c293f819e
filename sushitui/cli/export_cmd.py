"""CLI commands: export (being written)."""


def register(subparsers) -> None:
    return None
