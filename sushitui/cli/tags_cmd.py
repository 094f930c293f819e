"""CLI commands: tags (being written)."""


def register(subparsers) -> None:
    return None
