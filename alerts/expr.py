"""Boolean keyword expressions for watch-lists (关键词方案): 地域词 AND 事件词 NOT 排除词.

Grammar (NOT binds tighter than AND, AND tighter than OR)::

    expr   := and ( OR and )*
    and    := unary ( AND unary )*
    unary  := NOT unary | atom
    atom   := TERM | "quoted phrase" | ( expr )

Operators: ``&``/``AND``/``且`` · ``|``/``OR``/``或`` · ``!``/``NOT``/``非``
(full-width ``＆ ｜ ！ （ ）`` too).
The word operators (AND, 且, ...) only count when they stand alone between spaces or brackets, so
``非法集资`` and ``或者`` stay ordinary terms. Two terms side by side with no operator are an error
rather than a guessed AND: an analyst's typo should be reported, not silently reinterpreted.
Phrases in ``"…"``, ``'…'``, ``“…”`` or ``「…」`` may contain spaces and operator characters.

A term matches when it is a substring of the text after both are normalised the same way
(NFKC, traditional → simplified, casefolded), so ``Ａ3区`` finds ``A3区`` and ``爆炸`` finds ``爆炸``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

from analyze.normalize import normalize

MAX_LENGTH = 4000  # characters; a watch-list longer than this is a mistake, not a plan
MAX_DEPTH = 64  # nesting of brackets/NOTs; keeps recursion far from Python's limit

_AND_WORDS = {"and", "且"}
_OR_WORDS = {"or", "或"}
_NOT_WORDS = {"not", "非"}
_SYMBOLS = {"&": "AND", "＆": "AND", "|": "OR", "｜": "OR", "!": "NOT", "！": "NOT",
            "(": "LP", "（": "LP", ")": "RP", "）": "RP"}
_QUOTES = {'"': '"', "'": "'", "“": "”", "「": "」", "『": "』", "‘": "’"}
_DESCRIBE = {"AND": "'&'", "OR": "'|'", "NOT": "'!'", "LP": "'('", "RP": "')'", "END": "the end"}


class ExpressionError(ValueError):
    """A watch-list expression that cannot be parsed; ``position`` is the 0-based character offset."""

    def __init__(self, message: str, *, expression: str, position: int) -> None:
        shown = expression if len(expression) <= 120 else expression[:117] + "..."
        super().__init__(f"bad expression at position {position}: {message} (in {shown!r})")
        self.position = position
        self.expression = expression
        self.detail = message


def normalise_text(text: str) -> str:
    """The form both terms and texts are compared in."""
    return normalize(text).casefold()


# ---------------------------------------------------------------- syntax tree


@dataclass(frozen=True)
class Term:
    """A word or phrase; true when it occurs in the text."""

    text: str  # normalised
    raw: str = ""  # as written, for messages

    def evaluate(self, text: str) -> bool:
        """True if the term is a substring of the (normalised) text."""
        return self.text in text

    def terms(self) -> Iterator[tuple[Term, bool]]:
        """(term, positive) pairs; positive is False under an odd number of NOTs."""
        yield self, True


@dataclass(frozen=True)
class Not:
    """Negation."""

    operand: Node

    def evaluate(self, text: str) -> bool:
        """True if the operand is false."""
        return not self.operand.evaluate(text)

    def terms(self) -> Iterator[tuple[Term, bool]]:
        """(term, positive) pairs with polarity flipped."""
        for term, positive in self.operand.terms():
            yield term, not positive


@dataclass(frozen=True)
class And:
    """Conjunction of two or more operands."""

    operands: tuple[Node, ...]

    def evaluate(self, text: str) -> bool:
        """True if every operand is true."""
        return all(op.evaluate(text) for op in self.operands)

    def terms(self) -> Iterator[tuple[Term, bool]]:
        """(term, positive) pairs of all operands."""
        for op in self.operands:
            yield from op.terms()


@dataclass(frozen=True)
class Or:
    """Disjunction of two or more operands."""

    operands: tuple[Node, ...]

    def evaluate(self, text: str) -> bool:
        """True if any operand is true."""
        return any(op.evaluate(text) for op in self.operands)

    def terms(self) -> Iterator[tuple[Term, bool]]:
        """(term, positive) pairs of all operands."""
        for op in self.operands:
            yield from op.terms()


Node = Term | Not | And | Or


@dataclass(frozen=True)
class Expression:
    """A parsed expression: evaluate it against raw text, or list the positive terms that hit."""

    source: str
    root: Node

    def matches(self, text: str, *, normalised: bool = False) -> bool:
        """True if the text satisfies the expression (pass ``normalised=True`` for normalise_text output)."""
        return self.root.evaluate(text if normalised else normalise_text(text))

    def hits(self, text: str, *, normalised: bool = False) -> list[str]:
        """The positive terms (as written) found in the text, in expression order, without repeats."""
        norm = text if normalised else normalise_text(text)
        seen: list[str] = []
        for term, positive in self.root.terms():
            if positive and term.text in norm and (term.raw or term.text) not in seen:
                seen.append(term.raw or term.text)
        return seen

    def terms(self) -> list[str]:
        """All distinct terms of the expression, as written."""
        return list(dict.fromkeys(term.raw or term.text for term, _ in self.root.terms()))


# ---------------------------------------------------------------- tokenizer


@dataclass(frozen=True)
class _Token:
    kind: str  # TERM | AND | OR | NOT | LP | RP | END
    value: str
    pos: int


def _tokenize(source: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(source)
    while i < n:
        ch = source[i]
        if ch.isspace():
            i += 1
            continue
        if ch in _SYMBOLS:
            tokens.append(_Token(_SYMBOLS[ch], ch, i))
            i += 1
            continue
        if ch in _QUOTES:
            close = source.find(_QUOTES[ch], i + 1)
            if close < 0:
                raise ExpressionError(f"quote {ch} is never closed", expression=source, position=i)
            phrase = source[i + 1 : close]
            if not normalise_text(phrase):
                raise ExpressionError("empty quoted phrase", expression=source, position=i)
            tokens.append(_Token("TERM", phrase, i))
            i = close + 1
            continue
        start = i
        while i < n and not source[i].isspace() and source[i] not in _SYMBOLS and source[i] not in _QUOTES:
            i += 1
        word = source[start:i]
        lowered = word.casefold()
        if lowered in _AND_WORDS:
            tokens.append(_Token("AND", word, start))
        elif lowered in _OR_WORDS:
            tokens.append(_Token("OR", word, start))
        elif lowered in _NOT_WORDS:
            tokens.append(_Token("NOT", word, start))
        elif not normalise_text(word):
            # Only invisible/control characters: nothing that could ever match.
            raise ExpressionError(
                f"term {word!r} is empty after normalisation", expression=source, position=start
            )
        else:
            tokens.append(_Token("TERM", word, start))
    tokens.append(_Token("END", "", n))
    return tokens


# ---------------------------------------------------------------- parser


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source
        self.tokens = _tokenize(source)
        self.i = 0
        self.depth = 0

    def _peek(self) -> _Token:
        return self.tokens[self.i]

    def _fail(self, token: _Token, expected: str) -> ExpressionError:
        found = "the end of the expression" if token.kind == "END" else repr(token.value)
        return ExpressionError(
            f"expected {expected} but found {found}", expression=self.source, position=token.pos
        )

    def parse(self) -> Node:
        if self._peek().kind == "END":
            raise ExpressionError("the expression is empty", expression=self.source, position=0)
        node = self._or()
        token = self._peek()
        if token.kind in ("TERM", "LP", "NOT"):
            raise ExpressionError(
                f"missing operator before {token.value!r} (use & or |, or quote a phrase with spaces)",
                expression=self.source,
                position=token.pos,
            )
        if token.kind != "END":
            what = "')' without a matching '('" if token.kind == "RP" else f"unexpected {token.value!r}"
            raise ExpressionError(what, expression=self.source, position=token.pos)
        return node

    def _or(self) -> Node:
        operands = [self._and()]
        while self._peek().kind == "OR":
            self.i += 1
            operands.append(self._and())
        return operands[0] if len(operands) == 1 else Or(tuple(operands))

    def _and(self) -> Node:
        operands = [self._unary()]
        while self._peek().kind == "AND":
            self.i += 1
            operands.append(self._unary())
        return operands[0] if len(operands) == 1 else And(tuple(operands))

    def _unary(self) -> Node:
        token = self._peek()
        if token.kind == "NOT":
            self.i += 1
            with self._nested(token):
                return Not(self._unary())
        return self._atom()

    def _atom(self) -> Node:
        token = self._peek()
        if token.kind == "TERM":
            self.i += 1
            return Term(normalise_text(token.value), token.value)
        if token.kind == "LP":
            self.i += 1
            with self._nested(token):
                node = self._or()
            closing = self._peek()
            if closing.kind != "RP":
                if closing.kind == "END":
                    raise ExpressionError("'(' is never closed", expression=self.source, position=token.pos)
                raise self._fail(closing, "')' or an operator")
            self.i += 1
            return node
        raise self._fail(token, "a term, '!' or '('")

    def _nested(self, token: _Token) -> _Depth:
        return _Depth(self, token)


class _Depth:
    def __init__(self, parser: _Parser, token: _Token) -> None:
        self.parser = parser
        self.token = token

    def __enter__(self) -> None:
        self.parser.depth += 1
        if self.parser.depth > MAX_DEPTH:
            raise ExpressionError(
                f"nested more than {MAX_DEPTH} levels deep",
                expression=self.parser.source,
                position=self.token.pos,
            )

    def __exit__(self, *exc: object) -> None:
        self.parser.depth -= 1


def parse(source: str) -> Expression:
    """Parse an expression; raises ExpressionError (a ValueError) naming the position of the problem."""
    if not isinstance(source, str):
        raise ExpressionError(
            f"expected text, got {type(source).__name__}", expression=str(source), position=0
        )
    return _parse(source)


@lru_cache(maxsize=512)
def _parse(source: str) -> Expression:
    if len(source) > MAX_LENGTH:
        raise ExpressionError(
            f"longer than {MAX_LENGTH} characters", expression=source, position=MAX_LENGTH
        )
    return Expression(source=source, root=_Parser(source).parse())


def validate(source: str) -> str | None:
    """None when the expression parses, else the error message (for the watch-list editor)."""
    try:
        parse(source)
    except ExpressionError as exc:
        return str(exc)
    return None
