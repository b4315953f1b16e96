"""Traffic a running server records: when each request arrived, with its inputs and parameters.

``server.recording()`` turns a ``TrafficLog`` on in the engine of a model; ``Engine.submit`` adds every
request it admits (on the server's event loop), up to ``limit`` requests; ``RecordedTraffic`` is what was
recorded, kept as plain data so the measurement toolkit can replay it (``pipeserve_nb.Replay``) against
another setting of the same model (``pipeserve_nb.tune``). Requests refused before admission (503s,
malformed bodies) are not recorded: the load a server was asked to carry is what it admitted.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..._exceptions import InvalidSetting

__all__ = ["RecordedTraffic", "Recording", "TrafficLog"]


@dataclass(frozen=True)
class RecordedTraffic:
    """Requests a server admitted while it recorded, oldest first.

    ``arrivals_s[i]`` is when request ``i`` arrived, in seconds from the start of the recording;
    ``inputs[i]`` its texts and ``parameters[i]`` its parameters. ``dropped`` counts the requests that
    arrived after ``limit`` were recorded (not kept).
    """

    model: str
    arrivals_s: tuple[float, ...]
    inputs: tuple[tuple[str, ...], ...]
    parameters: tuple[Mapping[str, Any], ...]
    duration_s: float
    dropped: int = 0

    def __len__(self) -> int:
        return len(self.arrivals_s)

    @property
    def rate_rps(self) -> float:
        """Requests per second over the recording."""
        return len(self) / self.duration_s if self.duration_s > 0 else 0.0

    def __repr__(self) -> str:
        inputs = sum(len(i) for i in self.inputs)
        return (
            f"RecordedTraffic(model={self.model!r}, requests={len(self)}, inputs={inputs}, "
            f"duration_s={self.duration_s:.1f}, rate_rps={self.rate_rps:.1f}, dropped={self.dropped})"
        )


class TrafficLog:
    """The engine's record of admitted requests while a recording runs (appended on the server's loop)."""

    def __init__(self, model: str, started_s: float, limit: int) -> None:
        if limit < 1:
            raise InvalidSetting(f"recording(limit={limit!r}): record at least one request")
        self.model, self.started_s, self.limit = model, started_s, limit
        self.ended_s: float | None = None
        self.dropped = 0
        self._entries: list[tuple[float, tuple[str, ...], Mapping[str, Any]]] = []

    def add(self, now_s: float, inputs: list[str], parameters: Mapping[str, Any]) -> None:
        """Record a request admitted at ``now_s`` (monotonic seconds)."""
        if len(self._entries) >= self.limit:
            self.dropped += 1
            return
        self._entries.append((now_s - self.started_s, tuple(inputs), dict(parameters)))

    def __len__(self) -> int:
        return len(self._entries)

    def snapshot(self, now_s: float) -> RecordedTraffic:
        """What was recorded so far (or until the recording ended)."""
        entries = list(self._entries)  # one copy under the GIL: the loop may append meanwhile
        end = self.ended_s if self.ended_s is not None else now_s
        return RecordedTraffic(
            model=self.model,
            arrivals_s=tuple(e[0] for e in entries),
            inputs=tuple(e[1] for e in entries),
            parameters=tuple(e[2] for e in entries),
            duration_s=max(end - self.started_s, 0.0),
            dropped=self.dropped,
        )


class Recording:
    """What ``server.recording()`` yields: ``traffic``, what was recorded so far (all of it, after the block)."""

    def __init__(self, log: TrafficLog, clock: Callable[[], float]) -> None:
        self._log, self._clock = log, clock

    @property
    def traffic(self) -> RecordedTraffic:
        """The requests recorded so far, oldest first (a snapshot: record on, and ask again for more)."""
        return self._log.snapshot(self._clock())

    def __repr__(self) -> str:
        state = "ended" if self._log.ended_s is not None else "recording"
        return f"<Recording of {self._log.model!r}, {state}: {len(self._log)} requests>"
