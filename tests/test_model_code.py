"""Keras model code as people write it: the hermetic Python subset of ``.conv`` programs.

Python is the oracle. Each program of ``PROGRAMS`` is run by convc's evaluator and by Python
itself (``exec`` of the test's own text), and every value the program leaves bound must be the
same, type and all. Each model of ``MODELS`` is a Keras program (loops, functions, configuration
dicts, comprehensions, f-strings, static shapes) that Keras runs as Python and convc compiles:
outputs, layer names and parameter counts must agree. The errors are located, through calls;
the bounds (steps, sizes, digits, nesting, recursion) are enforced, each with a located error.
"""

from __future__ import annotations

import types

import pytest

from convc.compiler import compile_text, resolve_text
from convc.diagnostics import ConvcError, errors_of, render
from convc.evaluate import Evaluator, evaluate_text
from convc.syntax import Apply, Assign, Call, Directive, For, Literal, parse

# ---------------------------------------------------------------------------------------------
# Programs: convc's evaluation against Python's


def program(id_: str, text: str):
    return pytest.param(text.strip() + "\n", id=id_)


PROGRAMS = [
    program(
        "names-and-arithmetic",
        """
a = 7
b = a // 2 + a % 3 - 2 ** 3 * -1
c = a / 2
d = (a + 1) * (b - 1) ** 2
e = -a ** 2
f = 2 ** -2
g = 17 % -5, -17 // 5, 7.5 // 2, 1e3 % 7
h = True + True, 3 << 4, 1000 >> 3, 6 & 3, 6 | 3, 6 ^ 3, ~6
a = a + 1
""",
    ),
    program(
        "comparisons-and-logic",
        """
x = 5
a = 1 < x <= 5 < 9
b = x == 5.0, x != 5, "a" < "b", (1, 2) < (1, 3), [1, 2] == [1, 2]
c = x in [1, 5], "ell" in "hello", 3 not in {1: 2}, None is None, x is not None
d = x > 3 and "big" or "small"
e = [] or {} or 0 or "last"
f = not x, not [], 0 and 1 / 0
g = "yes" if x % 2 else "no"
""",
    ),
    program(
        "sequences",
        """
t = (1, 2, 3)
l = [4, 5, 6, 7]
u = t + (4,), l + [8], t * 2, 2 * [0], "ab" * 3
i = t[0], l[-1], l[1:3], l[::-1], l[::2], "hello"[1:-1], t[5:]
m = len(t), len(l), len("abc"), len({}), len(range(3, 10, 2))
n = [[1, 2], [3]][0][1]
l[0] = 40
l[1:3] = [50]
single = (1,)
empty = ()
nested = ((1, 2), [3, (4, 5)])
""",
    ),
    program(
        "dicts",
        """
d = {"filters": 8, "kernel": 3}
d["strides"] = 2
e = {**d, "kernel": 5}
f = d.get("padding", "same"), d.get("filters"), d["kernel"]
keys = list(d.keys()), list(d.values()), list(d.items())
g = dict(a=1, b=2)
h = dict([("x", 1), ("y", 2)])
d.update(padding="valid")
p = d.pop("strides")
s = d.setdefault("groups", 1)
t = {(1, 2): "tuple key", 3: "int key"}[(1, 2)]
u = "filters" in d, len(d)
""",
    ),
    program(
        "unpacking-and-augmented",
        """
a, b = 1, 2
a, b = b, a
(c, d), e = (3, 4), 5
first, *rest = [1, 2, 3, 4]
*init, last = "abc"
x = y = [0]
y += [1]
n = 10
n -= 3
n *= 2
n //= 3
n **= 2
s = "conv"
s += "_1"
t = (1,)
t += (2,)
counts = {"a": 1}
counts["a"] += 5
l = [1, 2, 3]
l[1] *= 10
""",
    ),
    program(
        "if-elif-else",
        """
def kind(n):
    if n < 0:
        return "negative"
    elif n == 0:
        return "zero"
    elif n < 10:
        return "small"
    else:
        return "large"

kinds = [kind(n) for n in (-3, 0, 5, 50)]
flag = False
if not flag:
    value = 1
else:
    value = 2
""",
    ),
    program(
        "for-break-continue-else",
        """
found = None
for i in range(10):
    if i % 3 == 0:
        continue
    if i * i > 20:
        found = i
        break
else:
    found = -1

total = 0
for i in range(4):
    for j in range(i):
        if j == 2:
            break
        total += i * j
else:
    total += 1000

pairs = []
for a, b in zip("abc", range(3)):
    pairs.append(a * (b + 1))
for k in {"x": 1, "y": 2}:
    pairs.append(k)
last = i
""",
    ),
    program(
        "functions",
        """
def f(a, b=2, *args, c, d=4, **kwargs):
    return a, b, args, c, d, kwargs

r1 = f(1, c=3)
r2 = f(1, 2, 3, 4, c=5, e=6)
r3 = f(*[1, 2], **{"c": 3, "z": 0})

def g(x, /, y):
    return x - y

r4 = g(10, y=3)

def defaults(items=[]):
    items.append(len(items))
    return items

r5 = defaults()
r6 = defaults()

def no_return():
    pass

r7 = no_return()
square = lambda v: v * v
r8 = square(7)
r9 = sorted(["bb", "a", "ccc"], key=len)
""",
    ),
    program(
        "closures-and-scopes",
        """
scale = 2

def make(multiplier):
    def apply(v):
        return v * multiplier * scale
    return apply

double = make(2)
r1 = double(5)
scale = 10
r2 = double(5)

def late():
    fs = []
    for i in range(3):
        fs.append(lambda: i)
    return [f() for f in fs]

r3 = late()

def shadow():
    len = 3
    return len

r4 = shadow(), len("abc")
x = "global"

def reads_global():
    return x

r5 = reads_global()
""",
    ),
    program(
        "comprehensions",
        """
squares = [i * i for i in range(6)]
evens = [i for i in range(10) if i % 2 == 0 if i > 2]
grid = [(r, c) for r in range(3) for c in range(r)]
names = {f"conv{i}": i * 8 for i in range(1, 4)}
total = sum(x * 2 for x in range(5))
nested = [[j for j in range(i)] for i in range(4)]
i = "the comprehension's i is its own"
lazy = list(x for x in "ab")
""",
    ),
    program(
        "builtins",
        """
a = len([1, 2]), list(range(2, 11, 3)), list(enumerate("ab", 1)), list(zip([1, 2], "xyz"))
b = list(reversed([1, 2, 3])), sorted([3, 1, 2]), sorted("cab", reverse=True)
c = min(4, 2, 8), max([1, 9, 3]), min([], default=0), max("abc", key=lambda s: -ord(s) if False else 0)
d = sum([1, 2, 3]), sum([0.5, 0.25], 1), sum([[1], [2]], []), abs(-4), abs(-2.5)
e = int("12"), int(3.99), int(-3.99), int("ff", 16), float("1.5"), float(3), round(2.675, 2)
f = round(0.5), round(1.5), round(-2.5), round(1234, -2), str(12), str([1, "a"]), str(None)
g = isinstance(3, int), isinstance(True, int), isinstance(3.0, (int, str)), isinstance([], list)
h = bool([]), bool("x"), any([0, 0, 1]), all([]), divmod(17, 5), pow(2, 10), pow(3, 4, 5)
i = list(map(lambda v: v + 1, [1, 2])), list(filter(None, [0, 1, 2])), format(3.14159, ".3f")
j = repr("a'b"), tuple("ab"), list((1, 2)), dict(zip("ab", [1, 2])), float("inf") > 1e308
""",
    ),
    program(
        "methods",
        """
s = "Conv_Block"
a = s.lower(), s.upper(), s.split("_"), "a,b,,c".split(","), " x ".strip(), s.replace("_", "-")
b = s.startswith("Conv"), s.endswith(("k", "x")), s.find("B"), s.count("o"), "-".join(["a", "b"])
c = "7".zfill(3), "ab".center(6, "*"), "x".ljust(3) + "|", s.title(), "a b".partition(" ")
l = [3, 1, 2]
l.append(4)
l.extend((5, 6))
l.insert(0, 0)
popped = l.pop(), l.pop(0)
l.remove(2)
where = l.index(4), l.count(1)
l.sort(reverse=True)
r = l.copy()
r.reverse()
t = (1, 2, 1).count(1), (1, 2, 1).index(2)
d = {"a": 1}
d2 = d.copy()
d2.clear()
""",
    ),
    program(
        "strings-and-formatting",
        """
i, f, name = 3, 0.125, "conv"
a = f"{name}_{i}", f"{i:03d}", f"{f:.2f}", f"{f:>8.3}|", f"{name!r}", f"{i + 1}{{x}}"
b = f"{[1, 2]}", f"{(None, 8, 8, 3)}", f"{True}", f"{'nested'}", f"{i=}", f"{name:<6}|"
w = 5
c = f"{f:{w}.{2}f}", f"{1234567:,}", f"{255:x}", f"{255:#b}", f"{0.5:%}", f"{-3:+d}"
d = "%s_%d" % (name, i), "%05.1f" % f, "%(n)s!" % {"n": name}, "%r" % ([1],), "100%%" % ()
e = "{}_{}".format(name, i), "{1}{0}".format("a", "b"), "{x}-{y[0]}".format(x=1, y=[2])
g = "{:>{}}".format("r", 4), "{0[1]}".format("ab"), "{!r:>6}".format("q")
h = "a" "b", 'single', "tab\\tescaped", "\\u00e9", r"raw\\n"
""",
    ),
    program(
        "ranges",
        """
huge = range(10 ** 50)
a = 10 ** 40 in huge, 2.0 in range(5), [1] in range(3), 3 in huge[::7], huge[10 ** 40]
b = len(range(3, 10 ** 6, 7)), list(range(10, 0, -3)), range(5)[1:3], list(reversed(range(4)))
c = sum(range(100)), max(range(-5, 5)), sorted(range(3), reverse=True)
""",
    ),
    program(
        "docstrings-and-no-ops",
        '''
"""A module docstring."""
x = 1

def documented():
    """A function docstring."""
    return 2

y = documented()
print("printing prints nothing")
pass
''',
    ),
    program(
        "annotations-are-not-evaluated",
        """
x: int = 3
y: "anything at all" = [x]

def f(a: int, b: list = None) -> int:
    return a

z = f(1)
""",
    ),
    program(
        "assert-that-holds",
        """
filters = 32
assert filters % 8 == 0, "filters must be a multiple of 8"
assert True
""",
    ),
]


def _python(text: str) -> dict:
    """The oracle: Python runs the test's own text."""
    namespace: dict = {}
    exec(compile(text, "<test>", "exec"), namespace)  # noqa: S102 - the test's own text
    return namespace


def _comparable(value) -> bool:
    return not isinstance(
        value, types.FunctionType | types.GeneratorType | types.BuiltinFunctionType | type
    ) and type(value).__name__ not in ("zip", "enumerate", "map", "filter", "list_reverseiterator")


@pytest.mark.parametrize("text", PROGRAMS)
def test_program_computes_what_python_computes(text):
    expected = _python(text)
    actual = evaluate_text(text)
    compared = 0
    for name, value in expected.items():
        if name.startswith("__") or not _comparable(value):
            continue
        assert name in actual, f"{name} is not bound"
        assert repr(actual[name]) == repr(value), name
        assert type(actual[name]) is type(value), name
        compared += 1
    assert compared >= 1


def test_the_programs_cover_the_language():
    text = "".join(p.values[0] for p in PROGRAMS)
    for construct in ("def ", "lambda", "for ", "break", "continue", "elif", "*args", "**",
                      "f\"", "%", ".format(", "[i * i for", "{f\"", "sum(x", "zip(", "assert"):  # fmt: skip
        assert construct in text, construct


# ---------------------------------------------------------------------------------------------
# Errors, located; Python raises on each too, unless it is one of convc's bounds

ERRORS = [
    # (id, text, line, column, words, whether Python raises too)
    ("unknown-name", "x = 1\ny = z + x\n", 2, 5, "unknown name 'z'", True),
    ("misspelt-name", "filters = 8\ny = filterz + 1\n", 2, 5, "unknown name 'filterz'", True),
    ("used-before-assigned", "y = x\nx = 1\n", 1, 5, "'x' is used before it is assigned (at line 2)", True),
    ("local-before-assigned", "x = 1\ndef f():\n    y = x\n    x = 2\nf()\n", 3, 9,
     "'x' is used before it is assigned", True),
    ("division-by-zero", "x = 1\ny = x / 0\n", 2, 5, "division by zero", True),
    ("index-out-of-range", "x = [1, 2]\ny = x[2]\n", 2, 5, "list index out of range", True),
    ("missing-key", "d = {'a': 1}\ny = d['b']\n", 2, 7, "key 'b' is not in the dict", True),
    ("str-plus-int", "y = 'conv' + 1\n", 1, 5, "can only concatenate str (not \"int\") to str", True),
    ("unhashable-key", "d = {[1]: 2}\n", 1, 6, "unhashable type: 'list'", True),
    ("not-iterable", "for i in 5:\n    pass\n", 1, 10, "'int' object is not iterable", True),
    ("not-callable", "x = 3\ny = x(1)\n", 2, 5, "'int' object is not callable", True),
    ("unpack-too-many", "a, b = [1, 2, 3]\n", 1, 1, "too many values to unpack (expected 2)", True),
    ("unpack-too-few", "a, b, c = [1, 2]\n", 1, 1, "not enough values to unpack (expected 3, got 2)", True),
    ("missing-argument", "def f(a, b):\n    return a\nf(1)\n", 3, 1,
     "f() missing 1 required positional argument: 'b'", True),
    ("too-many-arguments", "def f(a):\n    return a\nf(1, 2)\n", 3, 6,
     "f() takes 1 positional argument but 2 were given", True),
    ("unexpected-keyword", "def f(a):\n    return a\nf(a=1, b=2)\n", 3, 8,
     "f() got an unexpected keyword argument 'b'", True),
    ("keyword-twice", "def f(a):\n    return a\nf(1, a=2)\n", 3, 6,
     "f() got multiple values for argument 'a'", True),
    ("attribute-of-a-number", "x = 3\ny = x.real\n", 2, 5, "'int' object has no attribute 'real'", False),
    ("list-attribute-not-read", "x = []\ny = x.__class__\n", 2, 5, "no attribute '__class__'", False),
    ("assert-fails", "x = 3\nassert x > 5, f'x is {x}'\n", 2, 8, "assertion failed: x is 3", True),
    ("tuple-item-assignment", "t = (1, 2)\nt[0] = 3\n", 2, 1, "'tuple' object does not support item assignment", True),
    ("int-of-a-word", "x = int('eight')\n", 1, 5, "invalid literal for int() with base 10: 'eight'", True),
    ("sorted-mixed", "x = sorted([1, 'a'])\n", 1, 5, "'<' not supported between instances of 'str' and 'int'", True),
    ("max-empty", "x = max([])\n", 1, 5, "max() arg is an empty sequence", True),
    ("format-bad-spec", "x = f'{3:q}'\n", 1, 5, "invalid format specifier 'q'", True),
    # outside the language: nothing reaches outside the file
    ("no-open", "x = open('data.txt')\n", 1, 5, "unknown name 'open'", False),
    ("no-eval", "x = eval('1 + 1')\n", 1, 5, "unknown name 'eval'", False),
    ("no-dunder-import", "os = __import__('os')\n", 1, 6, "unknown name '__import__'", False),
    ("no-dunder-attribute", "x = (1).__class__\n", 1, 5, "no attribute '__class__'", False),
    ("recursion", "def f(n):\n    return f(n - 1) if n else 0\nx = f(3)\n", 2, 12,
     "f() calls itself: recursion is not part of convc's language", False),
    ("mutual-recursion", "def a(n):\n    return b(n)\ndef b(n):\n    return a(n)\nx = a(1)\n", 4, 12,
     "a() calls itself", False),
    ("while", "while True:\n    pass\n", 1, 1, "a 'while' loop is not part of convc's language", False),
    ("class", "class A:\n    pass\n", 1, 1, "a class definition is not part of", False),
    ("try", "try:\n    x = 1\nexcept Exception:\n    pass\n", 1, 1, "'try' is not part of", False),
    ("with", "with x:\n    pass\n", 1, 1, "'with' is not part of", False),
    ("global", "def f():\n    global x\n    x = 1\n", 2, 5, "'global' is not part of", False),
    ("set", "x = {1, 2}\n", 1, 5, "a set is not part of convc's language", False),
    ("walrus", "x = (y := 3)\n", 1, 6, "the assignment expression ':=' is not part of", False),
    ("foreign-module", "import os\nx = os.getcwd()\n", 2, 5, "'os' is not a module convc's language has", False),
    ("foreign-module-from", "from math import ceil\nx = ceil(2.5)\n", 2, 5, "'math.ceil' is not a module", False),
    ("relative-import", "from . import x\n", 1, 1, "a relative import names another file", False),
    ("format-attribute", "x = '{0.real}'.format(3)\n", 1, 5, "a format field reads no attributes", False),
    ("locale-format", "x = f'{1234:n}'\n", 1, 5, "the 'n' format depends on the machine's locale", False),
    ("decorator", "@dec\ndef f():\n    pass\n", 1, 2, "a decorator is not part of", False),
    ("bytes", "x = b'abc'\n", 1, 5, "a bytes literal is not part of", False),
    ("complex-literal", "x = 2j\n", 1, 5, "a complex number is not part of", False),
    ("complex-result", "x = (-8) ** 0.5\n", 1, 5, "the result is a complex number", False),
    ("return-outside", "return 3\n", 1, 1, "'return' outside a function", True),
    ("break-outside", "break\n", 1, 1, "'break' outside a loop", True),
    # bounds
    ("huge-range-length", "x = len(range(10 ** 50))\n", 1, 5, "Python int too large to convert", True),
    ("huge-range-search", "x = 1.5 in range(10 ** 50)\n", 1, 5, "evaluation steps", False),
    ("huge-integer", "x = 10 ** 200\n", 1, 5, "the integer would have more than 100 digits", False),
    ("huge-product", "x = 10 ** 90\ny = x * x\n", 2, 5, "more than 100 digits", False),
    ("huge-string", "x = 'ab' * 10 ** 6\n", 1, 5, "the string would have 2,000,000 characters", False),
    ("huge-list", "x = [0] * (10 ** 6 + 1)\n", 1, 5, "would have 1,000,001 items", False),
    ("huge-width", "x = f'{1:20000}'\n", 1, 5, "a width or precision of 20,000", False),
    ("huge-percent-width", "x = '%20000d' % 1\n", 1, 5, "a width or precision of 20,000", False),
    ("huge-text", "x = [['a' * 1000] * 1000] * 10\ny = str(x)\n", 2, 5,
     "the text would be longer than 1,000,000 characters", False),
    ("deep-value", "x = []\nfor i in range(40):\n    x = [x]\ny = x == x\n", 4, 5,
     "the value nests more than 32 levels deep", False),
    ("deep-expression", "x = " + "(" * 30 + "1" + "+1" * 120 + ")" * 30 + "\n", 1, 35,
     "the expression nests more than 100 levels deep", False),
    ("deep-blocks", "".join("    " * i + "if True:\n" for i in range(22)) + "    " * 22 + "pass\n",
     22, 85, "blocks (if, for, def) nest more than 20 levels deep", False),
]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "line", "column", "words", "python_raises"),
    [pytest.param(*row[1:], id=row[0]) for row in ERRORS],
)
def test_error_is_located(text, line, column, words, python_raises):
    with pytest.raises(ConvcError) as caught:
        evaluate_text(text)
    error = errors_of(caught.value)[0]
    assert words in error.message, error.message
    assert (error.span.line, error.span.column) == (line, column), error.message
    if python_raises:
        with pytest.raises((Exception, SyntaxError)):  # noqa: B017 - any error Python raises
            _python(text)


def test_an_error_inside_functions_names_the_calls_that_reached_it():
    text = (
        "import keras\n"
        "from keras import layers\n"
        "\n"
        "def conv_block(x, filters):\n"
        "    return layers.Conv2D(filters, 3, padding='same')(x)\n"
        "\n"
        "def stack(x, widths):\n"
        "    for filters in widths:\n"
        "        x = conv_block(x, filters)\n"
        "    return x\n"
        "\n"
        "inputs = keras.Input(shape=(8, 8, 3))\n"
        "outputs = stack(inputs, [8, 0])\n"
        "model = keras.Model(inputs, outputs)\n"
    )
    with pytest.raises(ConvcError) as caught:
        resolve_text(text)
    error = errors_of(caught.value)[0]
    assert (error.span.line, error.span.column) == (5, 26)
    assert [(name, where.line) for name, where in error.trace] == [("conv_block", 9), ("stack", 13)]
    shown = render(caught.value, text, "net.conv")
    assert shown.splitlines() == [
        "net.conv:5:26: error: 'filters' must be a positive integer, got filters=0",
        "  5 |     return layers.Conv2D(filters, 3, padding='same')(x)",
        "    |                          ^^^^^^^",
        "  in conv_block(), called at line 9, in stack(), called at line 13",
    ]


def test_steps_are_bounded(monkeypatch):
    monkeypatch.setattr("convc.evaluate.MAX_STEPS", 10_000)
    evaluator = Evaluator(parse("x = 0\nfor i in range(10 ** 9):\n    x += 1\n"))
    (error,) = evaluator.run()
    assert "more than 10,000 evaluation steps" in error.message
    assert error.span.line in (2, 3)
    assert evaluator.steps <= 10_010  # it stops at the bound
    evaluate_text("x = 0\nfor i in range(1000):\n    x += 1\n")  # well within


def test_comparisons_count_every_item_they_visit(monkeypatch):
    """Two lists that share one big inner list compare item by item: a steps' bound, not a hang."""
    monkeypatch.setattr("convc.evaluate.MAX_STEPS", 100_000)
    text = "a = [0] * 1000\nb = [0] * 1000\nx = [a] * 1000\ny = [b] * 1000\nz = x == y\n"
    with pytest.raises(ConvcError, match="evaluation steps") as caught:
        evaluate_text(text)
    assert caught.value.span.line == 5


def test_all_a_program_makes_is_bounded(monkeypatch):
    monkeypatch.setattr("convc.evaluate.MAX_ALLOCATION", 50_000)
    with pytest.raises(ConvcError, match="more than 50,000 items and characters in all"):
        evaluate_text("names = []\nfor i in range(100000):\n    names.append(f'layer_{i}')\n")


def test_calls_nest_at_most_so_deep(monkeypatch):
    monkeypatch.setattr("convc.evaluate.MAX_CALL_DEPTH", 5)
    text = (
        "".join(f"def f{i}():\n    return f{i + 1}()\n" for i in range(10))
        + "def f10():\n    return 1\nx = f0()\n"
    )
    with pytest.raises(ConvcError, match="function calls nest more than 5 deep"):
        evaluate_text(text)
    monkeypatch.setattr("convc.evaluate.MAX_CALL_DEPTH", 32)
    assert evaluate_text(text)["x"] == 1


def test_evaluation_depth_is_bounded_through_calls():
    text = "".join(f"def f{i}(x):\n    return f{i + 1}(((((x)))))\n" for i in range(30))
    text += "def f30(x):\n    return x\ny = f0(1)\n"
    assert evaluate_text(text)["y"] == 1
    deep = "".join(f"def f{i}(x):\n    return [[[[[f{i + 1}(x)]]]]]\n" for i in range(31))
    deep += "def f31(x):\n    return x\ny = f0(1)\n"
    with pytest.raises(ConvcError, match="nests more than"):
        evaluate_text(deep)


# ---------------------------------------------------------------------------------------------
# Models: Keras runs the same program


def model(id_: str, text: str):
    return pytest.param(text.strip() + "\n", id=id_)


MODELS = [
    model(
        "unet-loops-and-a-function",
        """
import keras
from keras import layers

def conv_block(x, filters, name):
    for i in range(2):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu",
                          name=f"{name}_conv{i + 1}")(x)
    return x

inputs = keras.Input(shape=(32, 32, 3), name="image")
x = inputs
skips = []
for depth, filters in enumerate([8, 16, 32]):
    x = conv_block(x, filters, f"down{depth}")
    skips.append(x)
    x = layers.MaxPooling2D(2)(x)
x = conv_block(x, 64, "bottom")
for depth, (filters, skip) in reversed(list(enumerate(zip([8, 16, 32], skips)))):
    x = layers.Conv2DTranspose(filters, 2, strides=2, padding="same")(x)
    x = layers.Concatenate()([x, skip])
    x = conv_block(x, filters, f"up{depth}")
outputs = layers.Conv2D(1, 1, activation="sigmoid", name="mask")(x)
model = keras.Model(inputs, outputs, name="unet_loops")
""",
    ),
    model(
        "resnet-blocks-config-and-shapes",
        """
import keras
from keras import layers

def residual_block(x, filters, stride=1):
    shortcut = x
    y = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False)(x)
    y = layers.BatchNormalization()(y)
    y = layers.ReLU()(y)
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False)(y)
    y = layers.BatchNormalization()(y)
    if stride != 1 or x.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=stride, use_bias=False)(x)
        shortcut = layers.BatchNormalization()(shortcut)
    return layers.ReLU()(layers.Add()([shortcut, y]))

config = {"stages": [(8, 2), (16, 2)], "classes": 10}
inputs = keras.Input(shape=(16, 16, 3))
x = layers.Conv2D(8, 3, padding="same")(inputs)
for i, (filters, blocks) in enumerate(config["stages"]):
    for b in range(blocks):
        x = residual_block(x, filters, stride=2 if b == 0 and i > 0 else 1)
x = layers.GlobalAveragePooling2D()(x)
outputs = layers.Dense(config["classes"], activation="softmax")(x)
model = keras.Model(inputs, outputs)
""",
    ),
    model(
        "squeeze-excite-with-static-shapes",
        """
import keras
from keras import layers

IMG_SIZE = (12, 12)

def squeeze_excite(x, ratio=4):
    channels = x.shape[-1]
    s = layers.GlobalAveragePooling2D(keepdims=True)(x)
    s = layers.Conv2D(max(1, channels // ratio), 1, activation="relu")(s)
    s = layers.Conv2D(channels, 1, activation="sigmoid")(s)
    return layers.Multiply()([x, s])

inputs = keras.Input(shape=IMG_SIZE + (3,))
x = layers.Rescaling(1.0 / 255)(inputs)
x = layers.Conv2D(16, 3, padding="same")(x)
x = squeeze_excite(x)
batch, height, width, channels = keras.ops.shape(x)
x = layers.Reshape((height * width, channels))(x)
x = layers.Dense(x.shape[-1] // 2)(x)
model = keras.Model(inputs, x)
""",
    ),
    model(
        "comprehensions-branches-and-dict-outputs",
        """
import keras
from keras import layers

inputs = keras.Input(shape=(10, 10, 4))
branches = [layers.Conv2D(4, k, padding="same", name="branch_%d" % k)(inputs) for k in (1, 3, 5)]
x = layers.Concatenate()(branches)
convs = [layers.Conv2D(w, 3, padding="same", activation="relu") for w in [8, 8]]
for conv in convs:
    x = conv(x)
x = layers.GlobalMaxPooling2D()(x)
heads = {name: layers.Dense(units, name=name)(x) for name, units in [("score", 1), ("class", 3)]}
model = keras.Model(inputs, heads)
""",
    ),
    model(
        "keras2-sequential-add-in-a-loop",
        """
import keras
from keras import layers

model = keras.Sequential(name="classifier")
model.add(keras.Input(shape=(28, 28, 1)))
for i, filters in enumerate([8, 16]):
    model.add(layers.Conv2D(filters, 3, activation="relu", name=f"conv{i}"))
    model.add(layers.MaxPooling2D())
model.add(layers.Flatten())
model.add(layers.Dense(10, activation="softmax"))
""",
    ),
    model(
        "keyword-dicts-defaults-and-conditionals",
        """
import keras
from keras import layers

conv_kwargs = dict(padding="same", use_bias=False, kernel_initializer="he_normal")

def bn_act(x, activation="relu"):
    x = layers.BatchNormalization()(x)
    return layers.Activation(activation)(x) if activation else x

def stem(x, widths, *, final_activation=None):
    for i, width in enumerate(widths):
        last = i == len(widths) - 1
        x = layers.Conv2D(width, 3, **conv_kwargs)(x)
        x = bn_act(x, final_activation if last else "relu")
    return x

inputs = keras.Input(shape=(9, 9, 2))
outputs = stem(inputs, (4, 6, 8), final_activation="swish")
model = keras.Model(inputs=inputs, outputs=outputs)
""",
    ),
    model(
        "sequential-list-with-unpacked-comprehension",
        """
import keras
from keras import layers

hidden = [32, 16]
model = keras.Sequential(
    [keras.Input(shape=(20,))]
    + [layers.Dense(units, activation="relu") for units in hidden]
    + [layers.Dropout(0.5), layers.Dense(1)]
)
""",
    ),
    model(
        "shared-layer-applied-in-a-loop",
        """
import keras
from keras import layers

left = keras.Input(shape=(6, 6, 3), name="left")
right = keras.Input(shape=(6, 6, 3), name="right")
encoder = [layers.Conv2D(8, 3, padding="same", activation="relu", name=f"enc{i}") for i in range(2)]
encoded = []
for x in (left, right):
    for layer in encoder:
        x = layer(x)
    encoded.append(x)
outputs = layers.Subtract()(encoded)
model = keras.Model([left, right], outputs)
""",
    ),
]


@pytest.mark.parametrize("text", MODELS)
def test_model_matches_keras(text):
    from oracle import assert_matches_keras

    keras_model, proto = assert_matches_keras(text)
    ours = resolve_text(text)
    theirs = {
        layer.name: layer for layer in keras_model.layers if type(layer).__name__ != "InputLayer"
    }
    assert sorted(layer.name for layer in ours.layers) == sorted(theirs)
    for layer in ours.layers:
        assert layer.parameter_count == theirs[layer.name].count_params(), layer.name
    assert ours.name == keras_model.name


def _documented_examples() -> list:
    import re
    from pathlib import Path

    root = Path(__file__).parent.parent
    readme = (root / "README.md").read_text()
    writing = readme[readme.index("## Writing a model") : readme.index("## Building, running")]
    language = (root / "docs" / "language.md").read_text()
    model_code = language[language.index("## Model code") : language.index("## Layers and")]
    return [
        pytest.param(re.findall(r"```\n(.*?)```", writing, re.S)[1], id="readme"),
        pytest.param(re.findall(r"```\n(.*?)```", model_code, re.S)[0], id="language-md"),
    ]


@pytest.mark.parametrize("text", _documented_examples())
def test_the_documented_examples_match_keras(text):
    from oracle import assert_matches_keras

    assert "for " in text and "def " in text
    assert_matches_keras(text)


def test_the_models_use_the_constructs_the_issue_lists():
    text = "".join(p.values[0] for p in MODELS)
    for construct in ("for ", "def ", "x.shape[-1]", "keras.ops.shape", "f\"", "% k", "**conv_kwargs",
                      "[layers.Conv2D(w", "model.add(", "if ", "config[", "1.0 / 255"):  # fmt: skip
        assert construct in text, construct


def test_int_shape_of_tf_keras_code():
    """tf.keras's keras.backend.int_shape (Keras 3 dropped it) is the same static shape."""
    text = (
        "import tensorflow as tf\nK = tf.keras.backend\n"
        "x = tf.keras.Input(shape=(8, 8, 3))\n"
        "y = tf.keras.layers.Conv2D(K.int_shape(x)[-1] * 2, 1)(x)\n"
        "model = tf.keras.Model(x, y)\n"
    )
    (layer,) = resolve_text(text).layers
    assert layer.spec.filters == 6


def test_the_sequential_shorthand_runs_in_a_module_loop():
    looped = "Input(shape=(8, 8, 3))\nfor filters in [4, 8, 16]:\n    Conv2D(filters, 3, padding='same')\n"
    unrolled = "Input(shape=(8, 8, 3))\n" + "".join(
        f"Conv2D({f}, 3, padding='same')\n" for f in (4, 8, 16)
    )
    assert compile_text(looped).SerializeToString() == compile_text(unrolled).SerializeToString()
    assert resolve_text(looped).name == "sequential"


def test_a_loop_builds_thousands_of_layers():
    text = (
        "import keras\nfrom keras import layers\n"
        "x = inputs = keras.Input(shape=(16, 4))\n"
        "for i in range(2000):\n"
        "    x = layers.Conv1D(4, 3, padding='same', name=f'c{i}')(x)\n"
        "model = keras.Model(inputs, x)\n"
    )
    model_ = resolve_text(text)
    assert len(model_.layers) == 2000 and model_.layers[-1].name == "c1999"


def test_pasted_training_code_builds_nothing_and_breaks_nothing():
    """model.compile's Keras objects (optimizers, losses, metrics) are made and dropped, as the
    call itself is; a misspelt layer kept in a name is reported where it is used as a layer."""
    text = (
        "import keras\nfrom keras import layers\n"
        "model = keras.Sequential([keras.Input(shape=(4,)), layers.Dense(2)])\n"
        "model.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-3),\n"
        "              loss=keras.losses.MeanSquaredError(),\n"
        "              metrics=[keras.metrics.MeanAbsoluteError()])\n"
        "model.summary()\n"
    )
    assert [layer.name for layer in resolve_text(text).layers] == ["dense"]
    typo = "x = Input(shape=(8, 8, 3))\nconv = Conv2d(8, 3)\ny = conv(x)\n"
    with pytest.raises(ConvcError) as caught:
        resolve_text(typo)
    assert (
        caught.value.message == "unknown layer 'Conv2d'"
        and caught.value.help == "did you mean Conv2D?"
    )
    assert (caught.value.span.line, caught.value.span.column) == (2, 8)


def test_a_statement_with_no_effect_is_a_warning():
    text = "x = Input(shape=(4,))\ny = Dense(2)(x)\ny\n3 + 4\n'a docstring is fine'\n"
    warnings = [(w.message, w.span.line) for w in resolve_text(text).warnings]
    assert warnings == [("this statement has no effect", 3), ("this statement has no effect", 4)]


def test_model_errors_name_the_tensor_operation_convc_does_not_compile():
    cases = {
        "y = x + x\n": "write layers.Add()([a, b])",
        "y = x * 2\n": "arithmetic on tensors is a Keras operation",
        "y = x[:, 0]\n": "indexing or slicing a tensor is a Keras operation",
        "if x:\n    pass\n": "a tensor has no truth value",
        "y = len(x)\n": "a tensor has no len()",
        "y = x == x\n": "'==' on a tensor is a Keras operation",
        "y = x.name\n": "convc reads no attribute 'name' of a tensor",
        "for v in x:\n    pass\n": "a tensor cannot be iterated over",
    }
    for statement, words in cases.items():
        text = "x = Input(shape=(8, 8, 3))\n" + statement
        with pytest.raises(ConvcError) as caught:
            resolve_text(text)
        shown = caught.value.message + " " + (caught.value.help or "")
        assert words in shown, (statement, shown)


# ---------------------------------------------------------------------------------------------
# The parser: Python's grammar, today's syntax objects for today's files


def test_a_file_of_layer_calls_parses_to_the_registry_s_syntax():
    program_ = parse("model tiny\nInput(shape=(8, 8, 3))\nx = Conv2D(8, 3, padding='same')(y)\n")
    directive, call, assign = program_.statements
    assert isinstance(directive, Directive) and directive.value == "tiny"
    assert isinstance(call, Call) and call.name == "Input"
    assert isinstance(call.kwargs[0].value.items[0], Literal)
    assert isinstance(assign, Assign) and isinstance(assign.value, Apply)
    assert (assign.value.callee.kwargs[0].span.line, assign.value.callee.kwargs[0].span.column) == (
        3,
        18,
    )


def test_a_directive_is_a_line_no_python_statement_can_be():
    text = (
        'data_format channels_first\ndoc = """\nmodel not_a_directive\n"""\n'
        "for i in range(2):\n    pass\nmodel 'named'\n"
    )
    statements = parse(text).statements
    directives = [s for s in statements if isinstance(s, Directive)]
    assert [(d.name, d.value, d.span.line) for d in directives] == [
        ("data_format", "channels_first", 1),
        ("model", "named", 7),
    ]
    assert isinstance(statements[2], For)
    assert evaluate_text(text)["doc"] == "\nmodel not_a_directive\n"


@pytest.mark.parametrize(
    ("text", "line", "column", "words"),
    [
        ("x = [1,\n", 1, 5, "'[' is never closed"),
        ("x = (1 2)\n", 1, 8, "expected ',' or ')', got '2'"),
        ("for i in range(3)\n    pass\n", 1, 18, "expected ':'"),
        ("if x:\npass\n", 2, 1, "expected an indented block after 'if' statement on line 1"),
        ("x = 1\n  y = 2\n", 2, 1, "unexpected indent"),
        ("def f(:\n", 1, 7, "invalid syntax"),
        ("x = 'abc\n", 1, 5, "unterminated string"),
        ("f(a=1, g(x))\n", 1, 8, "a positional argument cannot follow a keyword argument"),
        ("x = $\n", 1, 5, "unexpected character '$'"),
        ("x = 1\0\n", 1, 6, "the file contains a NUL character"),
        ("x = 1\ry = 2\n", 1, 6, "a carriage return (\\r) that does not end a line"),
    ],
)
def test_syntax_errors_are_python_s_located(text, line, column, words):
    with pytest.raises(ConvcError) as caught:
        parse(text)
    assert words in caught.value.message, caught.value.message
    assert (caught.value.span.line, caught.value.span.column) == (line, column)


def test_a_text_deeper_than_python_parses_is_a_clean_error():
    text = "x = 1\ny = " + "-" * 200_000 + "1\n"
    with pytest.raises(ConvcError) as caught:
        parse(text)
    assert caught.value.span is not None and caught.value.span.line == 2
