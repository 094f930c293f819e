"""Token counts with the real tokenizers, offline, from taglist/tokenizers.

CLIP reference counts: open_clip_torch 3.3.0's own SimpleTokenizer (open_clip/tokenizer.py,
the pure-Python reference with ftfy), ``len(tokenizer.encode(text))`` (no BOS/EOS), run
once on these captions. T5 counts: the google/t5-v1_1-xxl tokenizer.json with its
post-processor (``</s>`` counted), as Flux's T5 encoder sees them.
"""

from __future__ import annotations

import pytest

from sushitui.check import tokens as T

CASES = [
    # text, open_clip SimpleTokenizer count, T5 count (with </s>)
    ("a photo of a cat", 5, 8),
    ("1girl, solo, long hair, looking at viewer, smile, open mouth, bangs, blue eyes, blonde hair, shirt", 26, 29),
    ("masterpiece, best quality, (ultra-detailed:1.2), 8k wallpaper", 17, 19),
    ("kaga (kancolle), ^_^, :), (o)_(o)", 18, 24),
    ("Ünïcödé naïve café — “quotes”", 15, 21),  # ftfy straightens the quotes first
    ("日本語のキャプション、猫耳", 21, 3),
    ("don't won't it's we'll", 8, 13),
    ("x" * 300, 75, 152),
    ("a  b\n\tc", 3, 7),
    ("emoji 🐱🐶 test", 4, 8),
    ("1234567890 3.14", 14, 8),
]


@pytest.mark.parametrize("text, clip, t5", CASES, ids=[c[0][:20] for c in CASES])
def test_counts_match_the_reference_tokenizers(text, clip, t5):
    assert T.clip_count(text) == clip
    assert T.t5_count(text) == t5


def test_batch_counts_equal_single_counts():
    texts = [c[0] for c in CASES]
    assert T.clip_counts(texts) == [c[1] for c in CASES]
    assert T.t5_counts(texts) == [c[2] for c in CASES]


def test_what_clip_cuts_off_after_75_tokens():
    caption = ", ".join(f"tag{i}" for i in range(60))  # "tag12" is 2 tokens, "," one
    assert T.clip_count(caption) > 75
    lost = T.clip_cut_at(caption)
    assert lost and caption.endswith(lost) and "tag59" in lost
    assert T.clip_cut_at("a photo of a cat") is None


def test_vocab_files_ship_with_their_sources_and_licences():
    folder = T.vocab_dir()
    names = {p.name for p in folder.iterdir()}
    assert {T.CLIP_FILE, T.T5_FILE, "SOURCES.md"} <= names
    assert any(n.startswith("LICENSE") and "open_clip" in n for n in names)
    assert any(n.startswith("LICENSE") and "Apache" in n for n in names)


def test_a_missing_vocab_file_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(T, "vocab_dir", lambda: tmp_path)
    T.t5_tokenizer.cache_clear()
    try:
        with pytest.raises(T.TokenizerUnavailable, match="t5_tokenizer.json.gz"):
            T.t5_count("x")
    finally:
        T.t5_tokenizer.cache_clear()


def test_counts_are_stored_so_a_second_check_tokenises_nothing(db, monkeypatch):
    texts = ["a photo of a cat", "1girl, solo, smile"]
    clip, t5 = T.stored_counts(texts)
    assert clip == [5, 6] and t5 == [8, T.t5_count(texts[1])]

    def no_tokenizer(_texts):
        raise AssertionError("tokenised again")

    monkeypatch.setattr(T, "clip_counts", no_tokenizer)
    monkeypatch.setattr(T, "t5_counts", no_tokenizer)
    assert T.stored_counts(texts) == (clip, t5)
