"""The builtins and methods a program may use, and text formatting, each bounded.

The builtins are Python's, by name and by behaviour (``len``, ``range``, ``enumerate``, ``zip``,
``reversed``, ``sorted``, ``min``, ``max``, ``sum``, ``abs``, ``int``, ``float``, ``round``,
``str``, ``isinstance`` ...), and so are the methods of strings, lists and dicts listed here;
they work on Python's own values, so the results are Python's. What could take unbounded time
or memory is checked before it is done: the size of what a call would make, the width a format
asks for, the items a comparison would visit. What reaches outside the program (``open``,
``input``, ``print``'s output, ``hash`` of a string, ``id``) is not here; ``print`` is accepted
and prints nothing, so that pasted code runs.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from convc.diagnostics import ConvcError, Span
from convc.limits import MAX_FORMAT_WIDTH, MAX_INT_DIGITS, MAX_ITEMS, MAX_NESTING
from convc.model import Tensor
from convc.values import DATA, ITERATORS, Builtin, CallSite, describe, python_error, type_name

if TYPE_CHECKING:
    from convc.evaluate import Evaluator

Implementation = Callable[["Evaluator", CallSite], Any]


def _arguments(
    site: CallSite, name: str, low: int, high: int, keywords: tuple[str, ...] = ()
) -> tuple[list, dict]:
    """The call's positional arguments (``low`` to ``high`` of them) and its keywords (only
    those named)."""
    count = len(site.args)
    if not low <= count <= high:
        wanted = (
            f"exactly {low}"
            if low == high
            else f"at least {low}"
            if high > 99
            else f"{low} to {high}"
        )
        raise ConvcError(
            f"{name}() takes {wanted} argument{'' if high == 1 else 's'} ({count} given)", site.span
        )
    given = {}
    for key, value, _node, span, _value_span in site.keywords:
        if key not in keywords:
            raise ConvcError(
                f"{name}() got an unexpected keyword argument '{key}'"
                if keywords
                else f"{name}() takes no keyword arguments",
                span,
            )
        given[key] = value
    return list(site.args), given


def _call(evaluator: Evaluator, function: Any, args: list, site: CallSite) -> Any:
    """Call a program's function (a ``key=``, a ``map`` function) from a builtin."""
    inner = CallSite(site.node, site.function_span, evaluator)
    inner.args = list(args)
    inner.arg_nodes = [None] * len(args)
    inner.arg_spans = [site.span] * len(args)
    return evaluator.invoke(function, inner)


def _native(function: Callable[..., Any], site: CallSite, *args: Any, **kwargs: Any) -> Any:
    try:
        return function(*args, **kwargs)
    except (TypeError, ValueError, ArithmeticError, IndexError) as error:
        raise python_error(error, site.span) from None
    except KeyError as error:
        raise ConvcError(f"key {error.args[0]!r} is not in the dict", site.span) from None


# ---------------------------------------------------------------------------------------------
# Builtin functions


def _len(evaluator: Evaluator, site: CallSite) -> int:
    (value,), _ = _arguments(site, "len", 1, 1)
    if isinstance(value, Tensor):
        raise ConvcError(
            "a tensor has no len(): its batch is not known", site.span,
            help="len(x.shape) is its rank, x.shape[1] a dimension",
        )  # fmt: skip
    if not isinstance(value, DATA) or not hasattr(value, "__len__"):
        raise ConvcError(f"object of type '{type_name(value)}' has no len()", site.span)
    return _native(len, site, value)  # len(range(10**100)) overflows, in Python too


def _range(evaluator: Evaluator, site: CallSite) -> range:
    args, _ = _arguments(site, "range", 1, 3)
    return _native(range, site, *args)


def _enumerate(evaluator: Evaluator, site: CallSite) -> Iterator:
    args, keywords = _arguments(site, "enumerate", 1, 2, ("start",))
    start = keywords.get("start", args[1] if len(args) > 1 else 0)
    if type(start) not in (int, bool):
        raise ConvcError(
            f"'{type_name(start)}' object cannot be interpreted as an integer", site.span
        )
    return enumerate(evaluator.iterate(args[0], site.arg_spans[0]), start)


def _zip(evaluator: Evaluator, site: CallSite) -> Iterator:
    args, keywords = _arguments(site, "zip", 0, 1000, ("strict",))
    strict = evaluator.truth(keywords.get("strict", False), site.span)
    iterators = [evaluator.iterate(a, s) for a, s in zip(args, site.arg_spans, strict=True)]

    def produce() -> Iterator[tuple]:
        if not iterators:
            return
        while True:
            items = []
            for i, iterator in enumerate(iterators):
                try:
                    items.append(next(iterator))
                except StopIteration:
                    if strict and (i > 0 or _more(iterators[1:])):
                        which = "shorter" if i > 0 else "longer"
                        raise ConvcError(
                            f"zip() argument {i + 1 if i else 2} is {which} than argument"
                            f"{'s 1-' + str(i) if i > 1 else ' 1'}",
                            site.span,
                        ) from None
                    return
            yield tuple(items)

    return produce()


def _more(iterators: list[Iterator]) -> bool:
    for iterator in iterators:
        try:
            next(iterator)
            return True
        except StopIteration:
            continue
    return False


def _reversed(evaluator: Evaluator, site: CallSite) -> Iterator:
    (value,), _ = _arguments(site, "reversed", 1, 1)
    if type(value) not in (list, tuple, str, range, dict) and not isinstance(
        value, type({}.keys())
    ):
        raise ConvcError(f"'{type_name(value)}' object is not reversible", site.span)
    return _native(reversed, site, value)


def _keys(evaluator: Evaluator, items: list, key: Any, site: CallSite) -> list:
    keys = items if key is None else [_call(evaluator, key, [item], site) for item in items]
    if not all(type(k) in (int, float, str, bool) for k in keys):
        for k in keys:
            evaluator.weigh(k, site.span)
    return keys


def _sorted(evaluator: Evaluator, site: CallSite) -> list:
    (iterable,), keywords = _arguments(site, "sorted", 1, 1, ("key", "reverse"))
    items = evaluator.materialize(iterable, site.arg_spans[0])
    return _sort(evaluator, items, keywords.get("key"), keywords.get("reverse", False), site)


def _sort(evaluator: Evaluator, items: list, key: Any, reverse: Any, site: CallSite) -> list:
    if type(reverse) not in (bool, int):
        raise ConvcError(
            f"'{type_name(reverse)}' object cannot be interpreted as an integer", site.span
        )
    keys = _keys(evaluator, items, key, site)
    evaluator.step(site.span, len(items) * max(1, len(items).bit_length()))
    order = _native(sorted, site, range(len(items)), key=keys.__getitem__, reverse=bool(reverse))
    return [items[i] for i in order]


def _extreme(name: str, choose: Callable[..., Any]) -> Implementation:
    def extreme(evaluator: Evaluator, site: CallSite) -> Any:
        args, keywords = _arguments(site, name, 1, 1000, ("key", "default"))
        if len(args) == 1:
            items = evaluator.materialize(args[0], site.arg_spans[0])
        else:
            if "default" in keywords:
                raise ConvcError(
                    f"Cannot specify a default for {name}() with multiple positional arguments",
                    site.span,
                )
            items = args
        if not items:
            if "default" in keywords:
                return keywords["default"]
            raise ConvcError(f"{name}() arg is an empty sequence", site.span)
        keys = _keys(evaluator, items, keywords.get("key"), site)
        evaluator.step(site.span, len(items))
        return items[_native(choose, site, range(len(items)), key=keys.__getitem__)]

    return extreme


def _sum(evaluator: Evaluator, site: CallSite) -> Any:
    args, keywords = _arguments(site, "sum", 1, 2, ("start",))
    start = keywords.get("start", args[1] if len(args) > 1 else 0)
    if type(start) is str:
        raise ConvcError("sum() can't sum strings [use ''.join(seq) instead]", site.span)
    items = evaluator.materialize(args[0], site.arg_spans[0])
    if type(start) in (int, float, bool) and all(type(i) in (int, float, bool) for i in items):
        if all(type(i) is not float for i in items) and type(start) is not float:
            total = _native(sum, site, items, start)
            return evaluator.check_int(total, site.span)
        return _native(sum, site, items, start)
    total = start
    for item in items:
        total = evaluator.binary("+", total, item, site)
    return total


def _abs(evaluator: Evaluator, site: CallSite) -> Any:
    (value,), _ = _arguments(site, "abs", 1, 1)
    if type(value) not in (int, float, bool):
        raise ConvcError(f"bad operand type for abs(): '{type_name(value)}'", site.span)
    return abs(value)


def _int(evaluator: Evaluator, site: CallSite) -> int:
    args, keywords = _arguments(site, "int", 0, 2, ("base",))
    if not args:
        if keywords:
            raise ConvcError("int() missing string argument", site.span)
        return 0
    value = args[0]
    if type(value) not in (int, float, bool, str):
        raise ConvcError(
            "int() argument must be a string, a bytes-like object or a real number, not "
            f"'{type_name(value)}'",
            site.span,
        )
    if len(args) > 1 or keywords:
        base = keywords.get("base", args[1] if len(args) > 1 else 10)
        result = _native(int, site, value, base)
    else:
        result = _native(int, site, value)
    return evaluator.check_int(result, site.span)


def _float(evaluator: Evaluator, site: CallSite) -> float:
    args, _ = _arguments(site, "float", 0, 1)
    if not args:
        return 0.0
    value = args[0]
    if type(value) not in (int, float, bool, str):
        raise ConvcError(
            f"float() argument must be a string or a real number, not '{type_name(value)}'",
            site.span,
        )
    return _native(float, site, value)


def _round(evaluator: Evaluator, site: CallSite) -> Any:
    args, keywords = _arguments(site, "round", 1, 2, ("ndigits",))
    number = args[0]
    digits = keywords.get("ndigits", args[1] if len(args) > 1 else None)
    if type(number) not in (int, float, bool):
        raise ConvcError(f"type {type_name(number)} doesn't define __round__ method", site.span)
    if digits is None:
        return _native(round, site, number)
    if type(digits) not in (int, bool):
        raise ConvcError(
            f"'{type_name(digits)}' object cannot be interpreted as an integer", site.span
        )
    if type(number) is not float and digits < -(MAX_INT_DIGITS + 1):
        return 0  # what Python computes: |number| < 10**MAX_INT_DIGITS rounds to 0
    return _native(round, site, number, digits)


def _str(evaluator: Evaluator, site: CallSite) -> str:
    args, _ = _arguments(site, "str", 0, 1)
    return evaluator.to_str(args[0], site.span) if args else ""


def _repr(evaluator: Evaluator, site: CallSite) -> str:
    (value,), _ = _arguments(site, "repr", 1, 1)
    return evaluator.to_repr(value, site.span)


def _bool(evaluator: Evaluator, site: CallSite) -> bool:
    args, _ = _arguments(site, "bool", 0, 1)
    return evaluator.truth(args[0], site.span) if args else False


def _list(evaluator: Evaluator, site: CallSite) -> list:
    args, _ = _arguments(site, "list", 0, 1)
    return evaluator.materialize(args[0], site.span) if args else []


def _tuple(evaluator: Evaluator, site: CallSite) -> tuple:
    args, _ = _arguments(site, "tuple", 0, 1)
    if args and type(args[0]) is tuple:
        return args[0]
    return tuple(evaluator.materialize(args[0], site.span)) if args else ()


def _dict(evaluator: Evaluator, site: CallSite) -> dict:
    args = list(site.args)
    if len(args) > 1:
        raise ConvcError(f"dict expected at most 1 argument, got {len(args)}", site.span)
    result: dict = {}
    if args:
        source = args[0]
        if type(source) is dict:
            result = dict(source)
        else:
            for pair in evaluator.materialize(source, site.span):
                items = (
                    evaluator.materialize(pair, site.span)
                    if isinstance(pair, DATA + ITERATORS)
                    else None
                )
                if items is None:
                    raise ConvcError(
                        f"cannot convert dictionary update sequence element: '{type_name(pair)}' "
                        "object is not iterable",
                        site.span,
                    )
                if len(items) != 2:
                    raise ConvcError(
                        f"dictionary update sequence element has length {len(items)}; 2 is "
                        "required",
                        site.span,
                    )
                evaluator.hashable(items[0], site.span)
                result[items[0]] = items[1]
    for key, value, *_ in site.keywords:
        result[key] = value
    evaluator.allocate(len(result), site.span)
    return result


def _isinstance(evaluator: Evaluator, site: CallSite) -> bool:
    (value, kinds), _ = _arguments(site, "isinstance", 2, 2)
    wanted = kinds if type(kinds) is tuple else (kinds,)
    types = []
    for kind in wanted:
        if not isinstance(kind, Builtin) or kind.type is None:
            raise ConvcError(
                f"isinstance() takes a type such as int, float, str, list, tuple or dict, got "
                f"{describe(kind)}",
                site.arg_spans[1],
            )
        types.append(kind.type)
    return isinstance(value, tuple(types))


def _any(evaluator: Evaluator, site: CallSite) -> bool:
    (iterable,), _ = _arguments(site, "any", 1, 1)
    for item in evaluator.iterate(iterable, site.span):
        evaluator.step(site.span)
        if evaluator.truth(item, site.span):
            return True
    return False


def _all(evaluator: Evaluator, site: CallSite) -> bool:
    (iterable,), _ = _arguments(site, "all", 1, 1)
    for item in evaluator.iterate(iterable, site.span):
        evaluator.step(site.span)
        if not evaluator.truth(item, site.span):
            return False
    return True


def _divmod(evaluator: Evaluator, site: CallSite) -> tuple:
    (a, b), _ = _arguments(site, "divmod", 2, 2)
    if type(a) not in (int, float, bool) or type(b) not in (int, float, bool):
        raise ConvcError(
            f"unsupported operand type(s) for divmod(): '{type_name(a)}' and '{type_name(b)}'",
            site.span,
        )
    return _native(divmod, site, a, b)


def _pow(evaluator: Evaluator, site: CallSite) -> Any:
    args, keywords = _arguments(site, "pow", 2, 3, ("base", "exp", "mod"))
    if len(args) == 3 and args[2] is not None:
        if any(type(a) not in (int, bool) for a in args):
            raise ConvcError(
                "pow() 3rd argument not allowed unless all arguments are integers", site.span
            )
        return _native(pow, site, *args)
    return evaluator.binary("**", args[0], args[1], site)


def _print(evaluator: Evaluator, site: CallSite) -> None:
    """Accepted so that pasted code runs; a build prints nothing of the program's."""
    return None


def _format(evaluator: Evaluator, site: CallSite) -> str:
    args, _ = _arguments(site, "format", 1, 2)
    spec = args[1] if len(args) > 1 else ""
    if type(spec) is not str:
        raise ConvcError(f"format() argument 2 must be str, not {type_name(spec)}", site.span)
    return format_value(evaluator, args[0], spec, site.span)


def _map(evaluator: Evaluator, site: CallSite) -> Iterator:
    args, _ = _arguments(site, "map", 2, 1000)
    function = args[0]
    iterators = [evaluator.iterate(a, s) for a, s in zip(args[1:], site.arg_spans[1:], strict=True)]

    def produce() -> Iterator:
        for items in zip(*iterators, strict=False):
            yield _call(evaluator, function, list(items), site)

    return produce()


def _filter(evaluator: Evaluator, site: CallSite) -> Iterator:
    (function, iterable), _ = _arguments(site, "filter", 2, 2)
    iterator = evaluator.iterate(iterable, site.arg_spans[1])

    def produce() -> Iterator:
        for item in iterator:
            test = item if function is None else _call(evaluator, function, [item], site)
            if evaluator.truth(test, site.span):
                yield item

    return produce()


_TYPES = {
    "int": int,
    "float": float,
    "str": str,
    "bool": bool,
    "list": list,
    "tuple": tuple,
    "dict": dict,
}
_FUNCTIONS: dict[str, Implementation] = {
    "len": _len,
    "range": _range,
    "enumerate": _enumerate,
    "zip": _zip,
    "reversed": _reversed,
    "sorted": _sorted,
    "min": _extreme("min", min),
    "max": _extreme("max", max),
    "sum": _sum,
    "abs": _abs,
    "round": _round,
    "repr": _repr,
    "isinstance": _isinstance,
    "any": _any,
    "all": _all,
    "divmod": _divmod,
    "pow": _pow,
    "print": _print,
    "format": _format,
    "map": _map,
    "filter": _filter,
    "int": _int,
    "float": _float,
    "str": _str,
    "bool": _bool,
    "list": _list,
    "tuple": _tuple,
    "dict": _dict,
}
BUILTINS: dict[str, Builtin] = {
    name: Builtin(name, function, _TYPES.get(name)) for name, function in _FUNCTIONS.items()
}
"""The builtins, by name."""


# ---------------------------------------------------------------------------------------------
# Methods of strings, lists and dicts

Method = Callable[["Evaluator", Any, CallSite], Any]


def _plain(name: str, low: int, high: int, keywords: tuple[str, ...] = ()) -> Method:
    """A method whose result is no bigger than its receiver and arguments: Python's own."""

    def method(evaluator: Evaluator, receiver: Any, site: CallSite) -> Any:
        args, given = _arguments(site, name, low, high, keywords)
        evaluator.step(site.span, len(receiver) if hasattr(receiver, "__len__") else 1)
        return _native(getattr(type(receiver), name), site, receiver, *args, **given)

    return method


def _searching(name: str, low: int, high: int) -> Method:
    """A method that compares items (``index``, ``count``, ``remove``): bounded by their size."""

    def method(evaluator: Evaluator, receiver: Any, site: CallSite) -> Any:
        args, _ = _arguments(site, name, low, high)
        if args and not isinstance(args[0], (int, float, str, bool, type(None))):
            evaluator.step(site.span, evaluator.weigh(args[0], site.span) * len(receiver))
        evaluator.step(site.span, len(receiver))
        return _native(getattr(type(receiver), name), site, receiver, *args)

    return method


def _growing(name: str, low: int, high: int, size: Callable[[Any, list], int]) -> Method:
    """A method whose result may be bigger than its receiver: ``size`` says how big, first."""

    def method(evaluator: Evaluator, receiver: Any, site: CallSite) -> Any:
        args, _ = _arguments(site, name, low, high)
        if all(type(a) in (int, bool, str) for a in args):
            evaluator.allocate(max(0, size(receiver, args)), site.span, "the string")
        return _native(getattr(type(receiver), name), site, receiver, *args)

    return method


def _width(receiver: str, args: list) -> int:
    return max(len(receiver), args[0] if type(args[0]) is int else 0)


def _replaced(receiver: str, args: list) -> int:
    old, new = args[0], args[1]
    if type(old) is not str or type(new) is not str:
        return 0
    count = receiver.count(old) if old else len(receiver) + 1
    if len(args) > 2 and type(args[2]) is int and args[2] >= 0:
        count = min(count, args[2])
    return len(receiver) + count * (len(new) - len(old))


def _join(evaluator: Evaluator, receiver: str, site: CallSite) -> str:
    (iterable,), _ = _arguments(site, "join", 1, 1)
    items = evaluator.materialize(iterable, site.span)
    for i, item in enumerate(items):
        if type(item) is not str:
            raise ConvcError(
                f"sequence item {i}: expected str instance, {type_name(item)} found", site.span
            )
    evaluator.allocate(
        sum(map(len, items)) + len(receiver) * max(0, len(items) - 1), site.span, "the string"
    )
    return receiver.join(items)


def _format_method(evaluator: Evaluator, receiver: str, site: CallSite) -> str:
    keywords = {key: value for key, value, *_ in site.keywords}
    return format_string(evaluator, receiver, list(site.args), keywords, site.span)


def _append(evaluator: Evaluator, receiver: list, site: CallSite) -> None:
    (item,), _ = _arguments(site, "append", 1, 1)
    evaluator.allocate(len(receiver) + 1, site.span, "the list", added=1)
    receiver.append(item)


def _extend(evaluator: Evaluator, receiver: list, site: CallSite) -> None:
    (iterable,), _ = _arguments(site, "extend", 1, 1)
    items = evaluator.materialize(iterable, site.span)
    evaluator.allocate(len(receiver) + len(items), site.span, "the list", added=len(items))
    receiver.extend(items)


def _insert(evaluator: Evaluator, receiver: list, site: CallSite) -> None:
    (index, item), _ = _arguments(site, "insert", 2, 2)
    evaluator.allocate(len(receiver) + 1, site.span, "the list", added=1)
    evaluator.step(site.span, len(receiver))
    _native(list.insert, site, receiver, index, item)


def _list_sort(evaluator: Evaluator, receiver: list, site: CallSite) -> None:
    _, keywords = _arguments(site, "sort", 0, 0, ("key", "reverse"))
    receiver[:] = _sort(
        evaluator, list(receiver), keywords.get("key"), keywords.get("reverse", False), site
    )


def _update(evaluator: Evaluator, receiver: dict, site: CallSite) -> None:
    update = _dict(evaluator, site)
    evaluator.allocate(len(receiver) + len(update), site.span, "the dict", added=0)
    receiver.update(update)


def _dict_keyed(name: str, low: int, high: int) -> Method:
    """A dict method whose first argument is a key (``get``, ``pop``, ``setdefault``)."""

    def method(evaluator: Evaluator, receiver: dict, site: CallSite) -> Any:
        args, _ = _arguments(site, name, low, high)
        evaluator.hashable(args[0], site.arg_spans[0])
        if name == "setdefault":
            evaluator.allocate(len(receiver) + 1, site.span, "the dict", added=1)
        return _native(getattr(dict, name), site, receiver, *args)

    return method


_STRING_METHODS: dict[str, Method] = {
    name: _plain(name, 0, 0)
    for name in ("upper", "lower", "title", "capitalize", "swapcase", "casefold", "isdigit",
                 "isalpha", "isalnum", "isupper", "islower", "isspace", "isidentifier",
                 "isdecimal", "isnumeric")
}  # fmt: skip
_STRING_METHODS |= {name: _plain(name, 0, 1) for name in ("strip", "lstrip", "rstrip")}
_STRING_METHODS |= {
    "split": _plain("split", 0, 2, ("sep", "maxsplit")),
    "rsplit": _plain("rsplit", 0, 2, ("sep", "maxsplit")),
    "startswith": _plain("startswith", 1, 3),
    "endswith": _plain("endswith", 1, 3),
    "removeprefix": _plain("removeprefix", 1, 1),
    "removesuffix": _plain("removesuffix", 1, 1),
    "partition": _plain("partition", 1, 1),
    "rpartition": _plain("rpartition", 1, 1),
    "find": _plain("find", 1, 3),
    "rfind": _plain("rfind", 1, 3),
    "index": _plain("index", 1, 3),
    "rindex": _plain("rindex", 1, 3),
    "count": _plain("count", 1, 3),
    "replace": _growing("replace", 2, 3, _replaced),
    "zfill": _growing("zfill", 1, 1, _width),
    "center": _growing("center", 1, 2, _width),
    "ljust": _growing("ljust", 1, 2, _width),
    "rjust": _growing("rjust", 1, 2, _width),
    "join": _join,
    "format": _format_method,
}
_LIST_METHODS: dict[str, Method] = {
    "append": _append,
    "extend": _extend,
    "insert": _insert,
    "pop": _plain("pop", 0, 1),
    "remove": _searching("remove", 1, 1),
    "index": _searching("index", 1, 3),
    "count": _searching("count", 1, 1),
    "reverse": _plain("reverse", 0, 0),
    "sort": _list_sort,
    "copy": _plain("copy", 0, 0),
    "clear": _plain("clear", 0, 0),
}
_TUPLE_METHODS: dict[str, Method] = {
    "index": _searching("index", 1, 3),
    "count": _searching("count", 1, 1),
}
_DICT_METHODS: dict[str, Method] = {
    "get": _dict_keyed("get", 1, 2),
    "pop": _dict_keyed("pop", 1, 2),
    "setdefault": _dict_keyed("setdefault", 1, 2),
    "keys": _plain("keys", 0, 0),
    "values": _plain("values", 0, 0),
    "items": _plain("items", 0, 0),
    "popitem": _plain("popitem", 0, 0),
    "copy": _plain("copy", 0, 0),
    "clear": _plain("clear", 0, 0),
    "update": _update,
}
METHODS: dict[type, dict[str, Method]] = {
    str: _STRING_METHODS,
    list: _LIST_METHODS,
    tuple: _TUPLE_METHODS,
    dict: _DICT_METHODS,
}
"""The attributes of Python's values that a program may use, all methods."""


# ---------------------------------------------------------------------------------------------
# Text

_SPEC = re.compile(
    r"(?:(?P<fill>.)?(?P<align>[<>=^]))?(?P<sign>[-+ ])?z?#?0?(?P<width>\d+)?[_,]?"
    r"(?:\.(?P<precision>\d+))?(?P<type>[bcdeEfFgGnosxX%])?",
    re.S,
)
_PERCENT = re.compile(
    r"%(?:\((?P<key>[^)]*)\))?[#0\- +]*(?P<width>\*|\d+)?(?:\.(?P<precision>\*|\d+))?[hlL]?"
    r"(?P<type>.?)",
    re.S,
)


def _check_width(value: int, span: Span) -> None:
    if value > MAX_FORMAT_WIDTH:
        raise ConvcError(
            f"a format asks for a width or precision of {value:,}; convc allows at most "
            f"{MAX_FORMAT_WIDTH:,}",
            span,
        )


def _check_spec(spec: str, span: Span) -> None:
    match = _SPEC.fullmatch(spec)
    if match is None:
        raise ConvcError(f"invalid format specifier {spec!r}", span)
    for part in ("width", "precision"):
        if match.group(part):
            _check_width(int(match.group(part)), span)
    if match.group("type") == "n":
        raise ConvcError(
            "the 'n' format depends on the machine's locale, which a build must not", span,
            help="use 'd' or 'g'",
        )  # fmt: skip


def _printable(evaluator: Evaluator, value: Any, span: Span) -> None:
    """Refuse text of anything but Python's values, and text longer than ``MAX_ITEMS``."""
    estimate = 0
    stack = [(value, 0)]
    visited = 0
    while stack:
        item, depth = stack.pop()
        visited += 1
        kind = type(item)
        if kind is str:
            estimate += 4 * len(item) + 2
        elif kind in (int, bool, float, type(None), range):
            estimate += 110
        elif kind in (list, tuple, dict) or isinstance(
            item, (type({}.keys()), type({}.values()), type({}.items()))
        ):
            if depth >= MAX_NESTING:
                raise ConvcError(f"the value nests more than {MAX_NESTING} levels deep", span)
            children = list(item.items()) if kind is dict else list(item)
            estimate += 2 + 2 * len(children) + 10
            stack.extend((child, depth + 1) for child in children)
        else:
            raise ConvcError(f"convc makes no text of {describe(item)}", span)
        if estimate > 4 * MAX_ITEMS:
            raise ConvcError(f"the text would be longer than {MAX_ITEMS:,} characters", span)
    evaluator.step(span, visited)


def to_str(evaluator: Evaluator, value: Any, span: Span) -> str:
    """``str(value)``."""
    if type(value) is str:
        return value
    _printable(evaluator, value, span)
    text = str(value)
    evaluator.allocate(len(text), span, "the string")
    return text


def to_repr(evaluator: Evaluator, value: Any, span: Span) -> str:
    """``repr(value)``."""
    _printable(evaluator, value, span)
    text = repr(value)
    evaluator.allocate(len(text), span, "the string")
    return text


def format_value(evaluator: Evaluator, value: Any, spec: str, span: Span) -> str:
    """``format(value, spec)``: an f-string's field."""
    if type(value) is str and not spec:
        return value
    if spec:
        _check_spec(spec, span)
    _printable(evaluator, value, span)
    try:
        text = format(value, spec)
    except (ValueError, TypeError) as error:
        raise python_error(error, span) from None
    evaluator.allocate(len(text), span, "the string")
    return text


def percent_format(evaluator: Evaluator, template: str, args: Any, span: Span) -> str:
    """``template % args``."""
    stars = 0
    for match in _PERCENT.finditer(template):
        for part in ("width", "precision"):
            text = match.group(part)
            if text == "*":
                stars += 1
            elif text:
                _check_width(int(text), span)
        if match.group("type") == "n":
            raise ConvcError("the 'n' format is not a printf-style conversion", span)
    if stars:
        values = args if type(args) is tuple else (args,)
        for value in values:
            if type(value) is int:
                _check_width(abs(value), span)
    _printable(evaluator, args, span)
    try:
        text = template % args
    except (ValueError, TypeError, OverflowError) as error:
        raise python_error(error, span) from None
    except KeyError as error:
        raise ConvcError(f"key {error.args[0]!r} is not in the dict", span) from None
    evaluator.allocate(len(text), span, "the string")
    return text


def _field_name(field: str, span: Span) -> tuple[int | str, list[tuple[bool, int | str]]]:
    """A format field's argument (an index, a name or '' for the next) and what follows it:
    ``.attribute`` (True, name) or ``[key]`` (False, key), as ``str.format`` reads them."""
    match = re.match(r"[^.\[]*", field)
    assert match is not None
    head = match.group()
    first: int | str = int(head) if head.isdigit() else head
    rest: list[tuple[bool, int | str]] = []
    position = match.end()
    while position < len(field):
        if field[position] == ".":
            part = re.match(r"[^.\[]*", field[position + 1 :])
            assert part is not None
            if not part.group():
                raise ConvcError("Empty attribute in format string", span)
            rest.append((True, part.group()))
            position += 1 + part.end()
        elif field[position] == "[":
            close = field.find("]", position)
            if close < 0:
                raise ConvcError("Missing ']' in format string", span)
            key = field[position + 1 : close]
            if not key:
                raise ConvcError("Empty attribute in format string", span)
            rest.append((False, int(key) if key.isdigit() else key))
            position = close + 1
            if position < len(field) and field[position] not in ".[":
                raise ConvcError("Only '.' or '[' may follow ']' in format field specifier", span)
        else:
            raise ConvcError("Only '.' or '[' may follow ']' in format field specifier", span)
    return first, rest


class _Numbering:
    """The automatic numbering of ``{}`` fields, shared with the fields in their specs."""

    def __init__(self) -> None:
        self.next = 0
        self.manual: bool | None = None


def format_string(
    evaluator: Evaluator,
    template: str,
    args: list,
    keywords: dict,
    span: Span,
    depth: int = 2,
    numbering: _Numbering | None = None,
) -> str:
    """``template.format(*args, **keywords)``, Python's rules, without attribute access."""
    numbering = numbering or _Numbering()
    if depth < 0:
        raise ConvcError("Max string recursion exceeded", span)
    pieces = []
    length = 0
    try:
        fields = list(string.Formatter().parse(template))  # parses only; formats nothing
    except ValueError as error:
        raise python_error(error, span) from None
    for literal, field, spec, conversion in fields:
        pieces.append(literal)
        if field is None:
            continue
        first, rest = _field_name(field, span)
        if first == "":
            if numbering.manual:
                raise ConvcError(
                    "cannot switch from manual field specification to automatic field numbering",
                    span,
                )
            numbering.manual = False
            first = numbering.next
            numbering.next += 1
        elif isinstance(first, int):
            if numbering.manual is False:
                raise ConvcError(
                    "cannot switch from automatic field numbering to manual field specification",
                    span,
                )
            numbering.manual = True
        if isinstance(first, int):
            if first >= len(args):
                raise ConvcError(
                    f"Replacement index {first} out of range for positional args tuple", span
                )
            value = args[first]
        elif first in keywords:
            value = keywords[first]
        else:
            raise ConvcError(f"key {first!r} is not given to format()", span)
        for is_attribute, key in rest:
            if is_attribute:
                raise ConvcError(
                    f"a format field reads no attributes ('.{key}')",
                    span,
                    help="compute the value first, e.g. f'{x.shape}' or '{}'.format(x.shape)",
                )
            if type(value) not in (list, tuple, dict, str):
                raise ConvcError(f"'{type_name(value)}' object is not subscriptable", span)
            try:
                value = value[key]
            except (IndexError, TypeError) as error:
                raise python_error(error, span) from None
            except KeyError:
                raise ConvcError(f"key {key!r} is not in the dict", span) from None
        if conversion == "s":
            value = to_str(evaluator, value, span)
        elif conversion in ("r", "a"):
            value = to_repr(evaluator, value, span)
            if conversion == "a":
                value = value.encode("ascii", "backslashreplace").decode("ascii")
        elif conversion:
            raise ConvcError(f"Unknown conversion specifier {conversion}", span)
        if spec and "{" in spec:
            spec = format_string(evaluator, spec, args, keywords, span, depth - 1, numbering)
        pieces.append(format_value(evaluator, value, spec or "", span))
        length += len(pieces[-1]) + len(literal)
        evaluator.allocate(length, span, "the string", added=len(pieces[-1]) + len(literal))
    return "".join(pieces)
