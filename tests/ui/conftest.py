"""The console's browser tests use the harness's servers (fresh Redis) from tests/conftest.py."""
