"""The query language (Q-1..6), parsed into a small tree and compiled to parameterised SQL.

Grammar (``|`` binds tighter than ``,``; ``-`` tighter than both)::

    query   := [and_expr] [","]          empty query: every item
    and_expr:= or_expr ("," or_expr)*
    or_expr := unary ("|" unary)*
    unary   := "-" unary | primary
    primary := "(" and_expr ")" | term
    term    := group:NAME | caption:TYPE | source:PATTERN
             | width:OPNUM | height:OPNUM | tags:OPNUM
             | tokens:OPNUM | t5tokens:OPNUM | chars:OPNUM
             | dup:[exact|near|any] | check:CODE
             | rating:OPNUM | flag:FLAG | TAG
    OPNUM   := [= | > | >= | < | <=] INTEGER

``tokens:>75`` keeps items with a caption longer than 75 CLIP tokens (BOS/EOS not counted),
``t5tokens:>512`` the same in T5 tokens (``</s>`` counted), ``chars:>300`` in characters;
the counters are the real tokenizers, registered by ``sushitui.check``
(``register_counter``). ``dup:exact`` keeps items whose file is indexed more than once
(any dataset), ``dup:near`` those the last ``sushitui check`` found near-duplicate,
``dup:`` / ``dup:any`` either. ``check:CODE`` keeps items with that finding from the last
check (``*`` wildcards; ``check:error`` / ``warning`` / ``info`` by severity; ``check:any``
any finding). ``rating:>=4`` compares an item's stars (0-5, 0: unrated), ``flag:exclude``
keeps items with that flag (``exclude``, ``needs-work``, ``reg``; ``flag:any`` any flag), as
set by ``sushitui rate`` / ``flag`` and the TUI's keys (``sushitui.dataset.marks``).

``caption:TYPE`` keeps items that have a non-empty caption of that type (``tags``,
``natural_language``, ``social_media``, ``instruction``, ``description``, ``prompt``; short
forms in ``CAPTION_TYPE_ALIASES``, e.g. ``caption:nl``). ``source:PATTERN`` keeps items with
a tag whose source matches (``txt_file``, ``user``, ``auto_<model>`` for tagger-written
tags, ``exif``/``xmp``/``iptc``/``png_text``; ``*`` is a wildcard, ``source:auto`` is short
for ``source:auto_*``, ``source:file`` for ``source:txt_file``).

So ``1girl, -short hair, smile | grin`` is 1girl AND NOT short hair AND (smile OR grin).

Tags match by ``normalize.match_key`` (case-insensitive, ``_`` = space, ``\\(`` = ``(``);
``*`` inside a tag is a wildcard. Tags may contain parentheses (``kaga (kancolle)``) and
kaomoji (``(o)_(o)``, ``:)``): a ``(`` opens a sub-expression only at the start of a term
when its matching ``)`` is followed by a separator or the end. Anything can be written
literally with a backslash (``\\,`` ``\\|`` ``\\*`` ``\\-`` ``\\(``) or inside double
quotes (``"a, b"``).

User text never reaches SQL as text: tag keys, GLOB patterns and numbers are bound
parameters. A malformed query raises ``QueryError(message, position)``; nothing else
escapes ``parse``/``apply_query`` for any input string.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Union

from sushitui.errors import UserError
from sushitui.tags.normalize import match_key

MAX_QUERY_LENGTH = 4000
MAX_DEPTH = 50
MAX_TERMS = 200
MAX_NUMBER = 10**12

SEPARATORS = ",|"
# characters a backslash makes literal; any other backslash is kept (the tag ``\m/``)
_ESCAPABLE = set(',|()*"\\-:')
_WILDCARD = "\ue000"  # a private-use character standing for ``*`` while normalising
_META = re.compile(
    r"\s*(group|caption|source|width|height|tags|tokens|t5tokens|chars|dup|check|rating|flag)\s*:", re.IGNORECASE
)
_COMPARE = re.compile(r"\s*(>=|<=|=|>|<)?\s*([0-9]+)\s*$")
_UNENCODABLE = re.compile("[\ud800-\udfff\x00]")

# Caption.type values (the scanner's list) and the short forms a user types for them.
CAPTION_TYPES = ("tags", "natural_language", "social_media", "instruction", "description", "prompt")
CAPTION_TYPE_ALIASES = {
    "tag": "tags",
    "nl": "natural_language",
    "natural": "natural_language",
    "text": "natural_language",
    "caption": "natural_language",
    "social": "social_media",
    "sns": "social_media",
    "instruct": "instruction",
    "inst": "instruction",
    "desc": "description",
}
# ItemTag.source values written by sushitui; "auto_<model>" is open-ended (one per tagger).
TAG_SOURCES = ("txt_file", "user", "exif", "xmp", "iptc", "png_text")
TAG_SOURCE_ALIASES = {"auto": "auto_*", "tagger": "auto_*", "file": "txt_file"}
_SOURCE_TEXT = re.compile(r"[a-z0-9_.*-]+")  # "*" is the only wildcard: GLOB and fnmatch agree


class QueryError(UserError, ValueError):
    """A malformed query. ``position`` is the 0-based index in the text where it went wrong."""

    def __init__(self, message: str, position: int):
        super().__init__(message)
        self.message = message
        self.position = position

    def __str__(self) -> str:
        return f"{self.message} (at position {self.position + 1})"

    def pointer(self, text: str) -> str:
        """Two lines: the query and a caret under the error, for terminals and the TUI."""
        flat = text.replace("\n", " ").replace("\t", " ")
        return f"{flat}\n{' ' * min(self.position, len(flat))}^ {self.message}"


# --- the tree --------------------------------------------------------------------------


@dataclass(frozen=True)
class MatchAll:
    pass


@dataclass(frozen=True)
class TagTerm:
    text: str  # the tag as written, escapes resolved, ``*`` kept as written
    key: str | None  # match key of an exact tag
    parts: tuple[str, ...] | None  # match-key pieces around wildcards
    position: int

    @property
    def is_pattern(self) -> bool:
        return self.parts is not None

    def glob(self) -> str:
        """The SQLite GLOB pattern for a wildcard tag (metacharacters bracketed)."""
        assert self.parts is not None
        return "*".join(_glob_escape(p) for p in self.parts)

    def regex(self) -> re.Pattern[str]:
        assert self.parts is not None
        return re.compile(".*".join(re.escape(p) for p in self.parts), re.DOTALL)

    def matches(self, norm: str) -> bool:
        if self.parts is None:
            return norm == self.key
        return self.regex().fullmatch(norm) is not None


@dataclass(frozen=True)
class GroupTerm:
    name: str
    position: int


@dataclass(frozen=True)
class CaptionTerm:
    type: str  # one of CAPTION_TYPES
    position: int


@dataclass(frozen=True)
class SourceTerm:
    pattern: str  # lower-case GLOB pattern over ItemTag.source ("*" is the only wildcard)
    position: int

    def matches(self, source: str) -> bool:
        import fnmatch

        return fnmatch.fnmatchcase(source.lower(), self.pattern)


@dataclass(frozen=True)
class CompareTerm:
    field: str  # width | height | tags | rating | tokens | t5tokens | chars
    op: str
    value: int
    position: int


@dataclass(frozen=True)
class DupTerm:
    kind: str  # exact | near | any
    position: int


@dataclass(frozen=True)
class CheckTerm:
    pattern: str  # lower-case finding code GLOB, or a severity, or "any"
    position: int

    def matches(self, code: str, severity: str) -> bool:
        import fnmatch

        if self.pattern == "any":
            return True
        if self.pattern in CHECK_SEVERITIES:
            return severity == self.pattern
        return fnmatch.fnmatchcase(code, self.pattern)


@dataclass(frozen=True)
class FlagTerm:
    flag: str  # one of ITEM_FLAGS, or "any"
    position: int


# Item.flags bits (sushitui.store.models.ITEM_FLAGS, written here so the parser needs no
# store import) and the spellings a user may type for them
ITEM_FLAGS = ("exclude", "needs-work", "reg")
FLAG_ALIASES = {"excluded": "exclude", "needs_work": "needs-work", "needswork": "needs-work", "work": "needs-work"}


# fields counted in a caption's text (CompareTerm.field); tokens/t5tokens need a counter
CAPTION_COUNT_FIELDS = ("tokens", "t5tokens", "chars")
CHECK_SEVERITIES = ("error", "warning", "info")
DUP_KINDS = ("exact", "near", "any")
_CHECK_TEXT = re.compile(r"[a-z0-9_*]+")
_counters: dict[str, Callable[[str], int]] = {}


_prepare: dict[str, Callable[[], None]] = {}


def register_counter(field_name: str, count: Callable[[str], int], prepare: Callable[[], None] | None = None) -> None:
    """Give ``tokens:`` / ``t5tokens:`` their tokenizer (``sushitui.check`` does, on import:
    the tags layer cannot import it). ``count`` takes a caption text and returns a count;
    ``prepare`` runs before a query that uses it (SQLite calls ``count`` per row, when the
    database may not be queried)."""
    if field_name not in ("tokens", "t5tokens"):
        raise ValueError(f"no query field {field_name!r} takes a counter")
    _counters[field_name] = count
    if prepare is not None:
        _prepare[field_name] = prepare


def _counter_sql_name(field_name: str) -> str:
    return f"sushitui_count_{field_name}"


@dataclass(frozen=True)
class Not:
    child: "Node"
    position: int


@dataclass(frozen=True)
class And:
    children: tuple["Node", ...]


@dataclass(frozen=True)
class Or:
    children: tuple["Node", ...]


Node = Union[
    MatchAll, TagTerm, GroupTerm, CaptionTerm, SourceTerm, CompareTerm, DupTerm, CheckTerm, FlagTerm, Not, And, Or
]


def _glob_escape(text: str) -> str:
    # GLOB has no escape character; a one-character class matches the metacharacter itself.
    return re.sub(r"([*?\[])", r"[\1]", text)


# --- parsing ---------------------------------------------------------------------------


class _Parser:
    def __init__(self, text: str):
        self.s = text
        self.n = len(text)
        self.i = 0
        self.depth = 0
        self.terms = 0

    # helpers
    def peek(self) -> str | None:
        return self.s[self.i] if self.i < self.n else None

    def skip_ws(self) -> None:
        while self.i < self.n and self.s[self.i].isspace():
            self.i += 1

    def error(self, message: str, position: int | None = None) -> QueryError:
        return QueryError(message, self.i if position is None else position)

    # grammar
    def parse(self) -> Node:
        self.skip_ws()
        if self.i >= self.n:
            return MatchAll()
        node = self.and_expr()
        self.skip_ws()
        if self.i < self.n:
            # and_expr stops only at the end or at a ')' it cannot close
            raise self.error("unmatched ')': there is no '(' before it")
        return node

    def and_expr(self) -> Node:
        items = [self.or_expr()]
        while True:
            self.skip_ws()
            if self.peek() != ",":
                break
            self.i += 1
            self.skip_ws()
            if self.i >= self.n and self.depth == 0:
                break  # a trailing comma, as captions are often written, is harmless
            if self.i >= self.n or self.s[self.i] in ",|)":
                raise self.error("expected a tag after ','")
            items.append(self.or_expr())
        return items[0] if len(items) == 1 else And(tuple(items))

    def or_expr(self) -> Node:
        items = [self.unary()]
        while True:
            self.skip_ws()
            if self.peek() != "|":
                break
            self.i += 1
            self.skip_ws()
            if self.i >= self.n or self.s[self.i] in ",|)":
                raise self.error("expected a tag after '|'")
            items.append(self.unary())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def unary(self) -> Node:
        self.skip_ws()
        if self.peek() == "-":
            pos = self.i
            self.i += 1
            self.skip_ws()
            if self.i >= self.n or self.s[self.i] in ",|)":
                raise self.error("expected a tag after '-' (write \\- for a tag that starts with a dash)")
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise self.error(f"the query nests deeper than {MAX_DEPTH} levels", pos)
            child = self.unary()
            self.depth -= 1
            return Not(child, pos)
        return self.primary()

    def primary(self) -> Node:
        self.skip_ws()
        c = self.peek()
        if c is None:
            raise self.error("expected a tag")
        if c in ",|":
            raise self.error(f"expected a tag before '{c}'")
        if c == ")":
            raise self.error("unexpected ')'")
        if c == "(" and self._opens_subexpression():
            open_pos = self.i
            self.i += 1
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise self.error(f"the query nests deeper than {MAX_DEPTH} levels", open_pos)
            self.skip_ws()
            if self.peek() == ")":
                raise self.error("empty parentheses")
            if self.peek() is None:
                raise self.error("'(' is never closed", open_pos)
            node = self.and_expr()
            self.skip_ws()
            if self.peek() != ")":
                raise self.error("'(' is never closed: add ')'", open_pos)
            self.i += 1
            self.depth -= 1
            return node
        return self.term()

    def _opens_subexpression(self) -> bool:
        """A ``(`` at the start of a term groups unless it is the start of a tag like
        ``(o)_(o)``: its matching ``)`` must be followed by a separator or the end."""
        level = 0
        j = self.i
        quoted = False
        while j < self.n:
            ch = self.s[j]
            if ch == "\\" and j + 1 < self.n and self.s[j + 1] in _ESCAPABLE:
                j += 2
                continue
            if ch == '"':
                quoted = not quoted
            elif not quoted:
                if ch == "(":
                    level += 1
                elif ch == ")":
                    level -= 1
                    if level == 0:
                        k = j + 1
                        while k < self.n and self.s[k].isspace():
                            k += 1
                        return k >= self.n or self.s[k] in ",|)"
            j += 1
        return True  # never closed: report it as an unclosed group

    def term(self) -> Node:
        self.terms += 1
        start = self.i
        if self.terms > MAX_TERMS:
            raise self.error(f"the query has more than {MAX_TERMS} terms", start)
        chars: list[str] = []  # resolved characters; _WILDCARD for a wildcard
        plain = True  # no quotes or escapes (metadata terms are recognised only then)
        local = 0  # parentheses opened inside this tag, e.g. "kaga (kancolle)"
        while self.i < self.n:
            ch = self.s[self.i]
            if ch == "\\" and self.i + 1 < self.n and self.s[self.i + 1] in _ESCAPABLE:
                chars.append(self.s[self.i + 1])
                plain = False
                self.i += 2
                continue
            if ch == '"':
                close = self.s.find('"', self.i + 1)
                while close != -1 and self.s[close - 1] == "\\":
                    close = self.s.find('"', close + 1)
                if close == -1:
                    raise self.error('unclosed quote: add a closing "', self.i)
                chars.extend(self.s[self.i + 1 : close].replace('\\"', '"'))
                plain = False
                self.i = close + 1
                continue
            if ch in SEPARATORS:
                break
            if ch == ")":
                if local > 0:
                    local -= 1
                elif self.depth > 0:
                    break
            elif ch == "(":
                local += 1
            chars.append(_WILDCARD if ch == "*" else ch)
            self.i += 1
        end = self.i
        raw = self.s[start:end]
        if plain:
            meta = _META.match(raw)
            # rating:general / rating:explicit are tags (taggers write them): rating: is
            # the stars only when a comparison follows
            if meta and not (meta.group(1).lower() == "rating" and not _COMPARE.match(raw[meta.end() :])):
                return self._meta_term(meta.group(1).lower(), raw, start, meta.end())
        text = "".join(chars).strip()
        if not text:
            raise self.error("empty tag", start)
        if _WILDCARD in text:
            key = match_key(text)
            parts = tuple(key.split(_WILDCARD))
            return TagTerm(text.replace(_WILDCARD, "*"), None, parts, start)
        key = match_key(text)
        if not key:
            raise self.error("empty tag", start)
        return TagTerm(text, key, None, start)

    def _meta_term(self, name: str, raw: str, start: int, value_offset: int) -> Node:
        value = raw[value_offset:]
        value_pos = start + value_offset
        if name == "group":
            group_name = value.strip()
            if not group_name:
                raise self.error("expected a group name after 'group:'", value_pos)
            return GroupTerm(group_name, start)
        lead = len(value) - len(value.lstrip())
        word = value.strip().lower()
        if name == "caption":
            return CaptionTerm(self._caption_type(word, value_pos + lead), start)
        if name == "source":
            return SourceTerm(self._source_pattern(word, value_pos + lead), start)
        if name == "dup":
            kind = word or "any"
            if kind not in DUP_KINDS:
                raise self.error(f"unknown duplicate kind '{word}' (dup:exact, dup:near or dup:any)", value_pos + lead)
            return DupTerm(kind, start)
        if name == "flag":
            flag = FLAG_ALIASES.get(word, word)
            if flag not in ITEM_FLAGS + ("any",):
                raise self.error(f"unknown flag '{word}' (flag:exclude, needs-work, reg or any)", value_pos + lead)
            return FlagTerm(flag, start)
        if name == "check":
            if not word:
                raise self.error(
                    "expected a finding after 'check:' (a code such as upscaled, "
                    "a severity: error, warning, info, or any)",
                    value_pos + lead,
                )
            if not _CHECK_TEXT.fullmatch(word):
                raise self.error("a finding code is letters, digits, '_' and '*' wildcards", value_pos + lead)
            return CheckTerm("any" if word == "*" else word, start)
        m = _COMPARE.match(value)
        if not m:
            lead = len(value) - len(value.lstrip())
            raise self.error(
                f"expected a comparison like {name}:>=1024 (operators = > >= < <=) after '{name}:'", value_pos + lead
            )
        op = m.group(1) or "="
        number = m.group(2)
        if len(number) > 13 or int(number) > MAX_NUMBER:
            raise self.error(f"{number} is too large for '{name}:'", value_pos + m.start(2))
        return CompareTerm(name, op, int(number), start)

    def _caption_type(self, word: str, position: int) -> str:
        word = re.sub(r"[\s-]+", "_", word)
        ctype = word if word in CAPTION_TYPES else CAPTION_TYPE_ALIASES.get(word)
        if ctype is None:
            what = f"unknown caption type '{word}'" if word else "expected a caption type after 'caption:'"
            raise self.error(
                f"{what} (types: {', '.join(CAPTION_TYPES)}; short: nl, text, social, desc, inst)", position
            )
        return ctype

    def _source_pattern(self, word: str, position: int) -> str:
        pattern = TAG_SOURCE_ALIASES.get(word, word)
        known = "txt_file (or file), user, auto_<model> (or auto), exif, xmp, iptc, png_text"
        if not pattern:
            raise self.error(f"expected a tag source after 'source:' ({known})", position)
        if not _SOURCE_TEXT.fullmatch(pattern):
            raise self.error(f"a tag source is letters, digits, '_', '-', '.' and '*' wildcards ({known})", position)
        if "*" not in pattern and pattern not in TAG_SOURCES and not pattern.startswith("auto_"):
            raise self.error(f"unknown tag source '{pattern}' ({known}; * for a pattern)", position)
        return pattern


def parse(text: str) -> Node:
    """Parse a query; raises QueryError (only) when it is malformed."""
    if not isinstance(text, str):
        raise QueryError("the query must be text", 0)
    if len(text) > MAX_QUERY_LENGTH:
        raise QueryError(f"the query is longer than {MAX_QUERY_LENGTH} characters", MAX_QUERY_LENGTH)
    bad = _UNENCODABLE.search(text)
    if bad:  # e.g. undecodable bytes from a shell argument (surrogate escapes)
        raise QueryError("the query contains a character that is not valid text", bad.start())
    return _Parser(text).parse()


def check(text: str) -> QueryError | None:
    """The error of a query, or None when it parses (for live validation in the TUI)."""
    try:
        parse(text)
    except QueryError as exc:
        return exc
    return None


# --- compiling to SQL ------------------------------------------------------------------


def _group_id(name: str, position: int) -> int:
    from peewee import fn

    from sushitui.store import TagGroup

    row = TagGroup.select(TagGroup.id).where(fn.lower(TagGroup.name) == name.lower()).first()
    if row is None:
        names = [g.name for g in TagGroup.select(TagGroup.name).order_by(TagGroup.sort_order, TagGroup.name).limit(12)]
        known = ", ".join(names) if names else "none yet"
        raise QueryError(f"no tag group named '{name}' (groups: {known})", position)
    return row.id


def _tag_condition(term: TagTerm):
    from peewee import Expression

    from sushitui.store import ItemTag

    if term.parts is None:
        return ItemTag.norm == term.key
    # GLOB (case-sensitive, like the lower-cased keys) can use the (norm, item) index for
    # the literal prefix of the pattern; LIKE could not on a BINARY column.
    return Expression(ItemTag.norm, "GLOB", term.glob())


# Two SQL shapes per tag term, because the browser asks for two different things:
# - "set" (all matching ids, counts): ``item.id IN (SELECT item_id FROM item_tag WHERE ...)``.
#   SQLite builds each list once and probes it; the rarest positive term goes first so
#   that it drives the row lookups.
# - "page" (a sorted page of full rows): frequent terms become correlated
#   ``EXISTS (... WHERE item_id = item.id)`` probes, so SQLite walks the sort index and
#   stops after one page instead of materialising every list and sorting the result;
#   rare terms stay IN lists, which then drive a small lookup.
FREQUENT_ROWS = 1000  # a term with at least this many tag rows is "frequent"
_COUNT_CAP = 200_000  # bounded frequency probe: cheap and exact enough to order terms


def _frequency(cond, cap: int) -> int:
    from sushitui.store import ItemTag

    inner = ItemTag.select(ItemTag.id).where(cond).limit(cap)
    return inner.count()


def compile_node(node: Node, subtype: str | None = None, strategy: str = "set", dataset_id: int | None = None):
    """A peewee expression over ``Item`` for the tree (None for MatchAll). ``dataset_id``
    narrows the sample a page plan is chosen with (``_choose_driver``)."""
    from peewee import SQL, IntegerField, NodeList, Value, fn

    from sushitui.store import Caption, Item, ItemTag, TagGroupMember

    page = strategy == "page"
    freq_cache: dict[object, int] = {}

    def tag_cond(cond):
        return cond if subtype is None else (cond & (ItemTag.subtype == subtype))

    def as_in(cond):
        return Item.id.in_(ItemTag.select(ItemTag.item).where(tag_cond(cond)))

    def as_exists(cond):
        Probe = ItemTag.alias()
        return fn.EXISTS(
            Probe.select(Probe.id).where(_rebind(tag_cond(cond), ItemTag, Probe) & (Probe.item == Item.id))
        )

    def frequency(key, cond) -> int:
        if key not in freq_cache:
            # a page only needs "frequent or not"; a set orders its terms by the count
            freq_cache[key] = _frequency(tag_cond(cond), FREQUENT_ROWS if page else _COUNT_CAP)
        return freq_cache[key]

    def tag_expr(key, cond, *, probe_ok: bool):
        if page and probe_ok and frequency(key, cond) >= FREQUENT_ROWS:
            return as_exists(cond), frequency(key, cond)
        return as_in(cond), (frequency(key, cond) if not page else 0)

    def walk(n: Node):
        """(expression, estimated rows or None when it cannot drive)."""
        if isinstance(n, TagTerm):
            if n.parts is None:
                return tag_expr(("k", n.key), ItemTag.norm == n.key, probe_ok=True)
            cond = _tag_condition(n)
            if page and frequency(("w", n.glob()), cond) >= FREQUENT_ROWS:
                # a wildcard over many tags (``t1*``: 1,111 of them) as an IN list reads
                # every row of every tag it matches before the first row of the page; a
                # probe of the item's own ~20 tags lets the page walk stop at 50 rows
                return _wildcard_probe(cond, subtype), None
            return as_in(cond), None
        if isinstance(n, GroupTerm):
            gid = _group_id(n.name, n.position)
            members = TagGroupMember.select(TagGroupMember.norm).where(TagGroupMember.group == gid)
            cond = ItemTag.norm.in_(members)
            if page and frequency(("g", gid), cond) >= FREQUENT_ROWS:
                # probe the item's own tags against the member key (group_id, norm):
                # "norm IN (members)" inside a correlated probe would be re-planned per item
                Probe, Member = ItemTag.alias(), TagGroupMember.alias()
                probe = (
                    Probe.select(Probe.id)
                    .join(Member, on=((Member.group == gid) & (Member.norm == Probe.norm)))
                    .where(Probe.item == Item.id)
                )
                if subtype is not None:
                    probe = probe.where(Probe.subtype == subtype)
                return fn.EXISTS(probe), None
            return as_in(cond), None
        if isinstance(n, CaptionTerm):
            # blank captions (an emptied tag file, an empty .txt) do not count as having one
            has = (Caption.type == n.type) & (fn.trim(Caption.content, " \t\r\n") != "")
            if page:
                CaptionProbe = Caption.alias()
                return fn.EXISTS(
                    CaptionProbe.select(CaptionProbe.id).where(
                        _rebind(has, Caption, CaptionProbe) & (CaptionProbe.item == Item.id)
                    )
                ), None
            return Item.id.in_(Caption.select(Caption.item).where(has)), None
        if isinstance(n, SourceTerm):
            # LIKE: ASCII case-insensitive like the Python rule, and 2-3x cheaper than
            # lower(source) over a million tag rows; "_" is escaped, "*" becomes "%"
            like = n.pattern.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%").replace("*", "%")
            like_cond = NodeList((ItemTag.source, SQL("LIKE"), Value(like), SQL("ESCAPE"), Value("\\")), parens=True)
            return (as_exists(like_cond) if page else as_in(like_cond)), None
        if isinstance(n, CompareTerm) and n.field in CAPTION_COUNT_FIELDS:
            return _caption_count_expr(n, page), None
        if isinstance(n, DupTerm):
            return _dup_expr(n), None
        if isinstance(n, CheckTerm):
            return _check_expr(n), None
        if isinstance(n, FlagTerm):
            bits = (1 << len(ITEM_FLAGS)) - 1 if n.flag == "any" else 1 << ITEM_FLAGS.index(n.flag)
            return Item.flags.bin_and(bits) != 0, None
        if isinstance(n, CompareTerm):
            columns: dict[str, IntegerField] = {
                "width": Item.width,
                "height": Item.height,
                "tags": Item.tag_count,
                "rating": Item.rating,
            }
            col = columns[n.field]
            cmp = {
                "=": col == n.value,
                ">": col > n.value,
                ">=": col >= n.value,
                "<": col < n.value,
                "<=": col <= n.value,
            }[n.op]
            # NULL (unknown size) never matches, and NOT of it does: like the Python rules
            return col.is_null(False) & cmp, None
        if isinstance(n, Not):
            return ~walk(n.child)[0], None
        if isinstance(n, And):
            if page and ADAPTIVE_PAGES:
                driven = _choose_driver(n, walk, tag_cond, as_in, dataset_id, subtype is None)
                if driven is not None:
                    return driven, None
            parts = [walk(c) for c in n.children]
            # rarest known term first: in the "set" shape it drives the lookups
            parts.sort(key=lambda p: (p[1] is None, p[1] or 0))
            return _fold([p[0] for p in parts], "and"), None
        if isinstance(n, Or):
            # exact tags OR-ed together become one IN list: one index pass instead of many
            exact = [k for c in n.children if (k := _exact_key(c)) is not None]
            rest = [walk(c)[0] for c in n.children if _exact_key(c) is None]
            if len(exact) > 1:
                e, _ = tag_expr(("o",) + tuple(sorted(exact)), ItemTag.norm.in_(exact), probe_ok=True)
                rest.insert(0, e)
            elif exact:
                e, _ = tag_expr(("k", exact[0]), ItemTag.norm == exact[0], probe_ok=True)
                rest.insert(0, e)
            return _fold(rest, "or"), None
        raise QueryError("unsupported query", 0)  # MatchAll inside a tree cannot happen

    if isinstance(node, MatchAll):
        return None
    return walk(node)[0]


# A page of a conjunction whose terms are all frequent walks the sort index and probes each
# item: fast while matches are common, but it reads every item when they are rare (issue
# 24: 14 matches among 1M items took 0.84 s). ``_choose_driver`` estimates how many items
# the walk reads for a page (a sample of the items tells the share that match, with the
# terms' real correlation) and drives from the rarest positive term's item list instead
# when that list is shorter. ``ADAPTIVE_PAGES = False`` gives the old plan (benchmarks).
ADAPTIVE_PAGES = True
SAMPLE_ITEMS = 250  # items probed to estimate the share that matches (1-3 ms)
SAMPLE_FIRST = 20  # probed first: when these match often, the walk is kept at once
SAMPLE_MORE = 2000  # probed when the 250 found almost no match: rare, or none at all?
MERGE_MIN_WALK = 50_000  # below, counting the merge's rows costs about what it could save
# costs in "items walked" (measured at 200k and 1M items): a driven row reads the item row
# (a random page of the item table) and sorts it; a merged index row is read in order
# from the covering (norm, item_id) index
DRIVE_ROW_COST = 25
MERGE_ROW_COST = 0.15
PAGE_GOAL = 100  # rows a page walk is assumed to need (a page of 50 and some offset)
# a page driven by the sorted ids of a bitmap answer: ~1.3 us an id against ~1 us a walked
# item (1M items: 2,011 ids 2.5 ms, 20k ids 22-28 ms), so ids drive below ~9k matches
KNOWN_ID_COST = 1.3
TAG_BITMAPS = True  # False: pages and counts without the stored bitmaps (benchmarks, tests)


def _wildcard_probe(cond, subtype: str | None):
    """EXISTS over the item's own tag rows (the (item_id, position) index)."""
    from peewee import fn

    from sushitui.store import Item, ItemTag

    Probe = ItemTag.alias()
    where = _rebind(cond, ItemTag, Probe) & (Probe.item == Item.id)
    if subtype is not None:
        where &= Probe.subtype == subtype
    return fn.EXISTS(Probe.select(Probe.id).where(where))


def _driver_condition(n: Node):
    """The item_tag condition of a term whose item list can drive a page, else None."""
    from sushitui.store import ItemTag

    if isinstance(n, TagTerm):
        return _tag_condition(n)
    if isinstance(n, Or):
        tags = [c for c in n.children if isinstance(c, TagTerm)]
        if len(tags) == len(n.children):
            exact = _exact_keys(n)
            conds = ([ItemTag.norm.in_(exact)] if exact else []) + [
                _tag_condition(c) for c in tags if c.parts is not None
            ]
            return _fold(conds, "or")
    return None


def _choose_driver(n: "And", walk, tag_cond, as_in, dataset_id: int | None, subtype_free: bool):
    """The conjunction with its rarest positive tag term as the IN list that drives the
    page (the other terms probe), when that reads fewer rows than walking the sort index;
    None to keep the walk."""
    import json

    from peewee import SQL

    from sushitui.store import Item, ItemTag, current_database

    drivers = [(i, cond) for i, c in enumerate(n.children) if (cond := _driver_condition(c)) is not None]
    if not drivers or any(_frequency(tag_cond(cond), FREQUENT_ROWS) < FREQUENT_ROWS for _i, cond in drivers):
        return None  # a rare term is an IN list already, and drives
    if subtype_free and (known := _bitmap_page(n)) is not None:
        return known[0]
    parts = [walk(c) for c in n.children]
    # the sample probes exact tags first (covering index); a wildcard reads the item's rows
    cheap_first = sorted(range(len(parts)), key=lambda j: _has_wildcard(n.children[j]))
    full = _fold([parts[j][0] for j in cheap_first], "and")
    db = current_database()
    lo, hi = db.execute_sql("SELECT (SELECT MIN(id) FROM item), (SELECT MAX(id) FROM item)").fetchone()
    if lo is None:
        return None
    span = hi - lo + 1
    draws = _sample_ids(lo, hi, SAMPLE_MORE)
    seen = hits = probed = 0
    # in steps: when the first few already match often the walk is short (the common case
    # pays for 20 probes); the last, larger step only runs when matches are rare or none
    for step in (draws[:SAMPLE_FIRST], draws[SAMPLE_FIRST:SAMPLE_ITEMS], draws[SAMPLE_ITEMS:]):
        if not step or (probed >= SAMPLE_ITEMS and hits > 0):
            break
        ids_from, join, id_value = _json_ids(db)
        got = db.execute_sql(
            f"SELECT COUNT(*) FROM {ids_from} {join} item ON item.id = {id_value}"
            + ("" if dataset_id is None else " WHERE item.dataset_id = ?"),
            [json.dumps(step)] + ([] if dataset_id is None else [dataset_id]),
        ).fetchone()[0]
        matched = db.execute_sql(*_sampled(full, step, dataset_id)).fetchone()[0]
        seen, hits, probed = seen + (got or 0), hits + (matched or 0), probed + len(step)
        if hits and PAGE_GOAL * seen / hits <= FREQUENT_ROWS:
            return None  # matches are common: the walk stops soon
    if not seen:
        return None
    items = seen * span / probed  # the dataset's items, estimated
    walk_rows = items if not hits else min(items, PAGE_GOAL * seen / hits)
    if walk_rows <= FREQUENT_ROWS:
        return None  # the walk is short: nothing to gain
    survivors = items * hits / seen
    budget = walk_rows / MERGE_ROW_COST  # index rows a merge may read and still win
    plans: list[tuple[float, Any]] = []
    terms = [c.child if isinstance(c, Not) else c for c in n.children]
    if (
        subtype_free
        and walk_rows >= MERGE_MIN_WALK
        and all(_exact_key(t) is not None or (isinstance(t, Or) and _has_arm(t)) for t in terms)
    ):
        # every term an exact tag (or | of them): merge their sorted (norm, item_id) lists
        rows = 0
        for t in terms:
            cond = ItemTag.norm == t.key if isinstance(t, TagTerm) else ItemTag.norm.in_(_exact_keys(t))
            rows += _frequency(cond, int(budget) + 1)
            if rows > budget:
                break
        if rows <= budget:
            plans.append((MERGE_ROW_COST * rows + DRIVE_ROW_COST * survivors, "merge"))
    cap = int(walk_rows / DRIVE_ROW_COST) + 1
    best: tuple[int, int] | None = None
    for i, cond in drivers:
        rows = _frequency(tag_cond(cond), cap)
        if rows < cap and (best is None or rows < best[1]):
            best = (i, rows)
    if best is not None:
        plans.append((DRIVE_ROW_COST * best[1], "drive"))
    if not plans or min(plans, key=lambda p: p[0])[0] >= walk_rows:
        return None
    if min(plans, key=lambda p: p[0])[1] == "merge":
        sql, params = _merge_sql(n)
        return Item.id.in_(SQL(f"({sql})", params))
    assert best is not None  # the cheaper plan is the drive
    driver = dict(drivers)[best[0]]
    return _fold([as_in(driver) if j == best[0] else p[0] for j, p in enumerate(parts)], "and")


def _tag_groups(node: Node, *, patterns: bool = False) -> tuple[list[list], list[list]] | None:
    """(positive, negated) groups of tag keys when the query is only tags and ``|`` of
    them, each possibly negated, at least one positive; wildcards too (as
    ``tag_bitmaps.Pattern``) when ``patterns``; else None."""
    from sushitui.store.tag_bitmaps import Pattern

    def terms(t: Node) -> list | None:
        if isinstance(t, TagTerm):
            if t.parts is None:
                return [t.key]
            return [Pattern(t.glob())] if patterns else None
        if isinstance(t, Or) and all(isinstance(c, TagTerm) for c in t.children):
            out = [terms(c) for c in t.children]
            return None if any(o is None for o in out) else [x for o in out for x in o or ()]
        return None

    pos: list[list] = []
    neg: list[list] = []
    for c in node.children if isinstance(node, And) else (node,):
        group = terms(c.child if isinstance(c, Not) else c)
        if group is None:
            return None
        (neg if isinstance(c, Not) else pos).append(group)
    return (pos, neg) if pos else None


def _known_ids(node: Node, *, patterns: bool = False):
    """The exact matching ids of every dataset, from the tags' bitmaps
    (``store.tag_bitmaps``), for a query of tags; None when they cannot answer. Pages ask
    without ``patterns``: a wildcard's bits are built from all its rows each time (~0.3 s
    over 1.7M rows), where the page walk stops after a few items."""
    if not (ADAPTIVE_PAGES and TAG_BITMAPS) or (groups := _tag_groups(node, patterns=patterns)) is None:
        return None
    from sushitui.store import tag_bitmaps

    return tag_bitmaps.matching_ids(*groups)


def _bitmap_page(n: "And") -> tuple[Any] | None:
    """(plan,) when the tags' bitmaps give the exact matches: the matching ids drive the
    page when they are few (none: the page is empty at once), or the plan is None (walk
    the sort index) when they are so many that the walk stops soon. None when bitmaps
    cannot answer this query."""
    import json

    from peewee import SQL

    from sushitui.store import Item, current_database

    known = _known_ids(n)
    if known is None:
        return None
    if matches := known.count():
        # two subqueries: SQLite answers a lone MIN or MAX from the key, not both at once
        lo, hi = (
            current_database().execute_sql("SELECT (SELECT MIN(id) FROM item), (SELECT MAX(id) FROM item)").fetchone()
        )
        items = (hi - lo + 1) if lo is not None else 0
        if KNOWN_ID_COST * matches >= PAGE_GOAL * items / matches:
            return (None,)  # matches are common: the name-order walk fills a page soonest
    # the ids are sorted: SQLite reads them as a list and looks each item up by its key
    return (Item.id.in_(SQL("(SELECT value FROM json_each(?))", [json.dumps(known.ids().tolist())])),)


def _has_wildcard(n: Node) -> bool:
    if isinstance(n, TagTerm):
        return n.parts is not None
    if isinstance(n, (Not,)):
        return _has_wildcard(n.child)
    if isinstance(n, (And, Or)):
        return any(_has_wildcard(c) for c in n.children)
    return False


def _merge_sql(n: "And") -> tuple[str, list]:
    """``A INTERSECT B EXCEPT C ORDER BY 1`` over exact tags (and ``|`` of them)."""
    pos: list[tuple[str, list]] = []
    neg: list[tuple[str, list]] = []
    for c in n.children:
        t = c.child if isinstance(c, Not) else c
        keys = _exact_keys(t)
        arm = (f"SELECT item_id FROM item_tag WHERE norm IN ({','.join('?' * len(keys))})", list(keys))
        (neg if isinstance(c, Not) else pos).append(arm)
    sql = " INTERSECT ".join(a[0] for a in pos) + "".join(" EXCEPT " + a[0] for a in neg) + " ORDER BY 1"
    return sql, [p for a in pos + neg for p in a[1]]


@functools.lru_cache(maxsize=8)
def _sample_ids(lo: int, hi: int, n: int) -> list[int]:
    """Up to ``n`` distinct random ids in [lo, hi], the same for the same range (a plan does
    not flicker between two identical queries; drawing them cost 3 ms a page)."""
    import random

    span = hi - lo + 1
    rng = random.Random(span)
    return list(dict.fromkeys(lo + rng.randrange(span) for _ in range(min(n, span))))


def _sampled(full, ids: list[int], dataset_id: int | None) -> tuple[str, list]:
    """SQL counting the sampled items that match: driven by the id list (CROSS JOIN fixes
    the order; without statistics SQLite would walk the items and probe the list)."""
    import json

    from peewee import fn

    from sushitui.store import Item

    q = Item.select(fn.COUNT(Item.id)).where(full)
    if dataset_id is not None:
        q = q.where(Item.dataset == dataset_id)
    sql, params = q.sql()
    head = 'FROM "item" AS "t1"'
    assert head in sql, sql
    ids_from, join, id_value = _json_ids(Item._meta.database, param=Item._meta.database.param)
    sql = sql.replace(head, f'FROM {ids_from} {join} "item" AS "t1" ON ("t1"."id" = {id_value})', 1)
    return sql, [json.dumps(ids), *params]


def _json_ids(db, param: str = "?") -> tuple[str, str, str]:
    """A FROM item naming the ids of a JSON array parameter, the join that drives the
    items from it, and the id column: SQLite's json_each (CROSS JOIN fixes the order
    there), or PostgreSQL's own JSON functions."""
    if db.param == "%s":  # PostgreSQL
        return f'jsonb_array_elements_text({param}::jsonb) AS "s" ("value")', "JOIN", '"s"."value"::bigint'
    return f'json_each({param}) AS "s"', "CROSS JOIN", '"s"."value"'


def _compare(lhs, op: str, value: int):
    return {"=": lhs == value, ">": lhs > value, ">=": lhs >= value, "<": lhs < value, "<=": lhs <= value}[op]


def _caption_count_expr(n: CompareTerm, page: bool):
    """Items with a caption whose count compares true (no caption: no match)."""
    from peewee import fn

    from sushitui.store import Caption, Item, current_database

    if n.field == "chars":
        measure = fn.length(Caption.content)
    else:
        count = _counters.get(n.field)
        if count is None:
            raise QueryError(
                f"'{n.field}:' needs the tokenizer, which sushitui.check provides: import sushitui.check first",
                n.position,
            )
        name = _counter_sql_name(n.field)
        if n.field in _prepare:
            _prepare[n.field]()
        db = current_database()
        if db.param == "%s":  # PostgreSQL cannot call Python: the matching captions are counted here
            return _counted_caption_items(count, n)  # an id list serves a page and a count
        if name not in getattr(db, "_functions", {}):
            db.register_function(count, name, 1, deterministic=True)
        measure = getattr(fn, name)(Caption.content)
    cond = _compare(measure, n.op, n.value)
    if page:
        Probe = Caption.alias()
        return fn.EXISTS(Probe.select(Probe.id).where(_rebind(cond, Caption, Probe) & (Probe.item == Item.id)))
    return Item.id.in_(Caption.select(Caption.item).where(cond))


def _counted_caption_items(count, n: CompareTerm):
    """``_caption_count_expr`` on PostgreSQL: the captions are counted in Python (stored
    counts, else the tokenizer) and the items of those that compare true go in as one
    JSON array parameter (no limit on its length)."""
    import json

    from peewee import SQL

    from sushitui.store import Caption, Item, tuple_rows

    items = sorted(
        {
            item_id
            for item_id, text in tuple_rows(
                Caption.select(Caption.item, Caption.content).where(Caption.content.is_null(False)).tuples()
            )
            if _compare(count(text), n.op, n.value)
        }
    )
    return Item.id.in_(SQL("(SELECT value::bigint FROM jsonb_array_elements_text(%s::jsonb))", [json.dumps(items)]))


def _dup_expr(n: DupTerm):
    from peewee import fn

    from sushitui.store import Item
    from sushitui.store.models import CheckFinding

    Other = Item.alias()
    exact = Item.sha256.in_(
        Other.select(Other.sha256)
        .where(Other.sha256.is_null(False))
        .group_by(Other.sha256)
        .having(fn.COUNT(Other.id) > 1)
    )
    near = Item.id.in_(CheckFinding.select(CheckFinding.item).where(CheckFinding.code == "near_duplicate"))
    return {"exact": exact, "near": near, "any": exact | near}[n.kind]


def _check_expr(n: CheckTerm):
    from peewee import Expression

    from sushitui.store import Item
    from sushitui.store.models import CheckFinding

    if n.pattern == "any":
        cond = None
    elif n.pattern in CHECK_SEVERITIES:
        cond = CheckFinding.severity == n.pattern
    elif "*" in n.pattern:
        cond = Expression(CheckFinding.code, "GLOB", _glob_escape(n.pattern).replace("[*]", "*"))
    else:
        cond = CheckFinding.code == n.pattern
    inner = CheckFinding.select(CheckFinding.item)
    return Item.id.in_(inner if cond is None else inner.where(cond))


def _rebind(expr, model, alias):
    """Re-point a condition on ``model`` (e.g. ``ItemTag.norm == x``) at an alias."""
    from peewee import Expression, Field, Function, NodeList

    if isinstance(expr, Field) and expr.model is model:
        return getattr(alias, expr.name)
    if isinstance(expr, NodeList):  # e.g. source LIKE ? ESCAPE ?
        return NodeList([_rebind(n, model, alias) for n in expr.nodes], expr.glue, expr.parens)
    if isinstance(expr, Function):  # e.g. lower(source), trim(content)
        return Function(expr.name, [_rebind(a, model, alias) for a in expr.arguments], expr._coerce)
    if isinstance(expr, Expression):
        return Expression(_rebind(expr.lhs, model, alias), expr.op, _rebind(expr.rhs, model, alias), expr.flat)
    return expr


def _fold(exprs: list, how: str):
    out = exprs[0]
    for e in exprs[1:]:
        out = (out & e) if how == "and" else (out | e)
    return out


def _wants_ids_only(select) -> bool:
    from sushitui.store import Item

    cols: list[Any] | tuple[Any, ...] = getattr(select, "_returning", None) or ()
    return len(cols) == 1 and getattr(cols[0], "name", None) == "id" and getattr(cols[0], "model", None) is Item


def apply_query(
    select, text: str | None, dataset_id: int | None = None, *, subtype: str | None = None, strategy: str = "auto"
):
    """Filter a peewee ``Item`` select by a query (and a dataset).

    ``subtype`` limits tag matching to one tag caption (None: any of the item's tag
    captions). ``strategy``: "set" (best for counts and all ids), "page" (best for a
    sorted page of rows) or "auto" (set when the select returns only ``Item.id``).
    Raises QueryError for a malformed query or an unknown group.
    """
    from sushitui.store import Item

    if dataset_id is not None:
        select = select.where(Item.dataset == dataset_id)
    if text is None or not text.strip():
        return select
    if strategy == "auto":
        strategy = "set" if _wants_ids_only(select) else "page"
    expr = compile_node(parse(text), subtype, strategy, dataset_id)
    return select if expr is None else select.where(expr)


# --- counting ----------------------------------------------------------------------------


def _exact_key(n: Node) -> str | None:
    """The match key of an exact tag term; None for anything else (a wildcard, a group, ...)."""
    return n.key if isinstance(n, TagTerm) and n.parts is None else None


def _exact_keys(n: Node) -> list[str]:
    """The match keys of an exact tag, or of the exact tags of an ``|`` (sorted, once each)."""
    if isinstance(n, Or):
        return sorted({k for c in n.children if (k := _exact_key(c)) is not None})
    key = _exact_key(n)
    return [] if key is None else [key]


def _has_arm(n: Node) -> bool:
    """Whether ``_compound_arm`` has a SELECT for the term: exact tags, ``|`` of exact
    tags, groups. Sizes, caption:, source: and nesting have none; a wildcard is left to
    the general plan too (for ``*x*`` SQLite would sort the whole item_tag table by item
    for the merge, measured slower than the IN lists)."""
    if isinstance(n, TagTerm):
        return n.parts is None
    if isinstance(n, Or):
        return all(isinstance(c, TagTerm) and c.parts is None for c in n.children)
    return isinstance(n, GroupTerm)


def _compound_arm(n: Node, dataset_id: int) -> tuple[str, list, tuple[int, int] | None]:
    """The item ids a term (one that ``_has_arm``) selects, as one SELECT sorted by item
    id, and the stored group answer it reads (then it is already limited to the dataset)."""
    head = "SELECT item_id FROM item_tag WHERE "
    if isinstance(n, TagTerm):
        return head + "norm = ?", [n.key], None
    if isinstance(n, Or):
        keys = sorted({k for c in n.children if (k := _exact_key(c)) is not None})  # all of them (_has_arm)
        return head + f"norm IN ({','.join('?' * len(keys))})", keys, None
    from sushitui.store import group_index

    assert isinstance(n, GroupTerm)  # _has_arm lets nothing else through

    gid = _group_id(n.name, n.position)
    stored = group_index.item_ids_arm(dataset_id, gid)
    if stored is not None:
        return stored[0], stored[1], (dataset_id, gid)
    return head + "norm IN (SELECT norm FROM tag_group_member WHERE group_id = ?)", [gid], None


def _compound_count_sql(node: Node, dataset_id: int) -> tuple[str, list, list[tuple[int, int]]] | None:
    """``A, B, -C`` (tags, ``|`` of tags, groups, each possibly negated, at least one not)
    as ``A INTERSECT B EXCEPT C ORDER BY 1``. With the ORDER BY, SQLite merges the arms as
    they come out of the (norm, item_id) index, already sorted, instead of building a
    temporary list per term: 25 ms instead of 86 ms for a three-term count over 3M tag rows.
    Also returns the stored group answers the SQL reads (``group_index``)."""
    terms = node.children if isinstance(node, And) else (node,)
    if not any(not isinstance(t, Not) for t in terms):
        return None
    if not all(_has_arm(t.child if isinstance(t, Not) else t) for t in terms):
        return None  # decided before any group answer is built for nothing
    pos: list[tuple[str, list, tuple[int, int] | None]] = []
    neg: list[tuple[str, list, tuple[int, int] | None]] = []
    for t in terms:
        arm = _compound_arm(t.child, dataset_id) if isinstance(t, Not) else _compound_arm(t, dataset_id)
        (neg if isinstance(t, Not) else pos).append(arm)
    if len(pos) == 1 and not neg:
        sql, params = pos[0][0], list(pos[0][1])
        if pos[0][2] is None:  # tag rows: one per tag, so an item can come more than once
            sql = sql.replace("SELECT item_id", "SELECT DISTINCT item_id", 1)
    else:
        sql = " INTERSECT ".join(a[0] for a in pos) + "".join(" EXCEPT " + a[0] for a in neg) + " ORDER BY 1"
        params = [p for a in pos + neg for p in a[1]]
    stored = [a[2] for a in pos + neg if a[2] is not None]
    if any(a[2] for a in pos):  # an arm of the dataset's own items: the intersection is in it
        return f"SELECT COUNT(*) FROM ({sql})", params, stored

    if _only_dataset(dataset_id):  # no membership test needed
        return f"SELECT COUNT(*) FROM ({sql})", params, stored
    return f"SELECT COUNT(*) FROM item WHERE dataset_id = ? AND id IN ({sql})", [dataset_id, *params], stored


def _only_dataset(dataset_id: int) -> bool:
    """Whether every item belongs to this dataset (two subqueries: SQLite answers a lone
    MIN or MAX from an index, but MIN and MAX together read every item: 127 ms at 1M)."""
    from sushitui.store import current_database

    lo, hi = (
        current_database()
        .execute_sql("SELECT (SELECT MIN(dataset_id) FROM item), (SELECT MAX(dataset_id) FROM item)")
        .fetchone()
    )
    return lo == hi == dataset_id


# the dataset's share of bitmap matches is counted through the item table up to this many
# ids (1-2 us each); beyond, the merge of the index lists is as fast
KNOWN_IDS_COUNT_MAX = 50_000


def _known_count(node: Node, dataset_id: int) -> int | None:
    """The count from the tags' bitmaps (``_known_ids``), or None."""
    import json

    known = _known_ids(node, patterns=True)
    if known is None:
        return None
    if _only_dataset(dataset_id):
        return known.count()
    if known.count() > KNOWN_IDS_COUNT_MAX:
        return None
    from sushitui.store import current_database

    return (
        current_database()
        .execute_sql(
            "SELECT COUNT(*) FROM item WHERE dataset_id = ? AND id IN (SELECT value FROM json_each(?))",
            (dataset_id, json.dumps(known.ids().tolist())),
        )
        .fetchone()[0]
    )


def count_matches(dataset_id: int, text: str | None, *, subtype: str | None = None) -> int:
    """How many of the dataset's items match a query (the browser's total)."""
    from sushitui.store import Item, current_database

    if text is not None and text.strip() and subtype is None:
        if (known := _known_count(parse(text), dataset_id)) is not None:
            return known
        compound = _compound_count_sql(parse(text), dataset_id)
        if compound is not None:
            from sushitui.store import group_index

            sql, params, stored = compound
            db = current_database()
            with db.atomic():  # one snapshot: the stored answers are still valid for this count
                if not stored or group_index.still_valid(stored):
                    return db.execute_sql(sql, params).fetchone()[0]
    return apply_query(Item.select(Item.id), text, dataset_id, subtype=subtype).count()


def matching_item_ids(dataset_id: int, text: str | None, *, subtype: str | None = None) -> list[int]:
    """Ids of the dataset's items matching a query, in id order."""
    from sushitui.store import Item

    q = apply_query(Item.select(Item.id), text, dataset_id, subtype=subtype).order_by(Item.id)
    return [r[0] for r in q.tuples()]


# --- plain Python evaluation (tests, previews of unsaved edits) ------------------------


@dataclass
class ItemFacts:
    """What a query looks at for one item."""

    norms: set[str]
    width: int | None = None
    height: int | None = None
    tag_count: int = 0
    caption_types: set[str] = field(default_factory=set)  # types of its non-empty captions
    tag_sources: set[str] = field(default_factory=set)
    captions: list[str] = field(default_factory=list)  # texts, for tokens:/t5tokens:/chars:
    duplicate: set[str] = field(default_factory=set)  # {"exact", "near"}
    findings: set[tuple[str, str]] = field(default_factory=set)  # (code, severity)
    rating: int = 0
    flags: set[str] = field(default_factory=set)


def evaluate(node: Node, facts: ItemFacts, group_norms: Callable[[str], Iterable[str]] | None = None) -> bool:
    """Evaluate a parsed query against one item without the database."""
    if isinstance(node, MatchAll):
        return True
    if isinstance(node, TagTerm):
        return any(node.matches(n) for n in facts.norms) if node.parts else node.key in facts.norms
    if isinstance(node, GroupTerm):
        members = set(group_norms(node.name)) if group_norms else set()
        return bool(members & facts.norms)
    if isinstance(node, CaptionTerm):
        return node.type in facts.caption_types
    if isinstance(node, SourceTerm):
        return any(node.matches(s) for s in facts.tag_sources)
    if isinstance(node, CompareTerm) and node.field in CAPTION_COUNT_FIELDS:
        count = len if node.field == "chars" else _counters.get(node.field)
        if count is None:
            raise QueryError(f"'{node.field}:' needs the tokenizer (import sushitui.check)", node.position)
        return any(
            {
                "=": c == node.value,
                ">": c > node.value,
                ">=": c >= node.value,
                "<": c < node.value,
                "<=": c <= node.value,
            }[node.op]
            for c in (count(t) for t in facts.captions)
        )
    if isinstance(node, DupTerm):
        return bool(facts.duplicate) if node.kind == "any" else node.kind in facts.duplicate
    if isinstance(node, CheckTerm):
        return any(node.matches(code, sev) for code, sev in facts.findings)
    if isinstance(node, FlagTerm):
        return bool(facts.flags) if node.flag == "any" else node.flag in facts.flags
    if isinstance(node, CompareTerm):
        value: Any = {"width": facts.width, "height": facts.height, "tags": facts.tag_count, "rating": facts.rating}[
            node.field
        ]
        if value is None:
            return False
        return {
            "=": value == node.value,
            ">": value > node.value,
            ">=": value >= node.value,
            "<": value < node.value,
            "<=": value <= node.value,
        }[node.op]
    if isinstance(node, Not):
        return not evaluate(node.child, facts, group_norms)
    if isinstance(node, And):
        return all(evaluate(c, facts, group_norms) for c in node.children)
    if isinstance(node, Or):
        return any(evaluate(c, facts, group_norms) for c in node.children)
    raise TypeError(node)
