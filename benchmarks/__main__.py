"""``python -m benchmarks bench|generation|reliability|ab|levers|policies|model ...`` (see the package docstring)."""

from __future__ import annotations

import json
import sys


def main(argv: list[str]) -> int:
    commands = ("bench", "generation", "reliability", "ab", "levers", "policies", "model")
    if not argv or argv[0] not in commands:
        print(f"usage: python -m benchmarks {{{'|'.join(commands)}}} [options]  (--help after one)", file=sys.stderr)
        return 2
    command, rest = argv[0], argv[1:]
    if command == "bench":
        from .bench import main as bench

        return bench(rest)
    if command == "generation":
        from .generation import main as generation

        return generation(rest)
    if command == "reliability":
        from .reliability import main as reliability

        return reliability(rest)
    if command == "ab":
        from .ab import main as ab

        return ab(rest)
    if command == "levers":
        from .levers import main as levers

        return levers(rest)
    if command == "policies":
        from .policies import main as policies

        return policies(rest)
    from .inprocess import measure

    print(json.dumps(measure(rest)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
