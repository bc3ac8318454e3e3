"""How long the fuzz suites run.

The default test run gives each suite a short, fixed set of examples (derandomized, so CI
sees the same ones every time). ``PARLEY_FUZZ_EXAMPLES=N`` asks for N examples with a
random seed instead: the long hunt, run on demand (``scripts/fuzz``), never in CI.
"""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, Phase, settings

FULL_EXAMPLES = os.environ.get("PARLEY_FUZZ_EXAMPLES", "")


def is_full_run() -> bool:
    return bool(FULL_EXAMPLES)


def fuzz_settings(short_examples: int, **extra: Any) -> settings:
    """Hypothesis settings: ``short_examples`` derandomized ones by default, or
    ``PARLEY_FUZZ_EXAMPLES`` random ones. Shrinking is kept: a failure is reported at its
    smallest. Nothing is written to an example database in the working tree."""
    full = is_full_run()
    return settings(
        max_examples=int(FULL_EXAMPLES) if full else short_examples,
        derandomize=not full,
        deadline=None,
        database=None,
        print_blob=True,
        # Explicit examples and generation, then shrinking; no replay of a database.
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        **extra,
    )
