"""Dataset health checks (issue 18): trainer buckets, token lengths, duplicates, image and
caption problems. Core layer beside tagger/export/training: imports dataset, tags and store,
never Textual, never prints.

- ``buckets``: each trainer's bucket assignment, reimplemented from its source.
- ``tokens``: CLIP / T5 token counts from the vocab files in taglist/tokenizers.
- ``hashing``: pHash and image facts (stored by sha256), near-duplicate search.
- ``findings``: finding codes, severities, fixes; image and caption checks.
- ``report``: ``run_check`` puts it together and stores the findings (``check:CODE``).
- ``histogram``: the bucket histogram as terminal lines.

Importing this package gives the query language its ``tokens:`` / ``t5tokens:`` counters
(the tags layer cannot import upwards); numpy and the tokenizers load only when used.
"""

from sushitui.check import tokens as _tokens
from sushitui.tags.query import register_counter as _register_counter

_register_counter("tokens", _tokens.cached_clip_count, prepare=_tokens.prepare_counters)
_register_counter("t5tokens", _tokens.cached_t5_count, prepare=_tokens.prepare_counters)

__all__ = ["CheckOptions", "CheckReport", "ItemReport", "run_check"]


def __getattr__(name: str):
    if name in __all__:
        from sushitui.check import report

        return getattr(report, name)
    raise AttributeError(name)
