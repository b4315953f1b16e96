"""The bearer token: every route sits behind it, the scheme is case-insensitive, a refusal says how to
authenticate, and the token never shows in a representation of the settings."""

from __future__ import annotations

from starlette.testclient import TestClient

from pipeserve_nb import BatchPolicy, ServerConfig
from pipeserve_nb._models.spec import ModelSpec
from pipeserve_nb._server.core.engine import Engine
from pipeserve_nb._server.edge.app import create_app

TOKEN = "a-token-of-more-than-16-characters"


def echo(inputs: list[str]) -> list[str]:
    return inputs


def test_every_route_needs_the_token_and_the_scheme_is_case_insensitive() -> None:
    engine = Engine(ModelSpec(model=echo), BatchPolicy(), ServerConfig(auth_token=TOKEN))
    with TestClient(create_app(engine)) as client:
        for method, path in (("POST", "/"), ("GET", "/health"), ("GET", "/stats"), ("GET", "/metrics")):
            denied = client.request(method, path, content=b"a" if method == "POST" else None)
            assert denied.status_code == 401, path
            assert denied.headers["www-authenticate"] == 'Bearer realm="pipeserve_nb"'
            assert denied.json()["error"]["type"] == "Unauthorized"
        for scheme in ("Bearer", "bearer", "BEARER"):
            assert client.post("/", content=b"hi", headers={"authorization": f"{scheme} {TOKEN}"}).json() == "hi"
        for wrong in (f"Bearer {TOKEN}x", f"Basic {TOKEN}", TOKEN, f"Bearer  {TOKEN}"):
            assert client.post("/", content=b"hi", headers={"authorization": wrong}).status_code == 401
        counted = client.get("/stats", headers={"authorization": f"Bearer {TOKEN}"}).json()["requests_by_status"]
    assert counted == {"200": 3, "401": 8}  # every refusal counted, the report routes' own answers not


def test_the_token_never_shows_in_the_settings_repr() -> None:
    assert TOKEN not in repr(ServerConfig(auth_token=TOKEN))
