"""The names of the models one server holds: what requests route by (``model`` on ``/v1``, the path of
``POST /models/{name}``) and what ``/v1/models``, ``/stats`` and ``/metrics`` call them.

A name is given (a mapping's key, or ``NAME=SPEC`` on the command line and in ``serve()``'s strings), or taken
from the model: the bundled models' short names (``minilm``, ``smollm2``), a Hub id as written
(``org/model``), a local folder's last part, a pipeline's model id, a callable's ``__name__``, a runner's class.
Two models of one server may not share a name.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

from .._exceptions import InvalidSetting
from .spec import BUNDLED, LoadedModel, bundled_name

__all__ = ["NAME", "named", "name_of", "plain_name", "split_named"]

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
"""A name one may give: a letter or digit, then letters, digits, ``.``, ``_``, ``-`` (64 at most)."""


def split_named(text: str) -> tuple[str | None, str]:
    """``"emb=minilm"`` -> ``("emb", "minilm")``; a spec without a name (no ``=``, or a path) -> ``(None, text)``."""
    name, sep, spec = text.partition("=")
    if sep and NAME.fullmatch(name):
        return name, spec
    return None, text


def name_of(model: Any, task: str | None = None) -> str:
    """The name a model is served under when none is given."""
    bundled = bundled_name(model, task)
    if bundled is not None:
        return bundled
    if isinstance(model, (str, os.PathLike)):
        text = os.fspath(model)
        return os.path.basename(os.path.normpath(text)) if os.path.isdir(text) else text
    if isinstance(model, LoadedModel):
        short = next((short for short, (_, human) in BUNDLED.items() if human == model.name), None)
        return short or plain_name(model.name)
    source = getattr(getattr(model, "model", None), "name_or_path", None)  # a transformers pipeline
    if isinstance(source, str) and source:
        return os.path.basename(os.path.normpath(source)) if os.path.isdir(source) else source
    return plain_name(str(getattr(model, "__name__", None) or type(model).__name__))


def plain_name(text: str) -> str:
    """``text`` as a name: a parenthesised remark dropped, spaces made dashes."""
    return re.sub(r"\s*\(.*\)$", "", text).strip().replace(" ", "-") or "model"


def named(models: Mapping[str, Any] | Sequence[Any], task: str | None = None) -> dict[str, Any]:
    """Each model by its name, in order: a mapping as given; in a sequence, ``NAME=SPEC`` strings named, the
    rest by ``name_of``. ``InvalidSetting`` for an empty set, a bad name, or two models with one name."""
    pairs: list[tuple[str, Any]] = []
    if isinstance(models, Mapping):
        pairs = [(str(name), model) for name, model in models.items()]
    else:
        for model in models:
            name, spec = split_named(model) if isinstance(model, str) else (None, model)
            pairs.append((name or name_of(spec, task), spec))
    if not pairs:
        raise InvalidSetting("serve at least one model")
    found: dict[str, Any] = {}
    for name, model in pairs:
        if not name or any(c.isspace() for c in name):
            raise InvalidSetting(f"a model's name must be a non-empty word, got {name!r}")
        if name in found:
            raise InvalidSetting(
                f"two models are named {name!r}: give each its own name (a dict of name to model, or a "
                f"string NAME=SPEC such as '{name}-2=...')"
            )
        found[name] = model
    return found
