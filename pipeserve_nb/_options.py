"""Settings declared once: each option is a dataclass field with its default, rule, unit and help.

    max_queue: int = option(256, Int(), "requests waiting before a fast 503", unit="requests")

A settings class calls ``check_fields(self)`` in its ``__post_init__``: every declared field
is checked against its rule, and a value that breaks it raises ``InvalidSetting`` with a
message that states the rule (``max_queue must be an int >= 1, got 0``). The command line,
the ``PIPESERVE_*`` environment variables and the README's option table are derived from
these declarations (``_server/run/settings.py``); nothing else lists the options.

The rules (``Int``, ``Number``, ``Flag``, ``Text``, ``Custom``) are shared by every check of
a value a user passes, the load shapes of the measurement side included.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, Protocol

from ._exceptions import InvalidSetting

__all__ = [
    "Rule",
    "Int",
    "Number",
    "Flag",
    "Text",
    "Custom",
    "Option",
    "option",
    "check",
    "check_fields",
    "declared",
    "parse_text",
    "NOT_SET",
]


class _NotSet:
    def __repr__(self) -> str:
        return "NOT_SET"


NOT_SET: Any = _NotSet()
"""``Option.cli_default`` when the command line uses the declared default."""


class Rule(Protocol):
    """Which values an option takes, in words and in code."""

    @property
    def words(self) -> str:
        """The rule as the end of "``name`` must be ...", e.g. "an int >= 1"."""
        ...

    def accepts(self, value: Any) -> bool:
        """Whether ``value`` keeps the rule."""
        ...

    def parse(self, text: str) -> Any:
        """The value a command-line or environment string stands for (``ValueError`` if none)."""
        ...


def _none_word(text: str) -> bool:
    return text.strip().lower() in ("", "none")


@dataclass(frozen=True)
class Int:
    """An ``int`` (not a ``bool``) from ``min`` to ``max``; with ``optional``, None too."""

    min: int = 1
    max: int | None = None
    optional: bool = False

    @property
    def words(self) -> str:
        bound = f"an int >= {self.min}" if self.max is None else f"an int from {self.min} to {self.max}"
        return f"None or {bound}" if self.optional else bound

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.optional
        in_range = isinstance(value, int) and value >= self.min and (self.max is None or value <= self.max)
        return not isinstance(value, bool) and in_range

    def parse(self, text: str) -> Any:
        return None if self.optional and _none_word(text) else int(text)


@dataclass(frozen=True)
class Number:
    """A finite ``int`` or ``float`` (not a ``bool``) >= ``min`` (> ``min`` when ``strict``)."""

    min: float = 0.0
    strict: bool = False
    of: str = ""
    optional: bool = False

    @property
    def words(self) -> str:
        of = f" of {self.of}" if self.of else ""
        bound = f"a finite number{of} {'>' if self.strict else '>='} {self.min:g}"
        return f"None or {bound}" if self.optional else bound

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.optional
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        return value > self.min if self.strict else value >= self.min

    def parse(self, text: str) -> Any:
        return None if self.optional and _none_word(text) else float(text)


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


@dataclass(frozen=True)
class Flag:
    """``True`` or ``False``; spelled 1/true/yes/on or 0/false/no/off in the environment."""

    @property
    def words(self) -> str:
        return "True or False"

    def accepts(self, value: Any) -> bool:
        return isinstance(value, bool)

    def parse(self, text: str) -> Any:
        word = text.strip().lower()
        if word in _TRUE or word in _FALSE:
            return word in _TRUE
        raise ValueError(f"not one of {', '.join(_TRUE + _FALSE)}")


@dataclass(frozen=True)
class Text:
    """A ``str`` of at least ``min_length`` characters (ASCII only with ``ascii``); with
    ``optional``, None too (an empty string in the environment)."""

    min_length: int = 1
    ascii: bool = False
    optional: bool = False

    @property
    def words(self) -> str:
        kind = "an ASCII string" if self.ascii else "a string"
        length = f" of {self.min_length}+ characters" if self.min_length > 1 else " that is not empty"
        return f"None or {kind}{length}" if self.optional else f"{kind}{length}"

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.optional
        return isinstance(value, str) and len(value) >= self.min_length and (value.isascii() or not self.ascii)

    def parse(self, text: str) -> Any:
        return None if self.optional and not text else text


@dataclass(frozen=True)
class Custom:
    """A rule of its own: ``accepts_fn`` checks a value, ``parse_fn`` reads a string."""

    description: str
    accepts_fn: Callable[[Any], bool]
    parse_fn: Callable[[str], Any]

    @property
    def words(self) -> str:
        return self.description

    def accepts(self, value: Any) -> bool:
        return self.accepts_fn(value)

    def parse(self, text: str) -> Any:
        return self.parse_fn(text)


@dataclass(frozen=True)
class Option:
    """How one setting is declared (see ``option``)."""

    rule: Rule
    help: str
    unit: str = ""
    hint: str = ""
    secret: bool = False
    cli_default: Any = NOT_SET


def option(
    default: Any,
    rule: Rule,
    help: str,
    *,
    unit: str = "",
    hint: str = "",
    secret: bool = False,
    cli_default: Any = NOT_SET,
) -> Any:
    """Declare a settings field: its default, its rule, a one-line help, and its unit.

    ``hint`` is added to the error message (e.g. "1 means no batching"); a ``secret`` is
    never shown in ``repr`` nor taken as a command-line flag (only from its environment
    variable); ``cli_default`` is the command line's own default where a standalone server
    needs another one (a fixed port, say).
    """
    meta = Option(rule=rule, help=help, unit=unit, hint=hint, secret=secret, cli_default=cli_default)
    return field(default=default, repr=not secret, metadata={"option": meta})


def check(name: str, value: Any, rule: Rule, hint: str = "", *, secret: bool = False) -> None:
    """Raise ``InvalidSetting`` unless ``value`` keeps ``rule`` (a secret value is not shown)."""
    if not rule.accepts(value):
        got = "" if secret else f", got {value!r}"
        raise InvalidSetting(f"{name} must be {rule.words}{f' ({hint})' if hint else ''}{got}")


def check_fields(settings: Any) -> None:
    """Check every declared field of a settings dataclass instance against its rule."""
    for name, _, meta in declared(type(settings)):
        check(name, getattr(settings, name), meta.rule, meta.hint, secret=meta.secret)


def declared(cls: type) -> list[tuple[str, Any, Option]]:
    """``(name, default, Option)`` for each declared field of the settings class ``cls``."""
    return [(f.name, f.default, f.metadata["option"]) for f in fields(cls) if "option" in f.metadata]


def parse_text(name: str, text: str, meta: Option) -> Any:
    """The value ``text`` (from the command line or the environment) gives option ``name``."""
    try:
        value = meta.rule.parse(text)
    except ValueError:
        got = "" if meta.secret else f", got {text!r}"
        raise InvalidSetting(f"{name} must be {meta.rule.words}{got}") from None
    check(name, value, meta.rule, meta.hint, secret=meta.secret)
    return value
