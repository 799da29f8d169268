"""Shared fixtures. The PostgreSQL / pgbouncer servers live in tests/pg.py."""

import os

from hypothesis import settings

pytest_plugins = ("tests.pg", "tests.specs")

# No per-example deadline: a loaded 2-core CI machine is not a slow implementation.
# In CI the examples are derandomized so a run is repeatable; locally (and in
# scripts/fuzz) they stay random to keep finding new cases.
settings.register_profile("default", deadline=None)
settings.register_profile("ci", deadline=None, derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "default")
