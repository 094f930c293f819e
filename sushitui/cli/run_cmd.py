"""CLI commands: run (being written)."""


def register(subparsers) -> None:
    return None
