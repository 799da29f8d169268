"""Throwaway PostgreSQL and pgbouncer servers for the test session (being written for issue 3)."""
