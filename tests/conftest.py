"""Shared fixtures. The PostgreSQL / pgbouncer servers live in tests/pg.py."""

pytest_plugins = ("tests.pg", "tests.specs")
