"""The Jinja2 sandbox campaign templates render in: limits, the cooperative deadline,
and the guards on operators and filters that could build huge values. See
``marketing.rendering`` for the rules and the public functions."""

from __future__ import annotations

import functools
import itertools
import re
import time
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from decimal import Decimal
from types import BuiltinMethodType, MethodType
from typing import Any

from django.conf import settings
from jinja2 import StrictUndefined, UndefinedError, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace, missing

from marketing.context import FILTERS


TEMPLATE_MAX_BYTES = 100 * 1024
OUTPUT_MAX_BYTES = 512 * 1024
DEFAULT_DEADLINE_SECONDS = 2.0
MAX_LOOP = 10_000
# Numbers beyond ~3,000 digits have no place in a message and cost quadratic time to
# print or convert (int() of a Decimal with 500,000 digits takes seconds, uninterrupted).
MAX_NUMBER_BITS = 10_000
MAX_DECIMAL_EXPONENT = 3_000
MAX_FORMAT_WIDTH = 1_000
_MAX_DEPTH = 20
_TEMPLATE_FILENAME = "<template>"


class TemplateProblem(Exception):
    """A template that cannot be rendered, said so a marketer can fix it.

    ``template`` names the field ("the HTML body"), ``line`` is the template line when
    known, ``kind`` is one of syntax, undefined, security, deadline, output, size, loop,
    context or error, and ``message`` is the cause without the location.
    """

    def __init__(self, message: str, *, kind: str = "error", template: str = "", line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.template = template
        self.line = line

    def __str__(self) -> str:
        if self.line and self.template:
            return f"Line {self.line} of {self.template}: {self.message}"
        if self.template:
            return f"In {self.template}: {self.message}"
        return self.message[:1].upper() + self.message[1:]


# --- The per-render budget -------------------------------------------------------------


@dataclass
class _Budget:
    seconds: float
    deadline: float
    output: int = 0


_budget: ContextVar[_Budget | None] = ContextVar("herald_render_budget", default=None)


def deadline_seconds() -> float:
    return float(getattr(settings, "HERALD_TEMPLATE_DEADLINE_SECONDS", DEFAULT_DEADLINE_SECONDS))


def _tick() -> None:
    budget = _budget.get()
    if budget is not None and time.monotonic() > budget.deadline:
        raise TemplateProblem(
            f"the template took longer than {budget.seconds:g} s to render (a very long loop?)", kind="deadline"
        )


def _too_large() -> TemplateProblem:
    return TemplateProblem(f"the rendered message is larger than {OUTPUT_MAX_BYTES // 1024} kB", kind="output")


def _weight(value: Any, depth: int = 0) -> int:
    """About how many characters ``value`` becomes when printed; stops counting once past
    the output limit. Lists may hold one large string many times, so items are counted."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, Mapping):
        items: Iterable[Any] = (part for pair in value.items() for part in pair)
    elif isinstance(value, (list, tuple, set, frozenset)):
        items = value
    else:
        return 8
    if depth > _MAX_DEPTH:
        return OUTPUT_MAX_BYTES + 1
    total = 2
    for item in items:
        total += 2 + _weight(item, depth + 1)
        if total > OUTPUT_MAX_BYTES:
            break
    return total


def _check_size(*values: Any) -> None:
    if sum(_weight(value) for value in values) > OUTPUT_MAX_BYTES:
        raise _too_large()


def _check_number(value: Any) -> None:
    if isinstance(value, int):
        too_large = value.bit_length() > MAX_NUMBER_BITS
    elif isinstance(value, Decimal):
        too_large = value.is_finite() and abs(value.adjusted()) > MAX_DECIMAL_EXPONENT
    else:
        return
    if too_large:
        raise TemplateProblem("that number is too large", kind="output")


def _check_result(value: Any) -> None:
    _check_number(value)
    _check_size(value)


def _check_int_args(args: Iterable[Any]) -> None:
    for arg in args:
        if isinstance(arg, int) and not isinstance(arg, bool) and abs(arg) > OUTPUT_MAX_BYTES:
            raise _too_large()


_PRINTF = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?")


def _check_printf(fmt: str, values: Any) -> None:
    for width, precision in _PRINTF.findall(fmt):
        for number in (width, precision):
            if number == "*" or (number and int(number) > MAX_FORMAT_WIDTH):
                raise TemplateProblem(
                    f"a number format wider than {MAX_FORMAT_WIDTH} characters is not allowed", kind="output"
                )
    _check_size(fmt, values)


def _check_replace(text: str, old: str, new: str, count: int | None = None) -> None:
    if len(new) > len(old):
        found = text.count(old) if old else len(text) + 1
        if count is not None and count >= 0:
            found = min(found, count)
        if len(text) + found * (len(new) - len(old)) > OUTPUT_MAX_BYTES:
            raise _too_large()


def _check_join(separator: str, items: list[Any] | str) -> None:
    if _weight(items) + len(separator) * len(items) > OUTPUT_MAX_BYTES:
        raise _too_large()


class _OutputBuffer(list[str]):
    """The buffer of a macro, a ``{% set %}`` block or a ``{% filter %}`` block: capped,
    since such output is gathered in memory before anything is counted."""

    size = 0

    def append(self, item: str) -> None:
        self._count(item)
        super().append(item)

    def extend(self, items: Iterable[str]) -> None:
        for item in items:
            self.append(item)

    def _count(self, item: Any) -> None:
        _tick()
        self.size += len(item) if isinstance(item, str) else 8
        if self.size > OUTPUT_MAX_BYTES:
            raise _too_large()


class _BoundedNamespace(Namespace):
    """``namespace()`` whose attributes cannot grow past the output limit, so
    ``{% set ns.s = ns.s ~ ns.s %}`` in a loop cannot eat the worker's memory."""

    def __setitem__(self, name: str, value: Any) -> None:
        _tick()
        _check_size(value)
        Namespace.__setitem__(self, name, value)


def _bounded_range(*args: int) -> range:
    numbers = range(*args)
    if len(numbers) > MAX_LOOP:
        raise TemplateProblem(f"a loop may run at most {MAX_LOOP:,} times", kind="loop")
    return numbers


# --- The sandbox ---------------------------------------------------------------------------


class _GuardedCodeGenerator(CodeGenerator):
    """Adds the deadline check to every loop and block body, caps in-memory output
    buffers, and sizes ``~`` concatenations before they are joined."""

    def blockvisit(self, body: Iterable[nodes.Node], frame: Frame) -> None:
        self.writeline("environment.tick()")
        super().blockvisit(body, frame)

    def buffer(self, frame: Frame) -> None:
        frame.buffer = self.temporary_identifier()
        self.writeline(f"{frame.buffer} = environment.output_buffer()")

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        if frame.eval_ctx.volatile:
            join = "(markup_join if context.eval_ctx.volatile else str_join)"
        elif frame.eval_ctx.autoescape:
            join = "markup_join"
        else:
            join = "str_join"
        self.write(f"{join}(environment.sized_parts((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write(")))")


# str methods a template may call; the rest (format, encode, translate, expandtabs, ...)
# either escape the sandbox's view of strings or build unbounded output.
_STR_METHODS = frozenset(
    "capitalize casefold center count endswith find index isalnum isalpha isascii isdecimal isdigit islower "
    "isnumeric isspace istitle isupper join ljust lower lstrip partition removeprefix removesuffix replace rfind "
    "rindex rjust rpartition rsplit rstrip split splitlines startswith strip swapcase title upper zfill striptags "
    "unescape".split()
)
# Built-in filters whose arguments decide the size of what they build.
_SIZED_FILTERS = frozenset({"center", "indent", "wordwrap", "batch", "slice", "truncate"})


class HeraldSandbox(ImmutableSandboxedEnvironment):
    """The Jinja2 environment for campaign templates (see the module docstring)."""

    # Every operator, so that no operation can build a number too large to print.
    intercepted_binops = frozenset({"*", "**", "+", "-", "/", "//", "%"})
    code_generator_class = _GuardedCodeGenerator

    def __init__(self, *, html: bool) -> None:
        super().__init__(
            autoescape=html,
            undefined=_StrictUndefined,
            loader=None,
            finalize=_finalize,
            cache_size=0,
            auto_reload=False,
        )
        self.globals.pop("lipsum", None)  # its paragraph count is unbounded and unchecked
        self.filters.pop("urlize", None)  # writes its target and rel into every word that looks like a link
        self.globals["range"] = _bounded_range
        self.globals["namespace"] = _BoundedNamespace
        self.filters.update(FILTERS)
        self.filters = {name: _guard_filter(name, func) for name, func in self.filters.items()}

    # Hooks called from compiled templates.
    tick = staticmethod(_tick)
    output_buffer = _OutputBuffer

    @staticmethod
    def sized_parts(parts: tuple[Any, ...]) -> tuple[Any, ...]:
        _tick()
        _check_size(parts)
        return parts

    def getattr(self, obj: Any, attribute: str) -> Any:
        _tick()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        _tick()
        return super().getitem(obj, argument)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        _tick()
        if isinstance(__obj, (BuiltinMethodType, MethodType)) and isinstance(getattr(__obj, "__self__", None), str):
            args = _check_str_method(__obj, args)
        if isinstance(__obj, BuiltinMethodType):
            _check_int_args((*args, *kwargs.values()))
        result = super().call(__context, __obj, *args, **kwargs)
        _check_result(result)
        return result

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _tick()
        if operator == "**" and isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
            if right * left.bit_length() > MAX_NUMBER_BITS:
                raise TemplateProblem("that number is too large", kind="output")
        elif operator == "*":
            _check_repeat(left, right)
        elif operator == "%" and isinstance(left, str):
            _check_printf(left, right)
        elif operator == "+":
            _check_size(left, right)
        result = super().call_binop(context, operator, left, right)
        _check_number(result)
        return result

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        # Methods bound to a class reach past the data: datetime.now() reads the real
        # clock (the send's time is message.sending_datetime), ZoneInfo.clear_cache()
        # changes the process.
        if isinstance(value, (MethodType, BuiltinMethodType)) and isinstance(getattr(value, "__self__", None), type):
            return False
        return super().is_safe_attribute(obj, attr, value)

    def wrap_str_format(self, value: Any) -> Any:
        # str.format walks attributes with its own mini-language; templates use filters.
        if super().wrap_str_format(value) is None:
            return None
        return self.undefined("str.format is not available in templates", name="format", exc=SecurityError)


def _check_repeat(left: Any, right: Any) -> None:
    if isinstance(left, int) and isinstance(right, int):
        if left.bit_length() + right.bit_length() > MAX_NUMBER_BITS:
            raise TemplateProblem("that number is too large", kind="output")
        return
    times, sequence = (left, right) if isinstance(left, int) else (right, left)
    if isinstance(times, int) and times > 0 and _weight(sequence) * times > OUTPUT_MAX_BYTES:
        raise _too_large()


def _bounded_list(items: Iterable[Any]) -> list[Any]:
    found = list(itertools.islice(iter(items), MAX_LOOP + 1))
    if len(found) > MAX_LOOP:
        raise TemplateProblem(f"a list may hold at most {MAX_LOOP:,} items here", kind="loop")
    return found


def _check_str_method(method: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
    name = method.__name__
    if name not in _STR_METHODS:
        raise SecurityError(f"str.{name} is not available in templates")
    if name == "replace" and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
        _check_replace(method.__self__, *args[:3])
    elif name == "join" and args:
        items = args[0] if isinstance(args[0], str) else _bounded_list(args[0])
        _check_join(method.__self__, items)
        args = (items, *args[1:])
    return args


def _guard_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    internal = 1 if getattr(func, "jinja_pass_arg", None) is not None else 0

    @functools.wraps(func)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        _tick()
        values = args[internal:]
        if name == "join" and values:
            if not isinstance(values[0], str):
                values = (_bounded_list(values[0]), *values[1:])
                args = (*args[:internal], *values)
            _check_join(str(kwargs.get("d", values[1] if len(values) > 1 else "")), values[0])
        elif name == "replace" and len(values) >= 3:
            _check_replace(str(values[0]), str(values[1]), str(values[2]), *values[3:4])
        elif name == "format" and values:
            _check_printf(str(values[0]), (*values[1:], *kwargs.values()))
        elif name == "wordwrap" and values:
            text, width = str(values[0]), values[1] if len(values) > 1 else kwargs.get("width", 79)
            wrap = values[3] if len(values) > 3 else kwargs.get("wrapstring")
            lines = len(text) // max(int(width), 1) + text.count("\n") + 1
            _check_size(text, " " * min(lines * len(str(wrap or "\n")), OUTPUT_MAX_BYTES + 1))
        elif name == "indent" and values:
            width = values[1] if len(values) > 1 else kwargs.get("width", 4)
            text = str(values[0])
            extra = width if isinstance(width, int) else len(str(width))
            _check_size(text, " " * min(extra * (text.count("\n") + 1), OUTPUT_MAX_BYTES + 1))
        if name in _SIZED_FILTERS:
            _check_int_args((*values[1:], *kwargs.values()))
            if name in {"batch", "slice"} and any(isinstance(v, int) and v > MAX_LOOP for v in values[1:2]):
                raise TemplateProblem(f"a loop may run at most {MAX_LOOP:,} times", kind="loop")
        _check_size(*values, *kwargs.values())
        result = func(*args, **kwargs)
        _check_result(result)
        return result

    return guarded


def _finalize(value: Any) -> Any:
    _tick()
    _check_result(value)
    return value


class _MissingValue(UndefinedError):
    """An undefined name or field, with what was asked for, to suggest a correction."""

    def __init__(self, message: str | None = None, *, name: Any = None, obj: Any = missing) -> None:
        super().__init__(message)
        self.name = name
        self.obj = obj


class _StrictUndefined(StrictUndefined):
    __slots__ = ()

    def __init__(self, hint: str | None = None, obj: Any = missing, name: str | None = None, exc: Any = UndefinedError):
        if exc is UndefinedError:
            exc = functools.partial(_MissingValue, name=name, obj=obj)
        super().__init__(hint, obj, name, exc)


# --- Compiling and rendering -----------------------------------------------------------
