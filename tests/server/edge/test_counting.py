"""One path from failure to response: every refusal, whichever part of the edge makes it, has the error
table's type and status, and is counted by status in ``/stats`` and ``/metrics``; the report routes'
own answers are not counted."""

from __future__ import annotations

import json
import re

import httpx

from pipeserve_nb import LoadedModel, ServerConfig, serve
from pipeserve_nb._server.edge.errors import ERRORS

from .test_limits import Connection, request

TOKEN = "a-token-of-more-than-16-characters"


def _counted(metrics: str) -> dict[str, int]:
    """``pipeserve_requests_total`` by status, from the Prometheus text."""
    found = re.findall(r'pipeserve_requests_total\{[^}]*status="(\d+)"\} ([\d.]+)', metrics)
    return {status: int(float(n)) for status, n in found}


def test_every_refusal_has_its_table_type_and_is_counted_by_status(embedder: LoadedModel) -> None:
    config = ServerConfig(auth_token=TOKEN, max_inputs_per_request=2)
    auth = {"authorization": f"Bearer {TOKEN}"}
    sent: dict[str, int] = {}
    with serve(embedder, config=config, name="counting") as server:
        with httpx.Client(base_url=server.url, trust_env=False, timeout=30) as client:
            answers = {
                "no token": client.post("/", content=b"a"),
                "unknown path": client.get("/nowhere", headers=auth),
                "wrong method": client.put("/", headers=auth),
                "too many inputs": client.post("/", json={"inputs": ["a", "b", "c"]}, headers=auth),
                "an image": client.post("/", content=b"x", headers={**auth, "content-type": "image/png"}),
                "empty": client.post("/", content=b" ", headers=auth),
                "served": client.post("/", content=b"a text", headers=auth),
                "health": client.get("/health", headers=auth),
                "stats": client.get("/stats", headers=auth),
                "health without token": client.get("/health"),
            }
        conn = Connection(server)
        try:
            conn.send(request("/?q=" + "a" * 9000, headers=[f"Authorization: Bearer {TOKEN}"]))
            answers_raw = {"long target": conn.response()}
        finally:
            conn.close()
        conn = Connection(server)
        try:  # a head that never ends: cut off by the HTTP protocol, before any ASGI request exists
            conn.send(b"POST / HTTP/1.1\r\nHost: x\r\nX-Endless: " + b"v" * (config.max_head_bytes + 4096))
            answers_raw["endless head"] = conn.response()
        finally:
            conn.close()
        stats = server.stats()
        metrics = httpx.get(f"{server.url}/metrics", headers=auth, trust_env=False, timeout=10).text

    expected = {
        "no token": "Unauthorized",
        "unknown path": "NotFound",
        "wrong method": "MethodNotAllowed",
        "too many inputs": "TooLarge",
        "an image": "UnsupportedMediaType",
        "empty": "InvalidInput",
        "health without token": "Unauthorized",
    }
    table = {k.name: k.status for k in ERRORS}
    for name, kind in expected.items():
        answer = answers[name]
        assert (answer.status_code, answer.json()["error"]["type"]) == (table[kind], kind), name
        sent[str(answer.status_code)] = sent.get(str(answer.status_code), 0) + 1
    for name, (status, _, body) in answers_raw.items():
        kind = json.loads(body)["error"]["type"]
        assert status == table[kind] and kind in ("UriTooLong", "HeadersTooLarge"), name
        sent[str(status)] = sent.get(str(status), 0) + 1
    assert answers["served"].status_code == 200 and answers["health"].status_code == 200
    sent["200"] = 1  # the served request; the report routes' answers (health, stats, metrics) are not counted
    assert stats["requests_by_status"] == dict(sorted(sent.items()))
    assert _counted(metrics) == {status: n for status, n in sent.items()}
    assert stats["requests"] == sum(sent.values())
