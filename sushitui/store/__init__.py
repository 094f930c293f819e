"""Persistence: Peewee models over SQLite, opened only by ``sushitui.store.db``."""

from sushitui.store.db import (
    LATEST_VERSION,
    SchemaTooNewError,
    StoreError,
    current_database,
    open_database,
    write_transaction,
)
from sushitui.store.models import (
    Alias,
    Caption,
    Dataset,
    DictionaryTag,
    Item,
    ItemStats,
    ItemTag,
    RunItemUsage,
    TaggerCache,
    TagGroup,
    TagGroupMember,
    TrainingRun,
    tuple_rows,
)

__all__ = [
    "LATEST_VERSION",
    "SchemaTooNewError",
    "StoreError",
    "current_database",
    "open_database",
    "write_transaction",
    "Alias",
    "Caption",
    "Dataset",
    "DictionaryTag",
    "Item",
    "ItemStats",
    "ItemTag",
    "RunItemUsage",
    "TagGroup",
    "TagGroupMember",
    "TaggerCache",
    "TrainingRun",
    "tuple_rows",
]
