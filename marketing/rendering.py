"""Render campaign templates safely.

Campaign templates are written by staff and treated as untrusted. They are Jinja2
templates rendered in an ``ImmutableSandboxedEnvironment`` from the plain data that
``marketing.context.build_context`` builds, with these rules:

- A misspelt variable is an error (``StrictUndefined``), never an empty string in a
  customer's inbox. HTML bodies are autoescaped; everything else is plain text.
- Templates stand alone: ``{% include %}``, ``{% import %}`` and ``{% extends %}`` are
  refused, and no loader reaches the file system.
- Limits: the source of one template (``TEMPLATE_MAX_BYTES``), the rendered message
  (``OUTPUT_MAX_BYTES``, counted as the output is produced) and a render deadline
  (``HERALD_TEMPLATE_DEADLINE_SECONDS``, default 2 s). Jinja2 has no timeout and signals
  only work on the main thread, so the deadline is cooperative: it is checked in the
  sandbox's call, attribute and item hooks, in every loop and block body, and as output
  is produced. Loops are capped at ``MAX_LOOP`` steps per ``range()``, and the operators
  and filters that can build large values check the size first.
- A line holding only tags (``{% if %}``, ``{% endfor %}``) leaves no blank line in the
  output; a tag inside a line of text keeps that line's newline.
- Every failure is a ``TemplateProblem`` naming the field, the line and the cause in
  words a marketer can act on.
"""

from __future__ import annotations

import difflib
import functools
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any

from jinja2 import TemplateSyntaxError, UndefinedError, meta, nodes
from jinja2.exceptions import SecurityError, TemplateRuntimeError
from jinja2.utils import missing
from markupsafe import escape

from marketing.context import ContextError

if TYPE_CHECKING:
    from jinja2 import Template

    from marketing.models import CampaignVariant
from marketing.sandbox import (  # noqa: F401  (re-exported: TemplateProblem and the limits)
    TEMPLATE_MAX_BYTES,
    OUTPUT_MAX_BYTES,
    _TEMPLATE_FILENAME,
    TemplateProblem,
    _Budget,
    _budget,
    deadline_seconds,
    _tick,
    _too_large,
    HeraldSandbox,
    _MissingValue,
    MAX_LOOP,
)

_ENVIRONMENTS = {False: HeraldSandbox(html=False), True: HeraldSandbox(html=True)}
_REFUSED_TAGS = (nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)
_UNKNOWN_NAME = re.compile(r"No (filter|test) named '([^']+)'")
_JINJA_WORDS = {"'end of print statement'": "'}}'", "'end of statement block'": "'%}'", "'name'": "a name"}


def _suggest(name: Any, options: Iterable[str], prefix: str = "") -> str:
    matches = difflib.get_close_matches(str(name), list(options), n=1, cutoff=0.6)
    return f" Did you mean '{prefix}{matches[0]}'?" if matches else ""


def _syntax_problem(error: TemplateSyntaxError | TemplateRuntimeError, line: int | None = None) -> TemplateProblem:
    message = (getattr(error, "message", None) or str(error)).strip()
    unknown = _UNKNOWN_NAME.search(message)
    if unknown:
        kind, name = unknown.groups()
        known = _ENVIRONMENTS[False].filters if kind == "filter" else _ENVIRONMENTS[False].tests
        text = f"there is no {kind} called '{name}'.{_suggest(name, known)}"
    else:
        for jinja, plain in _JINJA_WORDS.items():
            message = message.replace(jinja, plain)
        text = f"the template cannot be read: {message.rstrip('.')}."
    return TemplateProblem(text, kind="syntax", line=getattr(error, "lineno", None) or line)


# A line holding nothing but block tags or comments.
_TAG = r"(?:\{%(?:[^%\r\n]|%(?!\}))*%\}|\{#(?:[^#\r\n]|#(?!\}))*#\})"
_TAG_LINE = re.compile(rf"^[ \t]*({_TAG}(?:[ \t]*{_TAG})*)[ \t]*(\r?\n)", re.MULTILINE)
_TAG_CLOSE = re.compile(r"[-+]?[%#]\}$")


def _drop_tag_lines(source: str) -> str:
    """Make a line that holds only tags (``{% if %}``, ``{% endfor %}``) vanish from the
    output, while a tag inside a line of text keeps that line's newline. Jinja's
    ``trim_blocks`` would also eat the newline after ``Hi{% if x %} {{ x }}{% endif %}``
    and join it to the next line, which surprises anyone writing a plain-text message.
    The newline moves inside the last tag, so line numbers stay true."""

    def fold(line: re.Match[str]) -> str:
        tags, newline = line.group(1), line.group(2)
        close = _TAG_CLOSE.search(tags)
        assert close is not None
        return tags[: close.start()] + newline + tags[close.start() :]

    return _TAG_LINE.sub(fold, source)


@functools.lru_cache(maxsize=256)
def _compile(source: str, html: bool) -> Template:
    environment = _ENVIRONMENTS[html]
    try:
        tree = environment.parse(_drop_tag_lines(source))
        for node in tree.find_all(_REFUSED_TAGS):
            raise TemplateProblem(
                "a template cannot include, import or extend another template; copy what you need into this one",
                kind="security",
                line=node.lineno,
            )
        for name in tree.find_all(nodes.Name):
            # self.block() renders a block into one string outside every output limit.
            if name.name == "self" and name.ctx == "load":
                raise TemplateProblem(
                    "'self' is not available in campaign templates", kind="security", line=name.lineno
                )
        return environment.from_string(tree)
    except TemplateSyntaxError as error:
        raise _syntax_problem(error) from None
    except RecursionError:
        raise TemplateProblem("the template is nested too deeply to read", kind="syntax") from None


def _template_line(tb: TracebackType | None) -> int | None:
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == _TEMPLATE_FILENAME:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _missing_message(error: _MissingValue, context: Mapping[str, Any]) -> str:
    name, obj = error.name, error.obj
    if name is None:
        return f"{error.message}."
    if obj is missing:
        names = {*context, *_ENVIRONMENTS[False].globals}
        return f"'{name}' is not a variable you can use here.{_suggest(name, names)}"
    if isinstance(obj, Mapping):
        keys = [key for key in obj if isinstance(key, str)]
        owner = next((key for key, value in context.items() if value is obj), None)
        if owner:
            return f"'{owner}.{name}' is not a variable you can use here.{_suggest(name, keys, owner + '.')}"
        return f"'{name}' is not a field you can use here.{_suggest(name, keys)}"
    if isinstance(obj, (list, tuple)):
        return f"there is no item {name} in that list (it has {len(obj)})."
    return f"'{name}' is not something you can use here."


def _explain(error: BaseException, context: Mapping[str, Any]) -> TemplateProblem:
    line = _template_line(error.__traceback__)
    if isinstance(error, TemplateProblem):
        error.line = error.line or line
        return error
    if isinstance(error, _MissingValue):
        return TemplateProblem(_missing_message(error, context), kind="undefined", line=line)
    if isinstance(error, SecurityError):
        return TemplateProblem("that is not allowed in a template.", kind="security", line=line)
    if isinstance(error, UndefinedError):
        return TemplateProblem(f"{error.message}.", kind="undefined", line=line)
    if isinstance(error, ContextError):
        return TemplateProblem(str(error), kind="context", line=line)
    if isinstance(error, (TemplateSyntaxError, TemplateRuntimeError)) and _UNKNOWN_NAME.search(str(error)):
        return _syntax_problem(error, line)
    if isinstance(error, RecursionError):
        return TemplateProblem("a macro calls itself too many times.", kind="loop", line=line)
    if isinstance(error, MemoryError):
        return TemplateProblem(_too_large().message, kind="output", line=line)
    if isinstance(error, ZeroDivisionError):
        return TemplateProblem("this divides by zero.", kind="error", line=line)
    if isinstance(error, ArithmeticError):
        return TemplateProblem("this calculation has no answer (a number too large, or not a number).", line=line)
    return TemplateProblem(f"this could not be worked out: {error}.", kind="error", line=line)


@contextmanager
def _budgeted() -> Iterator[None]:
    """One budget (deadline and output size) for everything rendered inside it."""
    if _budget.get() is not None:
        yield
        return
    seconds = deadline_seconds()
    token = _budget.set(_Budget(seconds=seconds, deadline=time.monotonic() + seconds))
    try:
        yield
    finally:
        _budget.reset(token)


def _render(source: str, context: Mapping[str, Any], *, html: bool, label: str) -> str:
    if len(source.encode()) > TEMPLATE_MAX_BYTES:
        raise TemplateProblem(
            f"the template is longer than {TEMPLATE_MAX_BYTES // 1024} kB; shorten it.", kind="size", template=label
        )
    budget = _budget.get()
    assert budget is not None
    pieces: list[str] = []
    try:
        for chunk in _compile(source, html).generate(dict(context)):
            budget.output += len(chunk) if chunk.isascii() else len(chunk.encode())
            if budget.output > OUTPUT_MAX_BYTES:
                raise _too_large()
            _tick()
            pieces.append(chunk)
    except Exception as error:  # every failure of untrusted code becomes a problem we can show
        problem = _explain(error, context)
        problem.template = problem.template or label
        raise problem from error
    return "".join(pieces)


def render_text(source: str, context: Mapping[str, Any], *, name: str = "the template") -> str:
    """Render one plain-text template within the limits; ``name`` says which template
    errors are about ("the alert text"). Raises ``TemplateProblem``."""
    with _budgeted():
        return _render(source, context, html=False, label=name)


def render_html(source: str, context: Mapping[str, Any], *, name: str = "the template") -> str:
    """Render one HTML template (autoescaped) within the limits. Raises ``TemplateProblem``."""
    with _budgeted():
        return _render(source, context, html=True, label=name)


def check_template(source: str, *, html: bool = False, name: str = "the template") -> None:
    """Raise ``TemplateProblem`` if ``source`` cannot be compiled (for saving a template)."""
    if len(source.encode()) > TEMPLATE_MAX_BYTES:
        raise TemplateProblem(
            f"the template is longer than {TEMPLATE_MAX_BYTES // 1024} kB; shorten it.", kind="size", template=name
        )
    try:
        _compile(source, html)
    except TemplateProblem as problem:
        problem.template = name
        raise


@dataclass(frozen=True)
class RenderedContent:
    subject: str = ""
    preheader: str = ""
    text: str = ""
    html: str = ""
    title: str = ""
    link: str = ""
    image_url: str = ""
    template_parameters: list[str] = field(default_factory=list)


# (model field, result field, how errors name it, HTML?, one line?)
_VARIANT_FIELDS = (
    ("subject", "subject", "the subject", False, True),
    ("preheader", "preheader", "the preheader", False, True),
    ("html_body", "html", "the HTML body", True, False),
    ("text_body", "text", "the text", False, False),
    ("title", "title", "the title", False, True),
    ("link", "link", "the link", False, True),
    ("image_url", "image_url", "the image URL", False, True),
)
_BODY_TAG = re.compile(r"<body\b[^>]*>", re.IGNORECASE)


def _one_line(text: str) -> str:
    return re.sub(r"\s*[\r\n]+\s*", " ", text).strip()


def _with_preheader(html: str, preheader: str) -> str:
    # The hidden preview text mail clients show beside the subject; the padding keeps
    # them from running on into the body's first words.
    hidden = (
        '<div style="display:none;max-height:0;max-width:0;opacity:0;overflow:hidden;mso-hide:all;">'
        f"{escape(preheader)}{'&#847;&zwnj;&nbsp;' * 40}</div>"
    )
    body = _BODY_TAG.search(html)
    if body is None:
        return hidden + html
    return html[: body.end()] + hidden + html[body.end() :]


def render_variant(variant: CampaignVariant, context: Mapping[str, Any]) -> RenderedContent:
    """Render every non-empty field of ``variant`` with one deadline and one output limit
    for the whole message. The HTML body is autoescaped, everything else is plain text;
    subject, preheader, title, link and image URL come out on one line. A preheader is
    also put into the HTML as hidden preview text. Each WhatsApp parameter is an
    expression or a template (``parameter_template``). Raises ``TemplateProblem``
    naming the field."""
    values: dict[str, Any] = {}
    with _budgeted():
        for attribute, key, label, html, one_line in _VARIANT_FIELDS:
            source = getattr(variant, attribute) or ""
            if source.strip():
                rendered = _render(source, context, html=html, label=label)
                values[key] = _one_line(rendered) if one_line else rendered
        parameters = variant.template_parameters or []
        if not isinstance(parameters, list):
            raise TemplateProblem("the WhatsApp parameters must be a list of templates.", template="the variant")
        values["template_parameters"] = [
            _one_line(_render(parameter_template(source), context, html=False, label=f"WhatsApp parameter {number}"))
            for number, source in enumerate(parameters, start=1)
        ]
    if values.get("html") and values.get("preheader"):
        values["html"] = _with_preheader(values["html"], values["preheader"])
    return RenderedContent(**values)


def parameter_template(parameter: Any) -> str:
    """A WhatsApp parameter is an expression (``order.number``) or a small template
    (``{{ order.number }} of {{ shop.name }}``); this is it as a template."""
    text = str(parameter)
    return text if "{{" in text or "{%" in text else "{{ " + text + " }}"


def _attribute_path(node: nodes.Node) -> str | None:
    parts: list[str] = []
    while isinstance(node, (nodes.Getattr, nodes.Getitem)):
        if isinstance(node, nodes.Getattr):
            parts.append(node.attr)
        elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            parts.append(node.arg.value)
        else:
            return None
        node = node.node
    if not isinstance(node, nodes.Name):
        return None
    return ".".join([node.name, *reversed(parts)])


def template_variables(source: str) -> set[str]:
    """The context names a template uses and the attribute paths it reads on them:
    ``{"message", "message.unsubscribe_url", "shop", "shop.name"}``. Loop variables
    and names the template sets itself are left out; a path read through such an
    alias (``{% set m = message %}{{ m.unsubscribe_url }}``) is not seen.
    Raises ``TemplateProblem`` for a template that cannot be read."""
    try:
        tree = _ENVIRONMENTS[False].parse(source)
    except TemplateSyntaxError as error:
        raise _syntax_problem(error) from None
    roots = meta.find_undeclared_variables(tree)
    found = set(roots)
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        path = _attribute_path(node)
        if path and path.split(".", 1)[0] in roots:
            found.add(path)
    return found

