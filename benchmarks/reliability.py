"""``make reliability``: what the server answers to bad input, and an overload soak, as a table.

Every row is measured in this run against a live server (the bundled model on a real
socket): the case sent, the status expected, the status observed, and whether the next
good request still succeeded. The soak sends open-loop load at about 3x the capacity
measured in the same run and counts every answer. Writes ``docs/reliability.md`` and
``docs/reliability.json``.

    python benchmarks/reliability.py            # full run (about a minute)
    python benchmarks/reliability.py --quick    # smoke run with a short soak (tests use it)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import socket
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

import pipeserve_nb as ps

DOCS = Path(__file__).resolve().parent.parent / "docs"
TOKEN = "reliability-report-token-0123456789"
LONG_TEXT = "word " * 400  # over the bundled model's 256 tokens
BODY_LIMIT = 64 * 1024


@dataclass(frozen=True)
class Case:
    """One request to try: what is sent, and the status and error type a correct server answers."""

    name: str
    expected: int
    kind: str | None = None  # error type expected (None for success)
    method: str = "POST"
    path: str = "/"
    body: bytes = b""
    content_type: str | None = "application/json"
    headers: tuple[tuple[str, str], ...] = ()
    raw: bytes | None = None  # sent as is on a socket (for what an HTTP client will not send)


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


CASES = [
    Case("empty body", 400, "InvalidInput", content_type=None),
    Case("whitespace only", 400, "InvalidInput", body=b" \n\t ", content_type="text/plain"),
    Case("invalid UTF-8", 400, "InvalidInput", body=b"caf\xe9 \xff", content_type="text/plain"),
    Case("malformed JSON", 400, "InvalidInput", body=b'{"inputs": "a"'),
    Case('{"inputs": 5}', 400, "InvalidInput", body=_json({"inputs": 5})),
    Case('{"inputs": []}', 400, "InvalidInput", body=_json({"inputs": []})),
    Case('{"inputs": [1, 2]}', 400, "InvalidInput", body=_json({"inputs": [1, 2]})),
    Case("null", 400, "InvalidInput", body=b"null"),
    Case("nested lists", 400, "InvalidInput", body=_json({"inputs": [["a", "b"]]})),
    Case("missing inputs", 400, "InvalidInput", body=_json({"parameters": {}})),
    Case("unknown field", 400, "InvalidInput", body=_json({"text": "a"})),
    Case("lone surrogate escape", 400, "InvalidInput", body=b'{"inputs": "a\\ud800"}'),
    Case("unknown parameter", 400, "InvalidInput", body=_json({"inputs": "a", "parameters": {"top_k": 3}})),
    Case("parameters not an object", 400, "InvalidInput", body=_json({"inputs": "a", "parameters": [1]})),
    Case("unsupported content type", 415, "UnsupportedMediaType", body=b"\x89PNG", content_type="image/png"),
    Case(
        "body over the limit, refused before it is read",
        413,
        "TooLarge",
        raw=b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\nonly these bytes are ever sent",
    ),
    Case("body over the limit, chunked", 413, "TooLarge", body=b"x" * (BODY_LIMIT + 1), content_type="text/plain"),
    Case("more inputs than allowed", 413, "TooLarge", body=_json({"inputs": ["a"] * 257})),
    Case("text longer than the model takes", 413, "TooLarge", body=_json({"inputs": LONG_TEXT})),
    Case(
        "same text, truncation asked",
        200,
        body=_json({"inputs": LONG_TEXT, "parameters": {"truncation": True}}),
    ),
    Case(
        "control character in a header value: not HTTP, refused by the parser (plain text)",
        400,
        raw=b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\x01\r\nContent-Length: 1\r\n\r\na",
    ),
    Case("unknown path", 404, "NotFound", method="GET", path="/predict"),
    Case("wrong method", 405, "MethodNotAllowed", method="GET", path="/"),
    Case("no token (server with a token)", 401, "Unauthorized", body=_json({"inputs": "a"})),
    Case(
        "wrong token",
        401,
        "Unauthorized",
        body=_json({"inputs": "a"}),
        headers=(("authorization", "Bearer not-the-token"),),
    ),
    Case("right token", 200, body=_json({"inputs": "a"}), headers=(("authorization", f"Bearer {TOKEN}"),)),
]
TOKEN_CASES = {"no token (server with a token)", "wrong token", "right token"}


@dataclass(frozen=True)
class CaseResult:
    name: str
    expected: int
    observed: int
    kind: str | None
    message: str
    next_request: int  # status of a good request sent right after

    @property
    def ok(self) -> bool:
        return self.observed == self.expected and self.next_request == 200


def run_cases(open_url: str, token_url: str) -> list[CaseResult]:
    """Send every case; the token cases go to the server that has a token."""
    results = []
    with httpx.Client(trust_env=False, timeout=30) as client:
        for case in CASES:
            url = token_url if case.name in TOKEN_CASES else open_url
            status, body = _send(client, url, case)
            error = body.get("error", {}) if isinstance(body, dict) else {}
            after = client.post(
                url, json={"inputs": "a good request"}, headers={"authorization": f"Bearer {TOKEN}"}
            ).status_code
            message = error.get("message", "") or (body if isinstance(body, str) else "")
            results.append(CaseResult(case.name, case.expected, status, error.get("type"), message, after))
    return results


def _send(client: httpx.Client, url: str, case: Case) -> tuple[int, Any]:
    if case.raw is not None:
        host, port = httpx.URL(url).host, httpx.URL(url).port
        with socket.create_connection((host, port), timeout=10) as sock:
            sock.sendall(case.raw)
            answer = b""
            while b"\r\n\r\n" not in answer or not answer.endswith(b"}"):  # headers, then the JSON error
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        try:
            return int(head.split()[1]), json.loads(body)
        except ValueError:  # uvicorn's own answer to what is not HTTP
            return int(head.split()[1]), body.decode(errors="replace")
    headers = dict(case.headers)
    if case.content_type:
        headers["content-type"] = case.content_type
    response = client.request(case.method, url + case.path, content=case.body or None, headers=headers)
    try:
        return response.status_code, response.json()
    except ValueError:
        return response.status_code, None


@dataclass(frozen=True)
class Soak:
    capacity_rps: float
    rate_rps: float
    duration_s: float
    sent: int
    answered: int
    lost: int
    by_status: dict[int, int]
    server_counted: int
    health_probes: int
    health_not_200: int
    health_p99_ms: float
    health_max_ms: float
    rss_start_mb: float
    rss_peak_mb: float
    rss_end_mb: float
    queue_depth_after: int
    drained_in_s: float


def _open_loop(
    server: ps.ServerHandle, rate: float, duration_s: float, texts: list[str]
) -> tuple[ps.LoadResult, list[float], int, list[float]]:
    """One open-loop run at ``rate``, with ``/health`` probed and memory read every 100 ms."""
    stop = threading.Event()
    health_ms: list[float] = []
    health_bad = 0
    rss: list[float] = [ps.rss_mb()]

    def probe() -> None:
        nonlocal health_bad
        with httpx.Client(trust_env=False, timeout=10) as client:
            while not stop.is_set():
                started = time.perf_counter()
                status = client.get(f"{server.url}/health").status_code
                health_ms.append((time.perf_counter() - started) * 1000)
                health_bad += status != 200
                rss.append(ps.rss_mb())
                stop.wait(0.1)

    prober = threading.Thread(target=probe, name="reliability-health-probe", daemon=True)
    prober.start()
    try:
        result = ps.run_load(server, ps.OpenLoop(rate_rps=rate, duration_s=duration_s), texts=texts, progress=False)
    finally:
        stop.set()
        prober.join(15)
    return result, health_ms, health_bad, rss


def soak(server: ps.ServerHandle, duration_s: float, overload: float = 3.0) -> Soak:
    """Measure capacity, then send ``overload`` x that rate for ``duration_s``; count everything.

    This machine's speed can change within seconds, so the capacity measured first may be too low;
    a run in which the queue never filled (no 503) was not an overload test, and is repeated at
    twice the rate (twice at most)."""
    texts = ps.sample_texts(256)
    closed = ps.run_load(server, ps.ClosedLoop(concurrency=32, duration_s=3.0), texts=texts, progress=False)
    capacity = closed.summary.goodput_rps
    rate = overload * capacity
    for attempt in range(3):
        counted_before = server.stats()["requests"]
        result, health_ms, health_bad, rss = _open_loop(server, rate, duration_s, texts)
        if result.summary.by_status.get(503, 0) or attempt == 2:
            break
        rate *= 2
    started = time.monotonic()
    while (depth := server.stats()["queue_depth"]) and time.monotonic() - started < 60:
        time.sleep(0.05)
    drained_s = time.monotonic() - started
    summary = result.summary
    health_sorted = sorted(health_ms)
    return Soak(
        capacity_rps=round(capacity, 1),
        rate_rps=round(rate, 1),
        duration_s=duration_s,
        sent=summary.requests,
        answered=summary.answered,
        lost=summary.requests - summary.answered,
        by_status=dict(sorted(summary.by_status.items())),
        server_counted=server.stats()["requests"] - counted_before,
        health_probes=len(health_ms),
        health_not_200=health_bad,
        health_p99_ms=round(health_sorted[max(0, int(0.99 * len(health_sorted)) - 1)], 2),
        health_max_ms=round(health_sorted[-1], 2),
        rss_start_mb=round(rss[0], 1),
        rss_peak_mb=round(max(rss), 1),
        rss_end_mb=round(ps.rss_mb(), 1),
        queue_depth_after=depth,
        drained_in_s=round(drained_s, 2),
    )


def report(cases: list[CaseResult], soaked: Soak, quick: bool) -> str:
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Reliability: what the server answers, and what it loses (nothing)",
        "",
        f"Generated by `make reliability` (`benchmarks/reliability.py{' --quick' if quick else ''}`) on {when}, "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs. Do not edit by hand.",
        "",
        "Each case is sent to a live server (the bundled model, a real socket, default `ServerConfig` except "
        f"`max_body_bytes={BODY_LIMIT}`); then a good request is sent to show the server kept serving. "
        "Error types and messages are the JSON body's `error.type` and `error.message`.",
        "",
        "## Bad input",
        "",
        "| case | expected | observed | error type | next request | message |",
        "|---|---|---|---|---|---|",
    ]
    for r in cases:
        mark = "" if r.ok else " **MISMATCH**"
        message = r.message.replace("|", "\\|")
        lines.append(
            f"| {r.name} | {r.expected} | {r.observed}{mark} | {r.kind or ''} | {r.next_request} | {message} |"
        )
    s = soaked
    statuses = ", ".join(f"{k}: {v}" for k, v in s.by_status.items())
    lines += [
        "",
        "## Overload soak",
        "",
        f"Capacity measured first in this run (closed loop, 32 clients, 3 s): {s.capacity_rps} requests/s. "
        f"Then an open loop (Poisson arrivals) at {s.rate_rps} requests/s, "
        f"{s.rate_rps / s.capacity_rps:.1f}x that, for {s.duration_s:g} s, "
        "from a separate process, while a thread probed `/health` every 100 ms (the rate starts at 3x; a run "
        "in which the queue never filled is repeated at twice the rate, since this machine's speed can change "
        "between measuring and overloading).",
        "",
        "| figure | value |",
        "|---|---|",
        f"| requests sent | {s.sent} |",
        f"| answered (by the client's count) | {s.answered} |",
        f"| answered (by the server's `/stats`) | {s.server_counted} |",
        f"| lost (sent - answered) | {s.lost} |",
        f"| answers by status | {statuses} |",
        f"| `/health` probes, not 200 | {s.health_probes}, {s.health_not_200} |",
        f"| `/health` p99 / max latency | {s.health_p99_ms} ms / {s.health_max_ms} ms |",
        f"| server process memory: start / peak / end | {s.rss_start_mb} / {s.rss_peak_mb} / {s.rss_end_mb} MB |",
        f"| queue depth after the run | {s.queue_depth_after} (drained in {s.drained_in_s} s) |",
        "",
        "Statuses: 200 served, 503 shed at once by the full queue (with `Retry-After`), 504 past the "
        "request timeout; 0 would mean the client gave up (none expected).",
        "",
        "## What is not in this table",
        "",
        "Faults that need a model made to fail on purpose are tested in `tests/server/test_faults.py` "
        "(a worker that dies, a model that fails every input, a client that disconnects while "
        "queued, `stop()` with a full queue, 50 start/stop cycles) and `tests/server/test_app.py` "
        "(parameter values a model rejects); fuzzing in `tests/server/test_fuzz.py`.",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short soak (a smoke run)")
    parser.add_argument("--out", type=Path, default=DOCS, help="folder for reliability.md/.json")
    args = parser.parse_args()
    duration_s = 5.0 if args.quick else 30.0
    config = ps.ServerConfig(max_body_bytes=BODY_LIMIT)
    with ps.serve(name="reliability", config=config) as server:
        with ps.serve(name="reliability-token", config=ps.ServerConfig(auth_token=TOKEN)) as guarded:
            cases = run_cases(server.url, guarded.url)
        soaked = soak(server, duration_s)
    text = report(cases, soaked, args.quick)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "reliability.md").write_text(text)
    data = {"quick": args.quick, "cases": [{**asdict(c), "ok": c.ok} for c in cases], "soak": asdict(soaked)}
    (args.out / "reliability.json").write_text(json.dumps(data, indent=2) + "\n")
    print(text)
    failed = [c.name for c in cases if not c.ok]
    if failed or soaked.lost:
        print(f"FAILED: cases {failed}, lost {soaked.lost}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
