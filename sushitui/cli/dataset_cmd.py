"""CLI commands: dataset (being written)."""


def register(subparsers) -> None:
    return None
