"""Shared fixtures live in tests/fixtures/: one module for the chain, one for the stores."""

pytest_plugins = ["tests.fixtures.chain", "tests.fixtures.store"]
