"""The one settings source: every declared option reaches ``serve()``, the command line, the
environment and the README, with the same default and the same rule.

The options are read from the declarations themselves, so an option added in one place
only (a new field, a keyword, a flag) fails here.
"""

from __future__ import annotations

import inspect
import textwrap
from pathlib import Path
from typing import Any

import pytest

from pipeserve_nb import InvalidSetting, serve
from pipeserve_nb._options import NOT_SET, Custom, Flag, Int, Number, Option, Text, declared
from pipeserve_nb._server.run import settings
from pipeserve_nb._server.run.cli import build_parser

ROOT = Path(__file__).resolve().parents[3]

OPTIONS = [
    (section, name, default, meta)
    for section, cls in settings.SECTIONS.items()
    for name, default, meta in declared(cls)
]

TEXT_SAMPLES = {
    "model": "some-org/some-model",
    "task": "fill-mask",
    "device": "cpu",
    "dtype": "float32",
    "host": "127.0.0.2",
    "generation": "static",
    "cores": "own",
    "public_url": "https://example.org/tunnel/{port}/",
}
"""Values for options whose rule takes free text (any other rule gets a value derived from it)."""

COMPANIONS = {"task": {"model": "some-org/some-model"}}
"""Other options an option is only valid with (a task needs a model to load)."""


def sample(name: str, default: Any, meta: Option) -> tuple[Any, str]:
    """A valid value other than the default, and how it is spelled on the command line."""
    rule = meta.rule
    if isinstance(rule, Flag):
        return not default, "false" if default else "true"
    if isinstance(rule, Int):
        value = (default if default is not None else rule.min) + 1
        return value, str(value)
    if isinstance(rule, Number):
        value = float((default or 0) + 0.5)
        return value, str(value)
    if meta.secret:
        return "a-secret-of-enough-characters", "a-secret-of-enough-characters"
    if isinstance(rule, (Text, Custom)) and name in TEXT_SAMPLES:
        return TEXT_SAMPLES[name], TEXT_SAMPLES[name]
    raise AssertionError(f"option {name!r} has a rule this test cannot sample; add it to TEXT_SAMPLES")


def value_of(built: settings.Settings, section: str, name: str) -> Any:
    return getattr(getattr(built, section), name)


def test_every_section_declares_its_options() -> None:
    names = [name for _, name, _, _ in OPTIONS]
    assert len(names) == len(set(names)), "an option name is used twice"
    assert {"model", "task", "device", "host", "port", "max_batch_size", "timeout_s", "auth_token"} <= set(names)
    for _, name, _, meta in OPTIONS:
        assert meta.help and meta.rule.words, name


@pytest.mark.parametrize(("section", "name", "default", "meta"), OPTIONS, ids=[o[1] for o in OPTIONS])
def test_each_option_reaches_the_environment_and_the_command_line(
    section: str, name: str, default: Any, meta: Option
) -> None:
    value, text = sample(name, default, meta)
    companions = {settings.env_name(k): v for k, v in COMPANIONS.get(name, {}).items()}
    env = {settings.env_name(name): text, **companions}
    assert value_of(settings.from_environment(env), section, name) == value

    parser = build_parser()
    if meta.secret:  # never a flag: it would show in the process list
        with pytest.raises(SystemExit):
            parser.parse_args(["serve", settings.flag_name(name), text])
        from_cli = settings.from_command_line(parser.parse_args(["serve"]), env)
    else:
        argv = [f"--no-{name.replace('_', '-')}" if value is False else settings.flag_name(name)]
        argv += [] if isinstance(meta.rule, Flag) else [text]
        from_cli = settings.from_command_line(parser.parse_args(["serve", *argv]), companions)
    assert value_of(from_cli, section, name) == value

    unset = settings.from_command_line(parser.parse_args(["serve"]), {})
    cli_default = default if meta.cli_default is NOT_SET else meta.cli_default
    assert value_of(unset, section, name) == cli_default
    assert value_of(settings.from_environment({}), section, name) == default


@pytest.mark.parametrize(("section", "name", "default", "meta"), OPTIONS, ids=[o[1] for o in OPTIONS])
def test_each_option_reaches_serve_with_the_declared_default(
    section: str, name: str, default: Any, meta: Option
) -> None:
    parameters = inspect.signature(serve).parameters
    if section in ("model", "address"):
        assert name in parameters, f"serve() has no {name}= keyword"
        assert parameters[name].default == default
    else:
        assert section in parameters, f"serve() has no {section}= keyword"
        assert parameters[section].default is None  # None: the section's class with its defaults


def test_serve_takes_exactly_the_options_of_its_keyword_sections_besides_its_own() -> None:
    keywords = set(inspect.signature(serve).parameters)
    sectioned = {name for section, name, _, _ in OPTIONS if section in ("model", "address")}
    assert keywords - sectioned == {"more_models", "policy", "config", "name", "start_timeout_s"}


def test_the_readme_option_table_is_the_generated_one() -> None:
    readme = (ROOT / "README.md").read_text()
    assert settings.markdown_table() in readme, "regenerate it: python -m pipeserve_nb options"
    for _, name, _, _ in OPTIONS:
        assert f"| `{name}` |" in settings.markdown_table()


def test_a_flag_wins_over_its_variable_and_the_variable_over_the_default() -> None:
    parser = build_parser()
    env = {"PIPESERVE_MAX_BATCH_SIZE": "9", "PIPESERVE_TIMEOUT_S": "7"}
    built = settings.from_command_line(parser.parse_args(["serve", "--max-batch-size", "4"]), env)
    assert built.policy.max_batch_size == 4 and built.config.timeout_s == 7.0


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PIPESERVE_MAX_QUEUE": "many"}, "PIPESERVE_MAX_QUEUE must be an int >= 1, got 'many'"),
        ({"PIPESERVE_MAX_QUEUE": "0"}, "PIPESERVE_MAX_QUEUE must be an int >= 1, got 0"),
        ({"PIPESERVE_DEBUG": "maybe"}, "PIPESERVE_DEBUG must be True or False, got 'maybe'"),
        ({"PIPESERVE_AUTH_TOKEN": "short"}, "PIPESERVE_AUTH_TOKEN must be None or an ASCII string of 16\\+ characters"),
    ],
)
def test_a_bad_value_names_the_variable_and_the_rule(env: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidSetting, match=message) as info:
        settings.from_environment(env)
    assert "short" not in str(info.value)  # a secret is never echoed


def test_none_and_flags_are_spelled_the_usual_ways() -> None:
    built = settings.from_environment(
        {"PIPESERVE_MAX_BATCH_TOKENS": "none", "PIPESERVE_SORT_BY_LENGTH": "no", "PIPESERVE_DEVICE": "0"}
    )
    assert built.policy.max_batch_tokens is None and built.policy.sort_by_length is False
    assert built.model.device == 0  # a device index, as transformers takes it


ENTRY_POINTS: dict[str, dict[str, str]] = {
    "pipeserve_nb._server.run.serve.serve": {},
    "pipeserve_nb._server.run.serve.serve_app": {},
    "pipeserve_nb._ray.serve.serve_on_ray": {"address": "ray_address", "dashboard": "ray_dashboard"},
    "pipeserve_nb._models.loading.load_model": {},
    "pipeserve_nb._teaching.seed_page.seed_page_app": {"timeout_s": ""},  # the page's own per-get timeout
}
"""The public entry points that take options as keywords, with the keywords named apart from their option
(an empty name: a keyword that is not the option of that name)."""

DECLARING = {
    name: cls.__name__ for cls in [*settings.SECTIONS.values(), settings.RayPlacement] for name, _, _ in declared(cls)
}
"""Each option's name and the class that declares it."""


def restated_defaults(source: str, aliases: dict[str, str]) -> list[str]:
    """The keywords of the function in ``source`` whose default is not the declaration itself
    (``ModelSpec.dtype``, ``Address.port``): a value written again by hand."""
    import ast

    function = ast.parse(textwrap.dedent(source)).body[0]
    assert isinstance(function, ast.FunctionDef)
    arguments = function.args
    with_default = arguments.args[len(arguments.args) - len(arguments.defaults) :]
    positional = list(zip(with_default, arguments.defaults, strict=True))
    keyword = [(a, d) for a, d in zip(arguments.kwonlyargs, arguments.kw_defaults, strict=True) if d is not None]
    found = []
    for argument, default in positional + keyword:
        option = aliases.get(argument.arg, argument.arg)
        if option not in DECLARING:
            continue
        declared_there = (
            isinstance(default, ast.Attribute)
            and isinstance(default.value, ast.Name)
            and (default.value.id, default.attr) == (DECLARING[option], option)
        )
        if not declared_there:
            found.append(argument.arg)
    return found


@pytest.mark.parametrize("path", sorted(ENTRY_POINTS))
def test_no_entry_point_restates_a_declared_default(path: str) -> None:
    import importlib

    module, name = path.rsplit(".", 1)
    function = getattr(importlib.import_module(module), name)
    assert restated_defaults(inspect.getsource(function), ENTRY_POINTS[path]) == []
    for keyword, parameter in inspect.signature(function).parameters.items():  # and the values agree
        option = ENTRY_POINTS[path].get(keyword, keyword)
        if option in DECLARING and parameter.default is not inspect.Parameter.empty:
            cls = next(
                c for c in [*settings.SECTIONS.values(), settings.RayPlacement] if c.__name__ == DECLARING[option]
            )
            assert parameter.default == next(d for n, d, _ in declared(cls) if n == option)


def test_a_default_written_again_by_hand_is_caught() -> None:
    by_hand = "def serve(model=None, *, dtype='auto', port=ModelSpec.port, name='default'):\n    pass\n"
    assert restated_defaults(by_hand, {}) == ["model", "dtype", "port"]
    aliased = "def serve_on_ray(*, address=None, dashboard=RayPlacement.ray_dashboard):\n    pass\n"
    assert restated_defaults(aliased, {"address": "ray_address", "dashboard": "ray_dashboard"}) == ["address"]


def test_the_command_line_restates_no_default() -> None:
    """Each option flag defaults to "not given": the value then comes from the variable, else the declaration."""
    flags = {a.dest: a.default for a in build_parser()._subparsers._group_actions[0].choices["serve"]._actions}
    assert all(flags[name] is None for name in DECLARING if name in flags)
    assert set(DECLARING) - {"auth_token"} <= set(flags)  # every option but the secret has its flag


def test_several_models_come_from_a_repeated_flag_or_a_comma_list_and_share_the_other_model_options() -> None:
    args = build_parser().parse_args(["serve", "--model", "minilm", "--model", "chat=smollm2", "--dtype", "float32"])
    chosen = settings.from_command_line(args, {})
    assert list(chosen.models) == ["minilm", "chat"] and chosen.model is chosen.models["minilm"]
    assert chosen.models["chat"].model == "smollm2" and {m.dtype for m in chosen.models.values()} == {"float32"}
    from_env = settings.from_environment({"PIPESERVE_MODEL": "minilm, smollm2", "PIPESERVE_DTYPE": "bfloat16"})
    assert list(from_env.models) == ["minilm", "smollm2"] and from_env.models["smollm2"].dtype == "bfloat16"
    assert list(settings.from_environment({}).models) == ["minilm"]  # the default model, named by what it is
    assert list(settings.from_environment({"PIPESERVE_TASK": "text-generation"}).models) == ["smollm2"]
    twice = build_parser().parse_args(["serve", "--model", "minilm", "--model", "minilm"])
    with pytest.raises(InvalidSetting, match="two models are named 'minilm'"):
        settings.from_command_line(twice, {})
