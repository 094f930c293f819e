"""CLI commands: dict (being written)."""


def register(subparsers) -> None:
    return None
