"""Numbered schema migrations, one directory per SQL dialect (package data)."""
