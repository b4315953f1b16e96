"""The Ray Serve part of the ``make bench`` report (issue 15): pipeserve on Ray (1 and 2 replicas)
against pipeserve alone and a plain ``@serve.batch`` deployment, and where the time goes."""

from __future__ import annotations

from typing import Any

from .on_ray import (
    ALONE,
    ECHO,
    ONE,
    PLAIN,
    PLAIN_BATCH,
    PLAIN_WAIT_S,
    PROXY,
    RAY_REST,
    REST,
    ROLES,
    SERVER,
    TWO,
)


def _bound(ray: dict[str, Any], cpu_ms_per_answer: float) -> float:
    """Answers/s the machine's cores allow at ``cpu_ms_per_answer`` of CPU each."""
    return float(ray["cpus"]) * 1000 / max(cpu_ms_per_answer, 1e-9)


def _f(x: float | None, digits: int = 1) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


RAY_HEADING = "## Past one process: pipeserve on Ray Serve"


def ray_section(ray: dict[str, Any], limit_rps: float, sizes: dict[str, Any]) -> list[str]:
    t = ray["targets"]
    alone = t[ALONE]["c32"]["goodput_rps"]
    lines = [
        "",
        RAY_HEADING,
        "",
        f"The same model (`dtype='auto'`) behind five servers, one at a time: closed loops at c=1 "
        f"({sizes['c1_requests']} requests; the load generator in a process of its own) and c=32 "
        f"({sizes['closed_duration_s']:g} s; the generator in the benchmark's process, so its CPU can be read), "
        f"on this machine's {ray['cpus']} cores (`benchmarks/on_ray.py`). pipeserve alone runs "
        "as `python -m pipeserve_nb serve` (a process of its own, as a replica is) before any Ray process starts; "
        "the Ray targets share one local cluster. The plain deployment is the way Ray Serve's documentation batches: "
        f"the model called in the handler, batched by `@serve.batch(max_batch_size={PLAIN_BATCH}, "
        f"batch_wait_timeout_s={PLAIN_WAIT_S:g})`, one replica with every CPU, as pipeserve's single replica has.",
        "",
        "| server | c=1 p50 ms | c=32 ok/s | vs alone | vs in-process limit | c=32 p50 ms | c=32 p99 ms | "
        "mean batch | c=32 statuses |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for label, m in t.items():
        c1, c32 = m["c1"], m["c32"]
        batch = m.get("plain_mean_batch", c32["mean_batch_size"])
        statuses = ", ".join(f"{k[2:]}: {v}" for k, v in sorted(c32.items()) if k.startswith("n_"))
        lines.append(
            f"| {label} | {_f(c1['p50_ms'])} | {c32['goodput_rps']:.0f} | {c32['goodput_rps'] / alone:.2f} | "
            f"{c32['goodput_rps'] / limit_rps:.2f} | {_f(c32['p50_ms'])} | {_f(c32['p99_ms'])} | {_f(batch)} | "
            f"{statuses} |"
        )
    lines += ["", *_where_the_time_goes(ray, limit_rps)]
    return lines


def _where_the_time_goes(ray: dict[str, Any], limit_rps: float) -> list[str]:
    t = ray["targets"]
    cpu = {label: m["cpu_ms_per_answer"] for label, m in t.items()}
    lines = [
        "### Where the time goes",
        "",
        "CPU milliseconds per answer during each c=32 loop, by process (user + system time read with `psutil`; "
        f"for this loop the load generator runs in the benchmark's process; \"{REST}\" is the machine's busy time "
        "less the others); idle share: of all cores, over the loop:",
        "",
        "| server | " + " | ".join(ROLES) + " | total | idle share |",
        "|---|" + "---:|" * (len(ROLES) + 2),
    ]
    for label, per in cpu.items():
        lines.append(
            f"| {label} | " + " | ".join(f"{per[r]:.2f}" for r in ROLES)
            + f" | {sum(per.values()):.2f} | {t[label]['idle_share']:.0%} |"
        )  # fmt: skip
    added_c1 = t[ONE]["c1"]["p50_ms"] - t[ALONE]["c1"]["p50_ms"]
    echo_c1 = t[ECHO]["c1"]["p50_ms"]
    total = {label: sum(per.values()) for label, per in cpu.items()}
    echo_rps = t[ECHO]["c32"]["goodput_rps"]
    alone, one = t[ALONE]["c32"]["goodput_rps"], t[ONE]["c32"]["goodput_rps"]
    plain_batch = t[PLAIN].get("plain_mean_batch")
    ours_batch = t[ONE]["c32"]["mean_batch_size"]
    lines += [
        "",
        f"- **At c=1** Ray adds {added_c1:+.1f} ms to pipeserve's median ({t[ONE]['c1']['p50_ms']:.1f} vs "
        f"{t[ALONE]['c1']['p50_ms']:.1f} ms). A deployment that does no work answers through the same proxy in "
        f"{echo_c1:.1f} ms: that much is Ray's proxy and its routing to the replica (a second HTTP hop, a "
        "serialised request and answer, and the controller's router), paid by every request whatever the model.",
        f"- **At c=32** an answer cost {total[ONE]:.2f} ms of CPU in all behind Ray (1 replica) against "
        f"{total[ALONE]:.2f} ms alone. Ray's proxy took {cpu[ONE][PROXY]:.2f} ms of it and Ray's other processes "
        f"{cpu[ONE][RAY_REST]:.2f}; the replica's process {cpu[ONE][SERVER]:.2f} ms, against "
        f"{cpu[ALONE][SERVER]:.2f} ms for pipeserve's own process: a replica that runs no model (the last row) "
        f"still spent {cpu[ECHO][SERVER]:.2f} ms per answer, Ray's handling of a request inside the replica "
        "(receiving it from the proxy, relaying it to the app, sending the answer back). With the cores busy, "
        f"throughput is about cores / CPU per answer: {ray['cpus']} x 1000 / {total[ALONE]:.2f} = "
        f"{_bound(ray, total[ALONE]):.0f}/s alone (measured {alone:.0f}), {ray['cpus']} x 1000 / {total[ONE]:.2f} "
        f"= {_bound(ray, total[ONE]):.0f}/s behind Ray (measured {one:.0f}): on one machine, the CPU Ray spends "
        "on a request is CPU the model does not get. Ray's path with no model at all answered "
        f"{echo_rps:.0f} requests/s, {echo_rps / alone:.2f}x what pipeserve alone answers with the model.",
        f"- **2 replicas** reached {t[TWO]['c32']['goodput_rps'] / one:.2f}x 1 replica: each has one of the "
        f"{ray['cpus']} cores (torch threads 1), the two share the cores the one had, and the proxy's share "
        "is not split further; on a cluster each replica would bring its own cores. Each replica holds its own "
        "model copy: " + ", ".join(f"{mb:.0f}" for mb in t[TWO].get("replica_mb", [])) + " MiB "
        f"(the one replica {', '.join(f'{mb:.0f}' for mb in t[ONE].get('replica_mb', []))} MiB).",
        f"- **Plain `@serve.batch`** reached {t[PLAIN]['c32']['goodput_rps'] / one:.2f}x pipeserve's 1 replica "
        f"({t[PLAIN]['c32']['goodput_rps'] / limit_rps:.2f}x the in-process limit), with mean batches of "
        f"{_f(plain_batch)} against pipeserve's {_f(ours_batch)}, at {total[PLAIN]:.2f} ms of CPU per answer against "
        f"{total[ONE]:.2f} (Ray's share of each is in the table above). It calls the model in the replica's "
        "handler, on "
        "the event loop that also feeds `@serve.batch`'s queue: while a batch runs, no request joins the queue, and "
        "each batch goes to the model in arrival order, padded to its longest text. pipeserve's replica runs the "
        "model on its inference thread while its loop keeps admitting requests, and sorts each batch's pool by "
        "length.",
    ]
    return lines
