"""Runnable examples of payfirst's libraries against a running payfirst (`make run`)."""
