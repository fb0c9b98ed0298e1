"""Fixtures of the price-poller tests: the shared ones (including fresh_pg_dsn) are in tests/conftest.py."""
