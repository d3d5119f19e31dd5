"""Watch-list expressions: parsing, precedence, operators in three spellings, errors with positions."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alerts.expr import MAX_DEPTH, And, ExpressionError, Not, Or, Term, parse, validate


@pytest.mark.parametrize(
    ("expr", "text", "expected"),
    [
        ("(A3区 | A4区) & (爆炸 | 起火 | 泄漏) & !演习", "A3区化工厂发生爆炸", True),
        ("(A3区 | A4区) & (爆炸 | 起火 | 泄漏) & !演习", "A4区仓库起火", True),
        ("(A3区 | A4区) & (爆炸 | 起火 | 泄漏) & !演习", "A3区消防爆炸演习", False),
        ("(A3区 | A4区) & (爆炸 | 起火 | 泄漏) & !演习", "A5区化工厂爆炸", False),
        ("(A3区 | A4区) & (爆炸 | 起火 | 泄漏) & !演习", "A3区道路施工", False),
        # Normalisation: full-width letters, traditional characters, case.
        ("A3区 & 爆炸", "Ａ3區化工廠發生爆炸", True),
        ("wifi & 断网", "小区WiFi又断网了", True),
    ],
)
def test_evaluates_the_documented_example(expr: str, text: str, expected: bool) -> None:
    assert parse(expr).matches(text) is expected


def test_not_binds_tighter_than_and_and_and_tighter_than_or() -> None:
    tree = parse("a | b & !c").root
    assert tree == Or((Term("a", "a"), And((Term("b", "b"), Not(Term("c", "c"))))))
    assert parse("a | b & !c").matches("a c") is True  # a alone is enough
    assert parse("a | b & !c").matches("b c") is False
    assert parse("(a | b) & !c").matches("a c") is False  # parentheses change it


@pytest.mark.parametrize(
    "expr",
    [
        "(A3区 | A4区) & 爆炸 & !演习",
        "(A3区 OR A4区) AND 爆炸 AND NOT 演习",
        "(A3区 or A4区) and 爆炸 and not 演习",
        "(A3区 或 A4区) 且 爆炸 且 非 演习",
        "（A3区 ｜ A4区） ＆ 爆炸 ＆ ！演习",
    ],
)
def test_operator_spellings_are_equivalent(expr: str) -> None:
    reference = parse("(A3区 | A4区) & 爆炸 & !演习")
    assert parse(expr).root == reference.root


def test_chinese_operator_characters_inside_words_are_plain_text() -> None:
    # 非法集资 and 或者 contain 非/或 but are terms, not operators.
    expression = parse("非法集资 | 或者")
    assert expression.terms() == ["非法集资", "或者"]
    assert expression.matches("举报非法集资") is True
    assert expression.matches("合法经营") is False


def test_quoted_phrases_keep_spaces_and_operator_characters() -> None:
    assert parse('"fire drill" & !"A & B"').matches("the fire drill at A") is True
    assert parse('"fire drill" & !"A & B"').matches("the fire drill at A & B") is False
    assert parse("“大 火” | 「泄漏」").matches("昨夜大 火") is True
    assert parse('"fire drill"').matches("fire  drill") is True  # spaces tidied on both sides


def test_hits_lists_only_positive_terms_found() -> None:
    expression = parse("(A3区 | A4区) & (爆炸 | 起火) & !演习")
    assert expression.hits("A3区工厂起火后爆炸") == ["A3区", "爆炸", "起火"]
    assert parse("!演习 & 起火").hits("起火") == ["起火"]


@pytest.mark.parametrize(
    ("expr", "at", "fragment"),
    [
        ("", "", "empty"),
        ("   ", "", "empty"),
        ("A3区 &", "END", "expected a term"),
        ("A3区 & | 爆炸", "|", "expected a term"),
        ("(A3区 | A4区", "(", "never closed"),
        ("A3区 | A4区)", ")", "without a matching"),
        ("A3区 爆炸", "爆炸", "missing operator before '爆炸'"),
        ('爆炸 & "未闭合', '"', "never closed"),
        ("爆炸 & ()", ")", "expected a term"),
        ("& 爆炸", "&", "expected a term"),
        ("爆炸 & 非", "END", "expected a term"),
        ('爆炸 | ""', '"', "empty quoted phrase"),
        ("(爆炸) (起火)", " (", "missing operator before '('"),
        ("(爆炸 起火)", "起火", "expected ')' or an operator"),
    ],
)
def test_errors_name_the_position(expr: str, at: str, fragment: str) -> None:
    # ``at`` marks the offending spot: a substring (a leading space is skipped), END, or "" for 0.
    position = len(expr) if at == "END" else (expr.index(at) + len(at) - len(at.lstrip()) if at else 0)
    with pytest.raises(ExpressionError) as info:
        parse(expr)
    assert info.value.position == position
    assert fragment in str(info.value)
    assert f"position {position}" in str(info.value)
    assert isinstance(info.value, ValueError)
    assert validate(expr) == str(info.value)


def test_validate_returns_none_for_a_good_expression() -> None:
    assert validate("A3区 & 爆炸") is None


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    deep = "(" * (MAX_DEPTH + 5) + "a" + ")" * (MAX_DEPTH + 5)
    with pytest.raises(ExpressionError, match="nested more than"):
        parse(deep)
    with pytest.raises(ExpressionError, match="nested more than"):
        parse("!" * (MAX_DEPTH + 1) + "a")
    assert parse("(" * 10 + "a" + ")" * 10).matches("a")


def test_overlong_and_non_text_input_are_errors() -> None:
    with pytest.raises(ExpressionError, match="longer than"):
        parse("a | " * 2000 + "a")
    with pytest.raises(ExpressionError, match="expected text"):
        parse(42)  # type: ignore[arg-type]


# ------------------------------------------------------------------ property tests

_WORDS = st.sampled_from(["A3区", "爆炸", "起火", "演习", "非法集资", "x", "WiFi"])


def _tree() -> st.SearchStrategy[object]:
    leaf = _WORDS.map(lambda w: ("term", w))
    return st.recursive(
        leaf,
        lambda children: st.one_of(
            children.map(lambda c: ("not", c)),
            st.tuples(st.just("and"), children, children),
            st.tuples(st.just("or"), children, children),
        ),
        max_leaves=12,
    )


def _render(node: object, style: int) -> str:
    kind = node[0]  # type: ignore[index]
    ops = [("&", "|", "!"), (" AND ", " OR ", "NOT "), (" 且 ", " 或 ", "非 ")][style]
    if kind == "term":
        return str(node[1])  # type: ignore[index]
    if kind == "not":
        return f"{ops[2]}({_render(node[1], style)})"  # type: ignore[index]
    op = ops[0] if kind == "and" else ops[1]
    return f"({_render(node[1], style)}{op}{_render(node[2], style)})"  # type: ignore[index]


def _truth(node: object, text: str) -> bool:
    kind = node[0]  # type: ignore[index]
    if kind == "term":
        return str(node[1]).casefold() in text.casefold()  # type: ignore[index]
    if kind == "not":
        return not _truth(node[1], text)  # type: ignore[index]
    left, right = _truth(node[1], text), _truth(node[2], text)  # type: ignore[index]
    return (left and right) if kind == "and" else (left or right)


@settings(max_examples=150, deadline=None)
@given(tree=_tree(), style=st.integers(0, 2), words=st.lists(_WORDS, max_size=5))
def test_rendered_trees_parse_and_evaluate_like_the_reference(tree: object, style: int, words: list[str]) -> None:
    text = "，".join(words)
    assert parse(_render(tree, style)).matches(text) is _truth(tree, text)


@settings(max_examples=150, deadline=None)
@given(
    source=st.lists(
        st.sampled_from([*"()（）&|!！＆｜ \"'“”「」abA3区爆炸非或且", " AND ", " OR ", " NOT ", "not"]), max_size=30
    ).map("".join),
    text=st.text(max_size=30),
)
def test_random_expressions_never_crash(source: str, text: str) -> None:
    try:
        expression = parse(source)
    except ExpressionError as exc:
        assert 0 <= exc.position <= len(source)
        return
    assert isinstance(expression.matches(text), bool)
    assert all(isinstance(t, str) for t in expression.hits(text))


@settings(max_examples=200, deadline=None)
@given(source=st.text(max_size=60))
def test_arbitrary_unicode_never_crashes_the_parser(source: str) -> None:
    try:
        expression = parse(source)
    except ExpressionError as exc:
        assert 0 <= exc.position <= len(source)
        return
    assert isinstance(expression.matches(source), bool)
