"""The one settings source: every server option, declared once, and all that is derived from it.

Four sections, each a frozen dataclass whose fields are declared with ``option()``
(type, default, rule, unit, one-line help):

- ``model``  -> ``ModelSpec``: ``model``, ``task``, ``device`` (``serve()`` keywords);
- ``address`` -> ``Address``: ``host``, ``port``, ``allow_unauthenticated``, ``public_url`` (``serve()``
  keywords);
- ``policy`` -> ``BatchPolicy`` (``serve(policy=...)``);
- ``config`` -> ``ServerConfig`` (``serve(config=...)``).

Derived from those declarations, here and nowhere else:

- the command line's flags (``add_arguments``, ``from_command_line``): ``--max-batch-size 16``,
  ``--no-sort-by-length``; a secret (the token) is read from its environment variable only;
- the ``PIPESERVE_*`` environment variables (``from_environment``), read by ``asgi.py`` and,
  beneath the flags, by the command line;
- the README's option table (``markdown_table``).

A new option is one more ``option()`` field in its section; ``tests/server/test_settings.py``
checks that every declared option reaches ``serve()``, the command line, the environment
and the README.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from ..._exceptions import InvalidSetting
from ..._models.naming import name_of, named
from ..._models.spec import ModelSpec
from ..._options import NOT_SET, Custom, Flag, Int, Option, Text, check_fields, declared, option, parse_text
from ..core.config import ServerConfig
from ..core.policy import BatchPolicy
from .reach import is_public_url

__all__ = [
    "Address",
    "address_of",
    "RayPlacement",
    "check_ray_address",
    "Settings",
    "SECTIONS",
    "env_name",
    "flag_name",
    "add_arguments",
    "from_command_line",
]
__all__ += ["from_environment", "section_from_command_line", "markdown_table", "refuse_unused", "ENV_PREFIX"]

ENV_PREFIX = "PIPESERVE_"

T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class Address:
    """Where a standalone or notebook server listens."""

    host: str = option("127.0.0.1", Text(), "address to bind; any but loopback needs auth_token")
    port: int = option(0, Int(min=0, max=65535), "port to bind; 0 picks a free one", cli_default=8000)
    allow_unauthenticated: bool = option(False, Flag(), "bind a non-loopback host without a token (warns)")
    public_url: str | None = option(
        None,
        Custom(
            "None or an http(s) URL or a path from /, {port} where the port goes", is_public_url, lambda t: t or None
        ),
        "the URL a browser opens, {port} filled in (else found: Colab, JupyterHub, SSH; docs/reach.md)",
    )

    def __post_init__(self) -> None:
        check_fields(self)


def address_of(host: str, port: int, allow_unauthenticated: bool, public_url: str | None) -> Address:
    """The address keywords of ``serve()``, ``serve_app()`` and ``serve_on_ray()``, checked; ``public_url`` from
    ``PIPESERVE_PUBLIC_URL`` when not given (an image for a hub may set it for every notebook, as the Jupyter
    docker-stacks set ``TENSORBOARD_PROXY_URL``); the other keywords are never read from the environment."""
    if public_url is None:
        public_url = os.environ.get(env_name("public_url")) or None
    return Address(host=host, port=port, allow_unauthenticated=allow_unauthenticated, public_url=public_url)


@dataclass(frozen=True, kw_only=True)
class RayPlacement:
    """Where and how many: the options of ``serve_on_ray`` that ``serve()`` does not have."""

    replicas: int = option(2, Int(), "replicas, each with its own model copy", unit="replicas")
    ray_address: str | None = option(
        None, Text(optional=True), "a running Ray cluster to use (else $RAY_ADDRESS, else a local one)"
    )
    ray_dashboard: bool = option(False, Flag(), "start Ray's dashboard with a local cluster")

    def __post_init__(self) -> None:
        check_fields(self)
        check_ray_address(self.ray_address, "ray_address")


def check_ray_address(address: str | None, source: str) -> None:
    """Refuse a Ray Client address (``ray://``): ``serve_on_ray`` runs from a node of the cluster."""
    if address is not None and address.startswith("ray://"):
        raise InvalidSetting(
            f"{source}={address!r} is a Ray Client address, which serve_on_ray does not use: run it from a node of "
            "the cluster (a notebook or script on the head node or a worker) with address='auto' or the cluster's "
            "GCS address ('host:6379'); through Ray Client the proxy URL it reports would be the cluster's own "
            "loopback address (docs/ray.md)"
        )


SECTIONS: dict[str, type] = {"model": ModelSpec, "address": Address, "policy": BatchPolicy, "config": ServerConfig}
"""Each section's name (a ``Settings`` field and a ``serve()`` keyword or group) and its class."""


@dataclass(frozen=True)
class Settings:
    """One value of every option, by section; ``models`` every model by name (``model`` is the first's)."""

    model: ModelSpec
    address: Address
    policy: BatchPolicy
    config: ServerConfig
    models: dict[str, ModelSpec]


def env_name(name: str) -> str:
    """The environment variable of option ``name``: ``PIPESERVE_MAX_BATCH_SIZE``."""
    return ENV_PREFIX + name.upper()


def flag_name(name: str) -> str:
    """The command-line flag of option ``name``: ``--max-batch-size``."""
    return "--" + name.replace("_", "-")


def _options() -> list[tuple[str, str, Any, Option]]:
    return [
        (section, name, default, meta) for section, cls in SECTIONS.items() for name, default, meta in declared(cls)
    ]


def add_arguments(parser: argparse.ArgumentParser, cls: type | None = None) -> None:
    """One flag per option (none for a secret), each defaulting to "not given"; of every
    section, or of the settings class ``cls`` only (``serve --ray``'s ``RayPlacement``)."""
    chosen = _options() if cls is None else [("", name, default, meta) for name, default, meta in declared(cls)]
    for _, name, default, meta in chosen:
        if meta.secret:
            continue
        shown = meta.cli_default if meta.cli_default is not NOT_SET else default
        unit = f" {meta.unit}" if meta.unit and shown is not None else ""
        text = f"{meta.help} (default {shown}{unit}; ${env_name(name)})"
        if isinstance(meta.rule, Flag):
            parser.add_argument(flag_name(name), dest=name, action=argparse.BooleanOptionalAction, help=text)
        elif name == "model":  # a server may hold several: repeat the flag, NAME=SPEC to name one
            text += "; repeat it to serve several models (the first is the default), NAME=SPEC names one"
            parser.add_argument(flag_name(name), dest=name, metavar="MODEL", action="append", help=text)
        else:
            metavar = {"s": "seconds", "": "value"}.get(meta.unit, meta.unit).upper()
            parser.add_argument(flag_name(name), dest=name, metavar=metavar, help=text)


def from_environment(env: Mapping[str, str]) -> Settings:
    """Every option from its ``PIPESERVE_*`` variable, the declared default where unset."""
    return _build(env, {}, cli=False)


def from_command_line(args: argparse.Namespace, env: Mapping[str, str]) -> Settings:
    """Every option from its flag, else its environment variable, else the command line's default."""
    given = {name: value for name, value in vars(args).items() if value is not None}
    return _build(env, given, cli=True)


def section_from_command_line(cls: type[T], args: argparse.Namespace, env: Mapping[str, str]) -> T:
    """The settings class ``cls`` from its flags, else its environment variables, else defaults."""
    given = {name: value for name, value in vars(args).items() if value is not None}
    return cls(**_values(cls, env, given, cli=True))


def _build(env: Mapping[str, str], given: Mapping[str, Any], *, cli: bool) -> Settings:
    built = {
        section: cls(**_values(cls, env, given, cli=cli)) for section, cls in SECTIONS.items() if section != "model"
    }
    models = _models(env, given, cli=cli)
    return Settings(model=next(iter(models.values())), models=models, **built)


def _models(env: Mapping[str, str], given: Mapping[str, Any], *, cli: bool) -> dict[str, ModelSpec]:
    """Every model asked for, by name: the repeated ``--model`` flag, else ``PIPESERVE_MODEL`` (several
    separated by commas), else the default; the other model options apply to each."""
    texts = given.get("model")
    if isinstance(texts, str):
        texts = [texts]
    if texts is None and env.get(env_name("model"), "").strip():
        texts = [text.strip() for text in env[env_name("model")].split(",")]
    others = {name: value for name, value in given.items() if name != "model"}
    env_others = {key: value for key, value in env.items() if key != env_name("model")}
    if texts is None:  # the default model, named by what it is (minilm, or smollm2 for text-generation)
        spec = ModelSpec(**_values(ModelSpec, env_others, others, cli=cli))
        return {name_of(spec.model, spec.task): spec}
    return {
        name: ModelSpec(**_values(ModelSpec, env_others, {**others, "model": text}, cli=cli))
        for name, text in named(texts).items()
    }


def _values(cls: type, env: Mapping[str, str], given: Mapping[str, Any], *, cli: bool) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, _, meta in declared(cls):
        if name in given and not meta.secret:
            raw = given[name]
            values[name] = raw if isinstance(raw, bool) else parse_text(name, raw, meta)
        elif env_name(name) in env:
            values[name] = parse_text(env_name(name), env[env_name(name)], meta)
        elif cli and meta.cli_default is not NOT_SET:
            values[name] = meta.cli_default
    return values


def markdown_table() -> str:
    """The README's option table: every option, where it is set, its default, rule and meaning."""
    rows = [
        "| option | in `serve()` | flag | environment | default | rule | what it does |",
        "|---|---|---|---|---|---|---|",
    ]
    for section, name, default, meta in _options():
        keyword = section in ("model", "address")
        in_serve = f"`{name}=`" if keyword else f"`{SECTIONS[section].__name__}({name}=)`"
        if meta.secret:
            flag = "(none: a secret)"
        elif isinstance(meta.rule, Flag):
            flag = f"`--[no-]{name.replace('_', '-')}`"
        else:
            flag = f"`{flag_name(name)}`"
        shown = f"`{default!r}`" + (f" {meta.unit}" if meta.unit and default is not None else "")
        if meta.cli_default is not NOT_SET:
            shown += f" (flag: `{meta.cli_default!r}`)"
        rows.append(
            f"| `{name}` | {in_serve} | {flag} | `{env_name(name)}` | {shown} | {meta.rule.words} | {meta.help} |"
        )
    return "\n".join(rows)


def refuse_unused(env: Mapping[str, str], section: str, where: str) -> None:
    """Refuse environment variables of ``section`` that ``where`` cannot apply."""
    unused = [env_name(name) for name, _, _ in declared(SECTIONS[section]) if env_name(name) in env]
    if unused:
        raise InvalidSetting(f"{', '.join(unused)} cannot apply {where}")
