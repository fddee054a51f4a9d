"""Hypothesis settings shared by the property-based tests (``tests/test_fuzz_*.py``).

Derandomized: every run draws the same examples (Hypothesis seeds each test from its own source),
so a failure in CI is the same failure on a laptop, and a commit never turns CI red because a
random search happened to look somewhere new this time. ``derandomize=True`` also means no example
database: nothing is written to ``.hypothesis/``, and no example remembered on one machine changes
what another runs. The price is that the search does not widen from run to run; for that, run the
fuzz tests locally with ``HOTLINE_FUZZ_EXPLORE=N``: a random seed and N times the examples (a
failure it finds prints the ``@example`` to add).

No deadline: the first examples of a module pay for loading (lexicons, a server warming up), and a
slow example is not a wrong one; the suite's own time is what is bounded (``max_examples``).
"""
from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

EXPLORE = int(os.environ.get("HOTLINE_FUZZ_EXPLORE") or 0)


def fuzz(max_examples: int) -> settings:
    """Settings for one property: ``max_examples`` reproducible examples (more when exploring)."""
    return settings(
        max_examples=max_examples * (EXPLORE or 1),
        derandomize=not EXPLORE,
        database=None,
        deadline=None,
        # Large texts are the point of some strategies; the module-scoped fixtures (a loaded
        # pipeline, a running server) are shared on purpose.
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                               HealthCheck.function_scoped_fixture, HealthCheck.large_base_example],
        print_blob=True,
    )
