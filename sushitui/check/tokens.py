"""Caption token counts with the real tokenizers, offline.

- CLIP (SD 1.5 / SDXL / Flux's CLIP-L): the byte-level BPE of OpenAI CLIP, built in the
  ``tokenizers`` library from ``bpe_simple_vocab_16e6.txt.gz`` exactly as open_clip's
  ``SimpleTokenizer`` builds its vocabulary (byte symbols, byte symbols + ``</w>``, the first
  48,894 merges, the two special tokens) and with the pre-tokenising regex, NFC, whitespace
  collapsing and lower-casing that Hugging Face's CLIP converter uses. A CLIP text encoder sees
  77 tokens: BOS + 75 + EOS. sd-scripts' ``--max_token_length 150/225`` feeds 2/3 chunks of 75.
- T5 (Flux, SD3: T5-XXL): the Unigram ``tokenizer.json`` of google/t5-v1_1-xxl. Flux dev
  pads/truncates to 512 tokens including the closing ``</s>`` (schnell: 256).

Counts: ``clip`` is the tokens between BOS and EOS (compare with 75 / 225); ``t5`` is the
tokens including ``</s>`` (compare with 512). Both files live in ``taglist/tokenizers/``
(SOURCES.md there says where they come from and under which licence).
"""

from __future__ import annotations

import gzip
import threading
from functools import lru_cache
from pathlib import Path
from typing import Sequence

from sushitui.errors import UserError

CLIP_USABLE = 75  # 77 with BOS/EOS
CLIP_LONG = 225  # sd-scripts --max_token_length 225: three chunks of 75
T5_MAX = 512  # Flux dev max_sequence_length (including </s>)

_DIR_NAME = "tokenizers"
CLIP_FILE = "clip_bpe_simple_vocab_16e6.txt.gz"
T5_FILE = "t5_tokenizer.json.gz"

_lock = threading.Lock()


class TokenizerUnavailable(UserError, RuntimeError):
    """The ``tokenizers`` library or a vocab file is missing; the message says which."""


def vocab_dir() -> Path:
    # the installed package reaches taglist/ through the sushitui/_taglist link
    return Path(__file__).resolve().parent.parent / "_taglist" / _DIR_NAME


def _bytes_to_unicode() -> dict[int, str]:
    """CLIP's reversible byte -> printable character table (open_clip tokenizer.py)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(2**8):
        if b not in bs:
            bs.append(b)
            cs.append(2**8 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def _import_tokenizers():
    try:
        import tokenizers  # noqa: F401
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise TokenizerUnavailable("the 'tokenizers' package is not installed (pip install tokenizers)") from exc
    return tokenizers


@lru_cache(maxsize=1)
def clip_tokenizer():
    tk = _import_tokenizers()
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    path = vocab_dir() / CLIP_FILE
    try:
        lines = gzip.open(path, "rt", encoding="utf-8").read().split("\n")
    except OSError as exc:
        raise TokenizerUnavailable(f"{path}: cannot read the CLIP vocabulary ({exc}); reinstall sushitui") from exc
    merges = [tuple(line.split()) for line in lines[1 : 49152 - 256 - 2 + 1]]
    symbols = list(_bytes_to_unicode().values())
    vocab_list = (
        symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    )
    vocab = {t: i for i, t in enumerate(vocab_list)}
    tok = Tokenizer(
        models.BPE(vocab=vocab, merges=merges, continuing_subword_prefix="", end_of_word_suffix="</w>", fuse_unk=False)
    )
    tok.normalizer = normalizers.Sequence(
        [
            normalizers.NFC(),
            # open_clip and transformers' CLIPTokenizer run ftfy.fix_text first, which straightens
            # curly quotes (uncurl_quotes): “a” is 3 tokens there, not 5
            normalizers.Replace(Regex("[\u02bc\u2018-\u201b]"), "'"),
            normalizers.Replace(Regex("[\u201c-\u201f]"), '"'),
            normalizers.Replace(Regex(r"\s+"), " "),
            normalizers.Lowercase(),
        ]
    )
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(
                Regex(r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""), behavior="removed", invert=True
            ),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    del tk, processors  # no post-processor: counts are the tokens between BOS and EOS
    return tok


@lru_cache(maxsize=1)
def t5_tokenizer():
    _import_tokenizers()
    from tokenizers import Tokenizer

    path = vocab_dir() / T5_FILE
    try:
        data = gzip.open(path, "rb").read().decode("utf-8")
    except OSError as exc:
        raise TokenizerUnavailable(f"{path}: cannot read the T5 tokenizer ({exc}); reinstall sushitui") from exc
    return Tokenizer.from_str(data)


def clip_count(text: str) -> int:
    return len(clip_tokenizer().encode(text, add_special_tokens=False).ids)


def t5_count(text: str) -> int:
    return len(t5_tokenizer().encode(text).ids)


def clip_counts(texts: Sequence[str]) -> list[int]:
    """Counts for many captions at once (the Rust side runs them in parallel)."""
    if not texts:
        return []
    return [len(e.ids) for e in clip_tokenizer().encode_batch(list(texts), add_special_tokens=False)]


def t5_counts(texts: Sequence[str]) -> list[int]:
    if not texts:
        return []
    return [len(e.ids) for e in t5_tokenizer().encode_batch(list(texts))]


def clip_tokens(text: str) -> list[str]:
    """The CLIP tokens of a caption (for showing where 75 cuts it)."""
    return clip_tokenizer().encode(text, add_special_tokens=False).tokens


def clip_cut_at(text: str, limit: int = CLIP_USABLE) -> str | None:
    """The part of ``text`` a CLIP encoder never sees (None when it all fits)."""
    enc = clip_tokenizer().encode(text, add_special_tokens=False)
    if len(enc.ids) <= limit:
        return None
    start = enc.offsets[limit][0]
    return text[start:] if start < len(text) else None


# --- stored counts (caption_tokens) and the counters behind tokens: / t5tokens: ---------------

TOKENS_VERSION = 1  # part of every digest: a change of vocab or rules invalidates stored counts
_CACHE_MAX = 500_000
_by_text: dict[str, tuple[int, int | None]] = {}  # this process's counts by caption text
_stored: dict[str, tuple[int, int | None]] = {}  # digest -> (clip, t5) read from caption_tokens
_stored_mark: tuple | None = None


def digest(text: str) -> str:
    import hashlib

    return hashlib.blake2b(b"%d\0" % TOKENS_VERSION + text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def _remember(texts: Sequence[str], values: Sequence[tuple[int, int | None]]) -> None:
    with _lock:
        if len(_by_text) + len(texts) > _CACHE_MAX:
            _by_text.clear()
        _by_text.update(zip(texts, values))


def stored_counts(texts: Sequence[str], *, t5: bool = True, store: bool = True) -> tuple[list[int], list[int] | None]:
    """CLIP (and T5) counts of ``texts``: from ``caption_tokens`` where a text was counted
    before, else tokenised in one batch and stored. The database must be open."""
    from sushitui.store import current_database, write_transaction

    db = current_database()
    digests = [digest(t) for t in texts]
    known: dict[str, tuple[int, int | None]] = {}
    if len(digests) > 5000:  # one scan of the table beats a hundred IN lists
        wanted = set(digests)
        for d, c, t in db.execute_sql("SELECT digest, clip, t5 FROM caption_tokens").fetchall():
            if d in wanted:
                known[d] = (c, t)
        digest_chunks: range = range(0)
    else:
        digest_chunks = range(0, len(digests), 900)
    for a in digest_chunks:
        chunk = digests[a : a + 900]
        for d, c, t in db.execute_sql(
            f"SELECT digest, clip, t5 FROM caption_tokens WHERE digest IN ({','.join('?' * len(chunk))})", chunk
        ).fetchall():
            known[d] = (c, t)
    todo = [i for i, d in enumerate(digests) if d not in known or (t5 and known[d][1] is None)]
    if todo:
        new_texts = [texts[i] for i in todo]
        clip_new = clip_counts(new_texts)
        t5_new = t5_counts(new_texts) if t5 else [known.get(digests[i], (0, None))[1] for i in todo]
        rows = [(digests[i], c, t) for i, c, t in zip(todo, clip_new, t5_new)]
        for d, c, t in rows:
            known[d] = (c, t)
        if store:
            with write_transaction():
                db.connection().executemany(
                    'INSERT OR REPLACE INTO "caption_tokens" ("digest", "clip", "t5") VALUES (?, ?, ?)', rows
                )
    clip = [known[d][0] for d in digests]
    t5_list = [known[d][1] or 0 for d in digests] if t5 else None  # (all counted above)
    _remember(texts, [known[d] for d in digests])
    return clip, t5_list


def prepare_counters() -> None:
    """Load the stored counts for the SQL counters (called by the query compiler before a
    query runs: a function called from inside SQLite may not query the database)."""
    global _stored_mark
    from sushitui.store import current_database

    db = current_database()
    # rows are only added, or completed with their T5 count (a digest's CLIP count never
    # changes): the two counts see every change, on SQLite and PostgreSQL alike
    mark = (db.database, *db.execute_sql("SELECT COUNT(*), COUNT(t5) FROM caption_tokens").fetchone())
    if mark == _stored_mark:
        return
    rows = db.execute_sql("SELECT digest, clip, t5 FROM caption_tokens").fetchall()
    with _lock:
        _stored.clear()
        _stored.update((d, (c, t)) for d, c, t in rows)
        _stored_mark = mark


def _lookup(text: str) -> tuple[int, int | None] | None:
    hit = _by_text.get(text)
    if hit is not None:
        return hit
    hit = _stored.get(digest(text))
    if hit is not None:
        _remember([text], [hit])
    return hit


def cached_clip_count(text: str | None) -> int:
    """CLIP count for SQL (``tokens:``): stored or cached counts, else the tokenizer."""
    if text is None:
        return 0
    hit = _lookup(text)
    if hit is None:
        hit = (clip_count(text), None)
        _remember([text], [hit])
    return hit[0]


def cached_t5_count(text: str | None) -> int:
    if text is None:
        return 0
    hit = _lookup(text)
    t5 = hit[1] if hit is not None else None
    if t5 is None:
        t5 = t5_count(text)
        _remember([text], [(hit[0] if hit else clip_count(text), t5)])
    return t5
