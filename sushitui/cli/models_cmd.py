"""CLI commands: models (being written)."""


def register(subparsers) -> None:
    return None
