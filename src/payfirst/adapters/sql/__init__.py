"""The PostgreSQL store's SQL, kept in this package's `.sql` files (package data:
`queries.sql` for the pipeline, one file per platform part) and read once at import.

Each query there is a block headed `-- name: <name>`, then at least one comment line saying
what it does, then one statement. `QUERIES` maps names to statements (comments and the final
`;` removed); a name is unique across the files.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from importlib import resources
from types import MappingProxyType

_HEADER = re.compile(r"^-- name: (.*)$", re.MULTILINE)
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def parse_queries(text: str) -> dict[str, str]:
    """The named statements of a queries file (the text before the first header is the
    file's own comment)."""
    parts = _HEADER.split(text)
    queries: dict[str, str] = {}
    for raw_name, body in zip(parts[1::2], parts[2::2], strict=True):
        name = raw_name.strip()
        if not _NAME.match(name):
            raise ValueError(f"bad query name {name!r}")
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice")
        lines = body.strip("\n").splitlines()
        described = False
        while lines and lines[0].startswith("--"):
            described = True
            lines.pop(0)
        # What follows the statement (a blank line, a section comment) is not part of it.
        while lines and (not lines[-1].strip() or lines[-1].startswith("--")):
            lines.pop()
        statement = "\n".join(lines).strip().removesuffix(";").rstrip()
        if not described:
            raise ValueError(f"query {name!r} has no comment saying what it does")
        if not statement:
            raise ValueError(f"query {name!r} is empty")
        queries[name] = statement
    return queries


def _load() -> Mapping[str, str]:
    queries: dict[str, str] = {}
    files = sorted(
        (f for f in resources.files(__name__).iterdir() if f.name.endswith(".sql")),
        key=lambda f: f.name,
    )
    for file in files:
        for name, statement in parse_queries(file.read_text(encoding="utf-8")).items():
            if name in queries:
                raise ValueError(f"query {name!r} is defined in two files ({file.name})")
            queries[name] = statement
    return MappingProxyType(queries)


#: Every query of the PostgreSQL store, by name.
QUERIES: Mapping[str, str] = _load()
