"""The hung-model part of ``make reliability``: a model call that never returns, and what
``/health``, the request and ``stop()`` do about it, measured on a live server and reported as a
Markdown section."""

from __future__ import annotations

import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

import pipeserve_nb as ps


def hung_model() -> dict[str, Any]:
    """A model call that never returns: what /health, a request and stop() do about it."""
    gate = threading.Event()

    def hangs(inputs: list[str]) -> list[str]:
        if "hang" in inputs:
            gate.wait(120)
        return inputs

    config = ps.ServerConfig(stuck_call_s=1.0, timeout_s=3.0)
    server = ps.serve(hangs, name="reliability-hung", config=config)
    out: dict[str, Any] = {"stuck_call_s": 1.0, "timeout_s": 3.0}
    with httpx.Client(trust_env=False, timeout=30) as client:
        before = client.get(f"{server.url}/health").status_code
        with ThreadPoolExecutor(1) as pool:
            sent = time.monotonic()
            hung = pool.submit(client.post, server.url, content=b"hang")
            while (health := client.get(f"{server.url}/health")).status_code == 200 and time.monotonic() - sent < 30:
                time.sleep(0.05)
            out["health_before"] = before
            out["health_503_after_s"] = round(time.monotonic() - sent, 2)
            out["health_during"] = {**health.json(), "http_status": health.status_code}
            answer = hung.result(30)
        out["request_status"] = answer.status_code
        out["request_after_s"] = round(time.monotonic() - sent, 2)
        out["request_error"] = answer.json()["error"]["message"]
        started = time.monotonic()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            server.stop(timeout_s=1.0)
        out["stop_s"] = round(time.monotonic() - started, 2)
        out["stop_warning"] = str(caught[0].message) if caught else None
        gate.set()
    recovered = ps.serve(hangs, name="reliability-hung", config=config)  # and with the call returning:
    with httpx.Client(trust_env=False, timeout=30) as client:
        gate.clear()
        with ThreadPoolExecutor(1) as pool:
            hung = pool.submit(client.post, recovered.url, content=b"hang")
            while client.get(f"{recovered.url}/health").status_code == 200:
                time.sleep(0.05)
            gate.set()
            returned = time.monotonic()
            while client.get(f"{recovered.url}/health").status_code != 200 and time.monotonic() - returned < 30:
                time.sleep(0.05)
            out["recovered_after_return_s"] = round(time.monotonic() - returned, 2)
            out["request_status_when_the_call_returns"] = hung.result(30).status_code
    recovered.stop()
    return out


def hung_section(h: dict[str, Any]) -> list[str]:
    during = h["health_during"]
    return [
        "",
        "## A model call that never returns",
        "",
        f"A callable that blocks on one input, served with `stuck_call_s={h['stuck_call_s']:g}`, "
        f"`timeout_s={h['timeout_s']:g}`.",
        "",
        "| figure | value |",
        "|---|---|",
        f"| `/health` before | {h['health_before']} |",
        f"| `/health` once the call has run past the bound | {during['http_status']} "
        f"after {h['health_503_after_s']} s: "
        f'`{during["status"]}` / "{during.get("reason", "")}" |',
        f"| the hung request | {h['request_status']} after {h['request_after_s']} s: {h['request_error']} |",
        f"| `stop(timeout_s=1)` with the call still running | returned in {h['stop_s']} s; warning: "
        f"{h['stop_warning']} |",
        f"| `/health` after such a call returns (a fresh server) | 200 again {h['recovered_after_return_s']} s "
        f"after the call returned; its request got {h['request_status_when_the_call_returns']} |",
    ]
