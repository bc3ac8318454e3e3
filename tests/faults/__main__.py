"""Run the fault scenarios at full length and print their counts:

    python -m tests.faults              every scenario, full length (several minutes)
    python -m tests.faults --short 5 1  scenarios 5 and 1, the short form CI runs

PostgreSQL and Redis come from ``PARLEY_TEST_DATABASE_URL`` / ``PARLEY_TEST_REDIS_URL``,
by default database ``parley_faults`` and Redis DB 8 on 127.0.0.1 (scenarios 2 and 3 start
private servers of their own; 4 and 5 run on the embedded default). The exit status is 1
when any scenario misses what it promises.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault(
    "PARLEY_TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/parley_faults"
)
os.environ.setdefault("PARLEY_TEST_REDIS_URL", "redis://127.0.0.1:6379/8")

# Imported after the defaults above: tests.conftest reads the variables when imported.
from tests.conftest import DATABASE_URL, REDIS_URL
from tests.faults import scenarios
from tests.faults.checker import table
from tests.faults.scenarios import RSS_BOUND_MB, Result

Run = Callable[[Path, bool], Result]

RUNS: dict[str, Run] = {
    "5": lambda tmp, full: scenarios.sqlite_node_killed(tmp, full=full),
    "1": lambda tmp, full: scenarios.node_killed(tmp, DATABASE_URL, REDIS_URL, full=full),
    "2": lambda tmp, full: scenarios.redis_killed(tmp, DATABASE_URL, full=full),
    "3": lambda tmp, full: scenarios.postgres_stopped(tmp, full=full),
    "4": lambda tmp, full: scenarios.slow_consumers(tmp, full=full),
}


def shortfalls(key: str, result: Result) -> list[str]:
    """What the scenario promised and did not keep (the same checks as its test)."""
    v, facts = result.verdict, result.facts
    missed = []
    if (v.lost, v.duplicated, v.unexpected) != (0, 0, 0):
        missed.append("lost, duplicated or unexpected messages")
    if v.out_of_order:
        missed.append("out-of-order messages")
    if key == "2" and facts["fan-out back s"] > 5:
        missed.append("live fan-out not back within 5 s")
    if key == "3" and (
        facts["probe"] != "503 SERVICE_UNAVAILABLE"
        or not facts["probe retry-after"]
        or facts["acked during outage"]
        or not facts["alive"]
        or facts["refused"]
    ):
        missed.append("the outage was not a clean 503")
    if key == "4" and (
        facts["rss peak MB"] >= RSS_BOUND_MB or facts["p99 stalled ms"] > 2 * facts["p99 base ms"]
    ):
        missed.append(f"RSS over {RSS_BOUND_MB} MB or p99 over 2x")
    return missed


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.faults", description=__doc__)
    parser.add_argument("--short", action="store_true", help="the short form CI runs")
    parser.add_argument("which", nargs="*", default=list(RUNS), help="scenario numbers")
    args = parser.parse_args()
    results: dict[str, Result] = {}
    missed: dict[str, list[str]] = {}
    for key in args.which:
        with tempfile.TemporaryDirectory(prefix=f"parley-faults-{key}-") as tmp:
            started = time.monotonic()
            print(f"scenario {key} ...", file=sys.stderr, flush=True)
            result = RUNS[key](Path(tmp), not args.short)
            result.facts["seconds"] = round(time.monotonic() - started)
        results[result.name] = result
        missed[result.name] = shortfalls(key, result)
    print(table({name: r.verdict for name, r in results.items()}))
    print()
    for name, result in results.items():
        facts = ", ".join(f"{k}={v}" for k, v in result.columns().items())
        answers = ", ".join(f"{k}: {n}" for k, n in sorted(result.answers.items()))
        print(f"{name}: {facts}\n    answers: {answers}")
        for problem in result.verdict.problems[:5]:
            print(f"    e.g. {problem}")
        for what in missed[name]:
            print(f"    MISSED: {what}")
    return 1 if any(missed.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
