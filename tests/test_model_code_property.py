"""Random programs: convc evaluates them as Python does.

Hypothesis writes random expressions and random programs (assignments, augmented assignments,
item assignments, ``if``, ``for`` with ``break`` and ``continue``, ``def`` and calls, list and
dict methods, comprehensions, f-strings, ``%`` and ``str.format``) over numbers, strings, None,
tuples, lists and dicts. Python runs each text (the oracle: the test's own text, ``exec``);
convc runs it too. Where Python succeeds, convc must leave every name bound to the same value
of the same type, or refuse with one of its bounds (a located error that says so); where Python
raises, convc must raise a located ``ConvcError``; anything else from convc is a bug. The test
counts each outcome, so that a generator that only produced refusals would fail.
"""

from __future__ import annotations

import math
import re
import warnings
from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from convc.diagnostics import ConvcError
from convc.evaluate import evaluate_text

NAMES = ("a", "b", "c", "d", "e", "f")
PRELUDE = "a = 3\nb = 'xy'\nc = [1, 2, 3]\nd = {'k': 1, 'j': 'v'}\ne = 2.5\nf = (1, 'z', None)\n"
"""Every program starts with each name bound, so that most programs run."""

BOUNDS = re.compile(
    r"digits|complex number|would have|width or precision|nests more|evaluation steps|"
    r"makes more than|depends on the machine's locale|longer than"
)
"""The words of convc's refusals for its bounds (a program Python runs but convc bounds)."""

ints = st.integers(-20, 50).map(str)
floats = st.sampled_from(
    ["0.5", "2.0", "-1.25", "1e-3", "3.0e2", "0.1", "float('inf')", "float('nan')"]
)
strings = st.sampled_from(["''", "'a'", "'xy'", "'Conv'", "'a_b'", "'12'", "' s '", "'é'"])
constants = st.one_of(ints, floats, strings, st.sampled_from(["True", "False", "None"]))
names = st.sampled_from(NAMES)
small = st.integers(0, 4).map(str)


def _binary(children):
    operators = ["+", "-", "*", "/", "//", "%", "==", "!=", "<", "<=", ">", ">=", "and", "or",
                 "&", "|", "^", "in", "not in"]  # fmt: skip
    return st.one_of(
        st.tuples(children, st.sampled_from(operators), children).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})"
        ),
        st.tuples(children, small).map(lambda t: f"({t[0]} ** {t[1]})"),
        st.tuples(children, st.sampled_from(["<<", ">>"]), small).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})"
        ),
    )


def _unary(children):
    return st.tuples(st.sampled_from(["-", "+", "not ", "~"]), children).map(
        lambda t: f"({t[0]}{t[1]})"
    )


def _displays(children):
    items = st.lists(children, max_size=3)
    return st.one_of(
        items.map(lambda xs: "[" + ", ".join(xs) + "]"),
        items.map(lambda xs: "(" + "".join(x + ", " for x in xs) + ")"),
        st.lists(st.tuples(st.one_of(strings, ints), children), max_size=3).map(
            lambda kv: "{" + ", ".join(f"{k}: {v}" for k, v in kv) + "}"
        ),
    )


def _subscripts(children):
    index = st.one_of(ints, children)
    part = st.one_of(st.just(""), ints)
    return st.one_of(
        st.tuples(children, index).map(lambda t: f"{t[0]}[{t[1]}]"),
        st.tuples(children, part, part).map(lambda t: f"{t[0]}[{t[1]}:{t[2]}]"),
        st.tuples(children, part, st.sampled_from(["1", "-1", "2", "-2"])).map(
            lambda t: f"{t[0]}[{t[1]}::{t[2]}]"
        ),
    )


BUILTINS_1 = ["len", "abs", "str", "int", "float", "bool", "list", "tuple", "sorted", "min",
              "max", "sum", "round", "repr", "any", "all"]  # fmt: skip
METHODS = ["upper()", "lower()", "split('_')", "strip()", "count('a')", "index(1)", "get('k')",
           "get('q', 0)", "startswith('C')", "replace('a', 'bb')", "keys()", "values()",
           "items()", "copy()", "find('y')", "title()", "zfill(4)", "isdigit()"]  # fmt: skip


def _calls(children):
    return st.one_of(
        st.tuples(st.sampled_from(BUILTINS_1), children).map(lambda t: f"{t[0]}({t[1]})"),
        st.tuples(st.sampled_from(["min", "max", "round", "divmod", "pow", "isinstance"]),
                  children, children).map(
            lambda t: f"{t[0]}({t[1]}, {t[2] if t[0] != 'isinstance' else 'int'})"
        ),
        st.tuples(children, small).map(lambda t: f"pow({t[0]}, {t[1]})"),
        st.tuples(st.sampled_from(["list(enumerate({}))", "list(zip({}, 'abc'))",
                                   "list(reversed({}))", "list(range({}))",
                                   "sorted({}, reverse=True)", "list(map(str, {}))"]),
                  children).map(lambda t: t[0].format(t[1])),
        st.tuples(children, st.sampled_from(METHODS)).map(lambda t: f"{t[0]}.{t[1]}"),
        st.tuples(st.sampled_from(["isinstance({}, (int, float))", "isinstance({}, str)",
                                   "isinstance({}, (list, tuple))", "dict({})"]),
                  children).map(lambda t: t[0].format(t[1])),
    )  # fmt: skip


def _text(children):
    specs = st.sampled_from(["", ":>4", ":03d", ":.2f", ":x", ":+", ":^5", "!r", ":,", ":e"])
    return st.one_of(
        st.tuples(children, specs, children).map(lambda t: f"f'<{{{t[0]}{t[1]}}}|{{{t[2]}}}>'"),
        st.tuples(st.sampled_from(["'%s'", "'%d-%s'", "'%5.1f'", "'%r|%x'", "'%-4s|'"]),
                  children, children).map(
            lambda t: f"({t[0]} % ({t[1]},{' ' + t[2] if t[0].count('%') > 1 else ''}))"
        ),
        st.tuples(st.sampled_from(["'{}'", "'{0}-{0}'", "'{:>3}'", "'{!r}'", "'{0[0]}'"]),
                  children).map(lambda t: f"{t[0]}.format({t[1]})"),
    )  # fmt: skip


def _comprehensions(children):
    iterables = st.one_of(names, st.just("range(4)"), st.just("'abc'"), children)
    return st.one_of(
        st.tuples(children, iterables, children).map(
            lambda t: f"[({t[0]}, v) for v in {t[1]} if {t[2]}]"
        ),
        st.tuples(children, iterables).map(lambda t: f"{{str(v): {t[0]} for v in {t[1]}}}"),
        st.tuples(iterables).map(lambda t: f"sum(1 for v in {t[0]})"),
    )


def _conditional(children):
    return st.tuples(children, children, children).map(lambda t: f"({t[0]} if {t[1]} else {t[2]})")


expressions = st.recursive(
    st.one_of(constants, names),
    lambda children: st.one_of(
        _binary(children),
        _unary(children),
        _displays(children),
        _subscripts(children),
        _calls(children),
        _text(children),
        _comprehensions(children),
        _conditional(children),
    ),
    max_leaves=8,
)


numbers = st.recursive(
    st.one_of(st.integers(-30, 30).map(str), floats, st.sampled_from(["a", "e", "True"])),
    lambda children: st.one_of(
        st.tuples(children, st.sampled_from(["+", "-", "*", "/", "//", "%"]), children).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})"
        ),
        st.tuples(children, st.sampled_from(["0", "1", "2", "3", "-1", "0.5"])).map(
            lambda t: f"({t[0]} ** {t[1]})"
        ),
        st.tuples(st.sampled_from(["abs", "int", "float", "round", "bool", "-"]), children).map(
            lambda t: f"{t[0]}({t[1]})"
        ),
        st.tuples(st.sampled_from(["min", "max", "divmod", "round"]), children, children).map(
            lambda t: f"{t[0]}({t[1]}, int({t[2]}) % 4 if {t[0]!r} == 'round' else {t[2]})"
        ),
        st.tuples(children, st.sampled_from(["<", "<=", "==", "!="]), children).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})"
        ),
    ),
    max_leaves=6,
)


# Programs: each name keeps one type (a and n ints, b a string, c a list, d a dict), so that
# most random programs run to the end and their values are compared

small_ints = st.integers(-5, 12).map(str)
int_names = st.sampled_from(["a", "n", "len(b)", "len(c)", "len(d)"])
typed_ints = st.recursive(
    st.one_of(small_ints, int_names),
    lambda children: st.one_of(
        st.tuples(children, st.sampled_from(["+", "-", "*", "//", "%"]), children).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})"
        ),
        st.tuples(children, children).map(lambda t: f"max({t[0]}, {t[1]})"),
        st.tuples(children, children, children).map(
            lambda t: f"({t[0]} if {t[1]} > {t[2]} else {t[2]})"
        ),
        children.map(lambda x: f"abs({x})"),
        children.map(lambda x: f"sum(range({x} % 5))"),
    ),
    max_leaves=5,
)
typed_strings = st.recursive(
    st.one_of(strings, st.just("b")),
    lambda children: st.one_of(
        st.tuples(children, children).map(lambda t: f"({t[0]} + {t[1]})"),
        typed_ints.map(lambda x: f"str({x})"),
        st.tuples(children, typed_ints).map(lambda t: f"f'{{{t[0]}}}_{{{t[1]}:02d}}'"),
        st.tuples(children, typed_ints).map(lambda t: f"'%s-%d' % ({t[0]}, {t[1]})"),
        children.map(lambda x: f"{x}.upper()"),
        st.tuples(children, children).map(lambda t: f"'_'.join([{t[0]}, {t[1]}])"),
        st.tuples(children, children).map(lambda t: f"'{{}}{{}}'.format({t[0]}, {t[1]})"),
    ),
    max_leaves=4,
)
typed_lists = st.one_of(
    st.lists(typed_ints, max_size=3).map(lambda xs: "[" + ", ".join(xs) + "]"),
    typed_ints.map(lambda x: f"list(range({x} % 6))"),
    typed_ints.map(lambda x: f"[v * {x} for v in c if v % 2 == 0]"),
    st.just("c + [n]"),
    st.just("sorted(c, reverse=True)"),
    st.just("c[1:] + c[:1]"),
)
typed_targets = {
    "a": typed_ints,
    "n": typed_ints,
    "b": typed_strings,
    "c": typed_lists,
}
TYPED_PRELUDE = "a = 3\nn = 7\nb = 'xy'\nc = [1, 2, 3]\nd = {'k': 1, 'j': 2}\n"


def _indent(lines: list[str]) -> list[str]:
    return ["    " + line for line in lines]


@st.composite
def statements(draw, depth: int = 0) -> list[str]:
    kinds = ["assign", "assign", "augment", "item", "method", "dict"]
    kind = draw(st.sampled_from(kinds + (["if", "for", "def"] if depth < 2 else [])))
    name = draw(st.sampled_from(sorted(typed_targets)))
    value = draw(typed_targets[name])
    number = draw(typed_ints)
    if kind == "assign":
        return [f"{name} = {value}"]
    if kind == "augment":
        op = "+=" if name in "bc" else draw(st.sampled_from(["+=", "-=", "*=", "//=", "%="]))
        return [f"{name} {op} {value}"]
    if kind == "item":
        return ["c.append(0)", f"c[{number} % len(c)] = {number}"]
    if kind == "method":
        call = draw(st.sampled_from(["c.append({})", "c.extend([{}, 1])", "c.insert(0, {})",
                                     "c.remove(c[0])", "c.sort()", "c.reverse()",
                                     "n = c.count({})", "n = c.pop()", "c.append(0)"]))  # fmt: skip
        return [call.format(number)]
    if kind == "dict":
        key = draw(typed_strings)
        return draw(st.sampled_from([
            [f"d[{key}] = {number}"],
            [f"n = d.get({key}, {number})"],
            [f"d.update({{{key}: {number}}})"],
            [f"d = {{k: v + {number} for k, v in d.items()}}"],
        ]))  # fmt: skip
    body = draw(st.lists(statements(depth + 1), min_size=1, max_size=3))
    flat = [line for block in body for line in block]
    condition = f"{draw(typed_ints)} {draw(st.sampled_from(['<', '==', '>=', '!=']))} {number}"
    if kind == "if":
        other = draw(st.lists(statements(depth + 1), max_size=2))
        lines = [f"if {condition}:", *_indent(flat)]
        if other:
            lines += ["elif a in c:" if draw(st.booleans()) else "else:"]
            lines += _indent([line for block in other for line in block])
        return lines
    if kind == "for":
        variable = draw(st.sampled_from(["a", "n", "i"]))
        iterable = draw(st.sampled_from(["range(3)", "c[:4]", "[1, 5, 2]", f"range({number} % 4)"]))
        control = draw(st.sampled_from(["", "break", "continue"]))
        guard = [f"if {condition}:", f"    {control}"] if control else []
        loop = [f"for {variable} in {iterable}:", *_indent(guard + flat)]
        return loop + (["else:", "    n += 100"] if draw(st.booleans()) else [])
    # a function: its parameters shadow module names, its body rebinds them locally
    return [
        f"def g_{depth}(a, b='p', *rest, n=1, **options):",
        *_indent(flat),
        "    return a + n + len(b) + len(rest) + len(options)",
        f"n = g_{depth}({draw(typed_ints)}, {draw(typed_strings)}, 1, 2, n={number}, z=0)",
    ]


programs = st.lists(statements(), min_size=1, max_size=5).map(
    lambda blocks: TYPED_PRELUDE + "".join(line + "\n" for block in blocks for line in block)
)


def _same(mine, theirs) -> bool:
    if isinstance(theirs, float) and isinstance(mine, float):
        return (math.isnan(mine) and math.isnan(theirs)) or repr(mine) == repr(theirs)
    return repr(mine) == repr(theirs) and type(mine) is type(theirs)


def outcome(text: str) -> str:
    """'equal', 'both-raise' or 'bounded', or an AssertionError that says how convc differs."""
    python: dict = {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Python's warnings about odd random code
            exec(compile(text, "<random>", "exec"), python)  # noqa: S102 - the test's own text
        python_error = None
    except Exception as error:  # noqa: BLE001 - any error Python raises is an expected outcome
        python_error = error
    try:
        values = evaluate_text(text)
        convc_error = None
    except ConvcError as error:
        convc_error = error
        assert error.span is not None, f"an error without a place: {error.message}\n{text}"
    if python_error is not None:
        assert convc_error is not None, f"Python raises {python_error!r}; convc does not\n{text}"
        return "both-raise"
    if convc_error is not None:
        assert BOUNDS.search(convc_error.message), (
            f"convc raises {convc_error.message!r} where Python runs\n{text}"
        )
        return "bounded"
    for name, value in python.items():
        if name.startswith("__") or callable(value) or type(value).__name__.endswith("iterator"):
            continue
        assert _same(values[name], value), (
            f"{name}: convc {values[name]!r}, Python {value!r}\n{text}"
        )
    return "equal"


def _run(strategy, examples: int) -> Counter:
    outcomes: Counter = Counter()

    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def check(text):
        outcomes[outcome(text)] += 1

    check()
    return outcomes


def test_random_expressions_evaluate_as_in_python():
    outcomes = _run(expressions.map(lambda e: PRELUDE + f"result = {e}\n"), 2500)
    total = sum(outcomes.values())
    assert outcomes["equal"] >= 0.35 * total, outcomes
    assert outcomes["both-raise"] >= 0.05 * total, outcomes
    assert outcomes["bounded"] <= 0.02 * total, outcomes


def test_random_arithmetic_evaluates_as_in_python():
    outcomes = _run(numbers.map(lambda e: PRELUDE + f"result = {e}\n"), 2500)
    total = sum(outcomes.values())
    assert outcomes["equal"] >= 0.7 * total, outcomes
    assert outcomes["both-raise"] >= 0.02 * total, outcomes
    assert outcomes["bounded"] <= 0.02 * total, outcomes


def test_random_programs_run_as_in_python():
    outcomes = _run(programs, 1500)
    total = sum(outcomes.values())
    assert outcomes["equal"] >= 0.6 * total, outcomes
    assert outcomes["both-raise"] >= 0.02 * total, outcomes
    assert outcomes["bounded"] <= 0.02 * total, outcomes
