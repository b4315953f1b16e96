"""The machine a report was measured on, in one line: when, which CPU, how many cores, whether it runs
bfloat16 natively. Results from two machines differ by more than any lever: a report says which it is."""

from __future__ import annotations

import datetime as dt
import os
import platform
from pathlib import Path

__all__ = ["machine"]

_BF16_FLAGS = {"avx512_bf16", "amx_bf16"}  # an x86 CPU's flags for native bfloat16 (what "auto" casts on)


def machine() -> str:
    """For example ``2026-12-07 05:50 UTC on AMD EPYC (x86_64, 2 cores, no native bfloat16)``."""
    fields: dict[str, str] = {}
    cpuinfo = Path("/proc/cpuinfo")
    for line in cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []:
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    name = fields.get("model name") or platform.machine()
    about = [platform.machine(), f"{os.cpu_count()} cores"]
    if "flags" in fields:  # x86
        about.append("native bfloat16" if _BF16_FLAGS & set(fields["flags"].split()) else "no native bfloat16")
    return f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC on {name} ({', '.join(about)})"
