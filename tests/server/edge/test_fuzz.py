"""Fuzzing the live server: schemathesis from its own ``/openapi.json``, and hypothesis
throwing random bodies and content types at it. No 500, no crash, ``/health`` stays 200."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeserve_nb import ServerConfig, ServerHandle, serve

EXAMPLES = 40 if os.environ.get("CI") else 150
CONFIG = ServerConfig(max_body_bytes=4096, max_inputs_per_request=8)
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.fixture
def live() -> Iterator[ServerHandle]:
    """The real bundled model behind a real socket, with small limits so fuzzing reaches them."""
    server = serve(name="fuzz", config=CONFIG)
    yield server
    assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200, "the fuzzer broke the server"
    server.stop()


# data breaking the schema must be refused with a 4xx; 413 is ours for "over a limit"
# (the schema's maxItems is max_inputs_per_request), which schemathesis does not list
SCHEMATHESIS_CONFIG = schemathesis.Config.from_dict(
    {"checks": {"negative_data_rejection": {"expected-statuses": ["400", "404", "405", "413", "415", "422"]}}}
)
POSITIVE, NEGATIVE = schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE
OPERATIONS = [
    ("POST", "/", POSITIVE),
    ("POST", "/", NEGATIVE),
    ("GET", "/health", POSITIVE),
    ("GET", "/stats", POSITIVE),
]


@pytest.mark.parametrize(("method", "path", "mode"), OPERATIONS, ids=[f"{m} {p} {g.value}" for m, p, g in OPERATIONS])
def test_the_server_keeps_every_promise_of_its_openapi_description(
    live: ServerHandle, method: str, path: str, mode: schemathesis.GenerationMode
) -> None:
    schema = schemathesis.openapi.from_url(f"{live.url}/openapi.json", config=SCHEMATHESIS_CONFIG)
    operation = schema[path][method]

    # the default checks: no 5xx; documented status codes, content types and response
    # schemas; and in negative mode, data that breaks the schema refused with a 4xx
    @given(case=operation.as_strategy(generation_mode=mode))
    @FUZZ
    def run(case: Any) -> None:
        case.call_and_validate()

    run()


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


# any code point, with the awkward ones made common: NUL, spaces, lone surrogates (JSON can
# escape them, but they are not text)
# (st.text drops surrogates, so join the characters ourselves)
ANY_TEXT = st.lists(st.sampled_from(" \t\x00é\ud800\udfff") | st.characters(), max_size=20).map("".join)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | ANY_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
CONTENT_TYPES = st.sampled_from(
    [
        None,
        "text/plain",
        "application/json",
        "application/json; charset=utf-8",
        "text/html",
        "application/x-www-form-urlencoded",
        "application/octet-stream",
        "image/png",
        "multipart/form-data",
        "application/problem+json",
        "",
        ";;",
        "text/plain; charset=latin-1",
    ]
) | st.text(max_size=30)
BODIES = st.binary(max_size=6000) | st.text(max_size=300).map(str.encode) | JSON_VALUES.map(_json)
JSON_REQUESTS = (
    JSON_VALUES
    | st.fixed_dictionaries({"inputs": JSON_VALUES}, optional={"parameters": JSON_VALUES})
    | st.fixed_dictionaries(
        {"inputs": ANY_TEXT | st.lists(ANY_TEXT, max_size=10)}, optional={"parameters": JSON_VALUES}
    )
).map(_json)


def check_answer(response: httpx.Response) -> None:
    assert response.status_code in (200, 400, 413, 415), response.text
    if response.status_code != 200:
        error = response.json()["error"]
        assert set(error) == {"type", "message"} and error["message"]
        assert "Traceback" not in response.text and "/site-packages/" not in response.text


@given(body=BODIES, content_type=CONTENT_TYPES)
@FUZZ
def test_random_bodies_and_content_types_get_a_clear_answer_never_a_500(
    live: ServerHandle, body: bytes, content_type: str | None
) -> None:
    headers = {} if content_type is None else {"content-type": content_type.encode()}  # raw bytes, any text
    try:
        response = httpx.post(live.url, content=body, headers=headers, timeout=30, trust_env=False)
    except httpx.LocalProtocolError:  # a header value httpx itself will not send
        return
    if content_type is not None and any((c < " " and c != "\t") or c == "\x7f" for c in content_type):
        # a control character in a header value is not HTTP (RFC 9110 5.5): the parser refuses it, plain text
        assert (response.status_code, response.text) == (400, "Invalid HTTP request received.")
        return
    check_answer(response)


@given(body=JSON_REQUESTS)
@FUZZ
def test_random_json_documents_get_a_clear_answer_never_a_500(live: ServerHandle, body: bytes) -> None:
    response = httpx.post(live.url, content=body, headers={"content-type": "application/json"}, timeout=30)
    check_answer(response)
