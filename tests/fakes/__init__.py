"""In-memory implementations of payfirst's ports, for unit tests."""
