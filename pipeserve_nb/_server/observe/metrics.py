"""Prometheus metrics of one server, in a registry of its own, for ``GET /metrics``.

``prometheus-client`` writes the exposition format; this module only declares the metrics
(every one labelled with the server's name) and is fed by ``Stats``, the one home of the
server's numbers. A registry per server means that starting, stopping and re-running
``serve()`` in one kernel never raises a duplicate-metric error and never mixes two
servers' numbers (the process-wide default registry is not used).

Names follow Prometheus conventions: base units (seconds), ``_total`` on counters (the
client adds it), a ``server`` label, a ``model`` label (the name a server with several models routes by;
each model keeps its own registry and ``render_together`` writes them as one exposition, each family once),
and a ``replica`` label on a replica of a Ray Serve
deployment (``serve_on_ray``), so each replica's series stay apart when summed. Padding efficiency is
``rate(pipeserve_real_tokens_total) / rate(pipeserve_padded_tokens_total)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

__all__ = ["Metrics", "CONTENT_TYPE", "render_together"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
"""The ``Content-Type`` of the text format ``render()`` returns."""

_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_BATCH = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class Metrics:
    """The metrics of the model named ``model`` in the server named ``server`` (of its ``replica``, on Ray Serve)."""

    def __init__(self, server: str, replica: str | None = None, model: str = "default") -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)
        self._labels = {"server": server, "model": model} | ({"replica": replica} if replica is not None else {})
        names = list(self._labels)

        histogram = self._histogram

        def counter(name: str, text: str) -> Any:
            return Counter(name, text, names, registry=r).labels(**self._labels)

        def gauge(name: str, text: str) -> Any:
            return Gauge(name, text, names, registry=r).labels(**self._labels)

        self._requests = Counter(
            "pipeserve_requests",
            "Answers of the model route and refusals on any route, by status",
            [*names, "status"],
            registry=r,
        )
        self._dropped = Counter(
            "pipeserve_dropped_before_inference",
            "Requests answered before they reached the model, by reason",
            [*names, "reason"],
            registry=r,
        )
        self.latency = histogram("pipeserve_request_duration_seconds", "Time from a request's arrival to its answer")
        self.queue_wait = histogram(
            "pipeserve_queue_wait_seconds", "Time a request waited before its first input reached the model"
        )
        self.model_time = histogram("pipeserve_model_call_duration_seconds", "Time of one model call (one batch)")
        self.batch_size = histogram("pipeserve_batch_size", "Inputs in one model call", _BATCH)
        self.real_tokens = counter("pipeserve_real_tokens", "Tokens of the inputs the model ran")
        self.padded_tokens = counter("pipeserve_padded_tokens", "Tokens the model computed, padding included")
        self.busy = counter("pipeserve_model_busy_seconds", "Time the model spent in calls")
        self._depth = gauge("pipeserve_queue_depth", "Requests accepted and not yet started")
        self._healthy = gauge("pipeserve_healthy", "1 while /health answers 200, else 0")
        self._by_status: dict[int, Any] = {}

    def watch(self, queue_depth: Callable[[], float], healthy: Callable[[], bool]) -> None:
        """Read the queue depth and the health state at each scrape."""
        self._depth.set_function(queue_depth)
        self._healthy.set_function(lambda: 1.0 if healthy() else 0.0)

    def watch_generation(self, read: Callable[[], Mapping[str, Any]]) -> Callable[[float | None, float | None], None]:
        """Read the generations' numbers at each scrape: ``read()`` gives ``running`` and ``waiting`` streams,
        ``ended`` (a count per reason) and ``completion_tokens`` (generated since the server started).
        Returns what to call with each finished generation's time to first token and mean inter-token time
        (seconds; None where it has none): the two histograms."""
        self.registry.register(_Generations(read, self._labels))
        first = self._histogram(
            "pipeserve_time_to_first_token_seconds", "Time from a generation's arrival to its first token"
        )
        between = self._histogram(
            "pipeserve_inter_token_seconds", "Mean time between a generation's tokens after its first"
        )

        def finished(first_token_s: float | None, inter_token_s: float | None) -> None:
            if first_token_s is not None:
                first.observe(first_token_s)
            if inter_token_s is not None:
                between.observe(inter_token_s)

        return finished

    def _histogram(self, name: str, text: str, buckets: tuple[float, ...] = _SECONDS) -> Any:
        """A histogram of this server's registry, with its labels."""
        return Histogram(name, text, list(self._labels), registry=self.registry, buckets=buckets).labels(**self._labels)

    def response(self, status: int, latency_s: float) -> None:
        child = self._by_status.get(status)
        if child is None:
            child = self._by_status[status] = self._requests.labels(**self._labels, status=str(status))
        child.inc()
        self.latency.observe(latency_s)

    def batch(self, size: int, seconds: float, real_tokens: int, padded_tokens: int) -> None:
        self.batch_size.observe(size)
        self.model_time.observe(seconds)
        self.busy.inc(seconds)
        self.real_tokens.inc(real_tokens)
        self.padded_tokens.inc(padded_tokens)

    def dropped(self, reason: str) -> None:
        self._dropped.labels(**self._labels, reason=reason).inc()

    def declare_reasons(self, reasons: tuple[str, ...]) -> None:
        """Show every drop reason from the start, at 0 (a series that appears late breaks rate())."""
        for reason in reasons:
            self._dropped.labels(**self._labels, reason=reason)

    def render(self) -> bytes:
        """The metrics in the Prometheus text format."""
        return generate_latest(self.registry)


def render_together(parts: Sequence[Metrics]) -> bytes:
    """The metrics of several models of one server as one exposition (each family once, every model's series)."""
    if len(parts) == 1:
        return parts[0].render()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Merged([part.registry for part in parts]))
    return generate_latest(registry)


class _Merged(Collector):
    """The families of several registries, merged by name (their series differ by the ``model`` label)."""

    def __init__(self, registries: Sequence[CollectorRegistry]) -> None:
        self._registries = registries

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        for registry in self._registries:
            for family in registry.collect():
                merged = families.get(family.name)
                if merged is None:
                    merged = families[family.name] = Metric(family.name, family.documentation, family.type, family.unit)
                merged.samples.extend(family.samples)
        yield from families.values()


class _Generations(Collector):
    """The generation metrics, read from the step loop when scraped (it counts on the inference thread)."""

    def __init__(self, read: Callable[[], Mapping[str, Any]], labels: Mapping[str, str]) -> None:
        self._read = read
        self._labels = dict(labels)

    def collect(self) -> Iterator[Any]:
        numbers = self._read()
        names, values = list(self._labels), list(self._labels.values())
        for name, text in (
            ("running", "Generations in the model's steps now"),
            ("waiting", "Generations waiting for a slot"),
        ):
            gauge = GaugeMetricFamily(f"pipeserve_generations_{name}", text, labels=names)
            gauge.add_metric(values, numbers[name])
            yield gauge
        ended = CounterMetricFamily(
            "pipeserve_generations_ended", "Generations that ended, by reason", labels=[*names, "reason"]
        )
        for reason, count in numbers["ended"].items():
            ended.add_metric([*values, reason], count)
        yield ended
        tokens = CounterMetricFamily("pipeserve_completion_tokens", "Tokens the model generated", labels=names)
        tokens.add_metric(values, numbers["completion_tokens"])
        yield tokens
