"""What happens to a model's answer before it may become a caption.

Nothing is silently edited: an answer with a banned word, a refusal, an empty answer
or one cut off by the token limit is *flagged* (and not written); the only changes made
are the ones asked for: folding to one line, and the ``start_with`` text put in front
when the model did not begin with it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# Openings of an answer that declines instead of describing (English; models asked in
# English answer refusals in English). Checked at the start only: "I can't see" in the
# middle of a description is not a refusal.
_REFUSAL = re.compile(
    r"^\W*(?:i\s*(?:'|’)?\s*m\s+(?:sorry|unable|not able)|i\s+am\s+(?:sorry|unable|not able)|sorry\b|"
    r"i\s+(?:cannot|can\s*(?:'|’)?\s*t|can\s+not|won\s*(?:'|’)?\s*t|will\s+not|apologi[sz]e|must\s+decline|"
    r"do\s+not\s+feel\s+comfortable|don\s*(?:'|’)?\s*t\s+feel\s+comfortable)|as\s+an\s+ai\b|"
    r"unfortunately,?\s+i\s+(?:cannot|can\s*(?:'|’)?\s*t|am\s+unable))",
    re.IGNORECASE,
)

FLAG_EMPTY = "empty"
FLAG_TRUNCATED = "truncated"
FLAG_REFUSAL = "refusal"
FLAG_BANNED = "banned"


@dataclass
class Processed:
    text: str  # what would be written
    flags: list[str] = field(default_factory=list)  # empty: fine to write
    reason: str = ""  # one line for the user when flagged
    banned_found: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.flags


def fold_lines(text: str) -> str:
    """One line: every run of whitespace (newlines included) becomes one space; a
    markdown bullet or heading mark at a line start goes with its line break."""
    lines = [re.sub(r"^\s*(?:[-*•]|#+)\s+", "", ln) for ln in text.splitlines()]
    return " ".join(" ".join(lines).split())


def is_refusal(text: str) -> bool:
    return bool(_REFUSAL.match(text or ""))


def banned_words(text: str, banned: tuple[str, ...] | list[str]) -> list[str]:
    """The banned words/phrases the text contains (case-insensitive, whole words)."""
    found = []
    for word in banned:
        w = word.strip()
        if not w:
            continue
        pattern = r"(?<!\w)" + r"\s+".join(re.escape(p) for p in w.split()) + r"(?!\w)"
        if re.search(pattern, text, re.IGNORECASE):
            found.append(w)
    return found


def process(
    raw: str,
    finish_reason: str | None,
    *,
    refusal: str | None = None,
    start_with: str | None = None,
    banned: tuple[str, ...] | list[str] = (),
    fold: bool = True,
) -> Processed:
    text = (raw or "").strip()
    if fold:
        text = fold_lines(text)
    if refusal:
        return Processed(text or refusal, [FLAG_REFUSAL], f"the model refused: {_clip(refusal)}")
    if not text:
        return Processed("", [FLAG_EMPTY], "the model answered nothing")
    if is_refusal(text):
        return Processed(text, [FLAG_REFUSAL], f"the model refused: {_clip(text)}")
    flags: list[str] = []
    reasons: list[str] = []
    if finish_reason == "length":
        flags.append(FLAG_TRUNCATED)
        reasons.append("the answer was cut off at --max-tokens (raise it, or ask for a shorter caption)")
    start = (start_with or "").strip()
    if start and not text.lower().startswith(start.lower()):
        text = f"{start} {text}"
    found = banned_words(text, banned)
    if found:
        flags.append(FLAG_BANNED)
        reasons.append(f"contains banned word(s): {', '.join(found)}")
    return Processed(text, flags, "; ".join(reasons), found)


def _clip(text: str, n: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[:n] + "…"
