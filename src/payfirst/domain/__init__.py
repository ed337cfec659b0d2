"""Statuses, records and errors of payfirst: pure data, no IO."""
