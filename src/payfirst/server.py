"""The HTTP server payfirst runs: uvicorn (httptools) with the limits uvicorn lacks.

uvicorn closes idle keep-alive connections, but a connection that never completes its
request headers is kept forever, headers of any size are buffered, and the number of open
connections is unbounded. `GuardedHttpProtocol` adds, per connection:

- a header read timeout: the request line and headers must be complete within
  `header_timeout_s` of the connection opening or of the first byte of a request;
- header size limits: at most `max_header_bytes` of request line + headers (counted as they
  arrive, so a header that never ends is cut off too) and at most `max_headers` headers:
  431 and the connection closed;
- a body read timeout: a body still incomplete `body_timeout_s` after its headers closes the
  connection (the ASGI `Guard` answers 408 first when the route is reading it);
- a connection limit: beyond `max_connections` open connections a new one is answered 503
  and closed at once.

`run_server` also replaces uvicorn's signal handling: SIGINT and SIGTERM are handled
explicitly (even when the process was started with SIGINT ignored, as a background job of a
non-interactive shell is), logged, and stop the server gracefully; a second one forces it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import resource
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Final, cast

import uvicorn
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from payfirst.domain.reasons import Reason

log = logging.getLogger("payfirst.server")

STOP_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)
# How long a refused connection's further bytes are drained before it is closed.
LINGER_S: Final = 2.0


@dataclass(frozen=True, slots=True)
class ServerLimits:
    header_timeout_s: float = 10.0
    body_timeout_s: float = 10.0
    keep_alive_s: int = 5
    max_header_bytes: int = 32 * 1024
    max_headers: int = 100
    max_connections: int = 2048


def _raw_answer(status: int, error: str, message: str) -> bytes:
    body = json.dumps({"error": error, "message": message}).encode("ascii")
    return b"".join(
        [
            STATUS_LINE[status],
            b"content-type: application/json\r\n",
            b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
            b"connection: close\r\n\r\n",
            body,
        ]
    )


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with header/body timeouts, header limits and a
    connection limit (see the module docstring). `limits` is set by `protocol_class`."""

    limits: ClassVar[ServerLimits] = ServerLimits()
    _refusals: ClassVar[int] = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._timer: asyncio.TimerHandle | None = None
        self._awaiting_headers = True
        self._pending_bytes = 0  # bytes received while headers are incomplete
        self._header_size = 0
        self._header_count = 0
        self._boundaries = 0
        self._refused = False

    # connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            cls = type(self)
            cls._refusals += 1
            if cls._refusals in (1, 10, 100) or cls._refusals % 1000 == 0:
                log.warning(
                    "connection limit (%d) reached: refused %d connections so far",
                    self.limits.max_connections,
                    cls._refusals,
                )
            self._refuse(
                503, Reason.TOO_MANY_CONNECTIONS.value, "the server is at its connection limit"
            )
            return
        self._arm(self.limits.header_timeout_s, self._header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._awaiting_headers and self._timer is None:
            # The first byte of the next request on a kept-alive connection.
            self._arm(self.limits.header_timeout_s, self._header_timeout)
        completed = self._boundaries
        super().data_received(data)
        if self._refused or not self._awaiting_headers:
            return
        if completed != self._boundaries:
            # A message ended in this chunk; what follows it is at most one chunk.
            self._pending_bytes = 0
            return
        self._pending_bytes += len(data)
        if self._pending_bytes > self.limits.max_header_bytes:
            self._headers_too_large()

    # parser callbacks

    def on_message_begin(self) -> None:
        if self._refused:
            return
        self._header_size = 0
        self._header_count = 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        if self._refused:
            return
        self._header_size += len(url)
        if self._header_size > self.limits.max_header_bytes:
            self._headers_too_large()
            return
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._refused:
            return
        self._header_size += len(name) + len(value) + 4
        self._header_count += 1
        if (
            self._header_size > self.limits.max_header_bytes
            or self._header_count > self.limits.max_headers
        ):
            self._headers_too_large()
            return
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._refused:
            return
        self._awaiting_headers = False
        self._pending_bytes = 0
        self._disarm()
        # Covers bodies no route reads; a route reading it answers 408 at body_timeout_s.
        self._arm(self.limits.body_timeout_s + 1.0, self._body_timeout)
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if self._refused:
            return
        super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        self._disarm()
        self._awaiting_headers = True
        self._boundaries += 1
        super().on_message_complete()

    # limits

    def _arm(self, delay: float, callback: Callable[[], None]) -> None:
        self._disarm()
        self._timer = self.loop.call_later(delay, callback)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _header_timeout(self) -> None:
        self._timer = None
        if self.transport.is_closing() or not self._awaiting_headers:
            return
        if self._pending_bytes or self._header_size:
            self._refuse(408, Reason.REQUEST_TIMEOUT.value, "the request headers took too long")
        else:  # an idle connection: nothing to answer
            self._refused = True
            self.transport.close()

    def _body_timeout(self) -> None:
        self._timer = None
        if self.transport.is_closing() or self._awaiting_headers:
            return
        if self.cycle is not None and not self.cycle.response_started:
            # The route then sees a disconnect; whatever it sends is dropped.
            self._refuse(408, Reason.REQUEST_TIMEOUT.value, "the request body took too long")
        else:
            self._refused = True
            self.transport.close()

    def _headers_too_large(self) -> None:
        self._refuse(
            431,
            Reason.REQUEST_HEADER_FIELDS_TOO_LARGE.value,
            f"request headers are limited to {self.limits.max_header_bytes} bytes and "
            f"{self.limits.max_headers} fields",
        )

    def _refuse(self, status: int, error: str, message: str) -> None:
        """Answer `status` and close. The connection's remaining bytes are read and dropped
        for a moment (a lingering close): closing a socket with unread bytes resets it, and
        the client could lose the answer."""
        self._refused = True
        self._disarm()
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # A request in flight on this connection (pipelined): its answer is dropped.
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        self.transport.write(_raw_answer(status, error, message))
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self._timer = self.loop.call_later(LINGER_S, self.transport.close)
        else:  # pragma: no cover - TLS
            self.transport.close()


def protocol_class(limits: ServerLimits) -> type[GuardedHttpProtocol]:
    """A GuardedHttpProtocol subclass bound to `limits` (uvicorn instantiates the class)."""
    return cast(
        type[GuardedHttpProtocol],
        type("GuardedHttpProtocol", (GuardedHttpProtocol,), {"limits": limits}),
    )


def raise_open_files_limit(connections: int) -> None:
    """Let the process hold `connections` sockets plus its own files, up to the hard limit."""
    with contextlib.suppress(ValueError, OSError):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        wanted = connections + 256
        if soft != resource.RLIM_INFINITY and soft < wanted:
            new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))


class _Server(uvicorn.Server):
    """uvicorn's server without its own signal handling: `run_server` does that."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def make_server(
    app: Any, host: str, port: int, limits: ServerLimits | None = None
) -> uvicorn.Server:
    limits = limits or ServerLimits()
    raise_open_files_limit(limits.max_connections)
    return _Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            http=protocol_class(limits),
            timeout_keep_alive=limits.keep_alive_s,
            log_level="warning",
            access_log=False,
            # A listen backlog beyond the connection limit only queues refusals.
            backlog=min(4096, max(limits.max_connections, 128)),
        )
    )


class StopSignals:
    """SIGINT/SIGTERM handled on the running loop, whatever the process inherited (a
    background job of a non-interactive shell starts with SIGINT ignored). The first
    signal logs a line and calls every registered stop callback; a second one calls the
    force callbacks."""

    def __init__(self) -> None:
        self.stopping = asyncio.Event()
        self._on_stop: list[Callable[[], None]] = []
        self._on_force: list[Callable[[], None]] = []
        self._installed: list[int] = []

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, self._received, sig)
            self._installed.append(sig)

    def uninstall(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in self._installed:
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
        self._installed.clear()

    def on_stop(
        self, callback: Callable[[], None], force: Callable[[], None] | None = None
    ) -> None:
        self._on_stop.append(callback)
        if force is not None:
            self._on_force.append(force)
        if self.stopping.is_set():
            callback()

    def _received(self, sig: int) -> None:
        name = signal.Signals(sig).name
        if self.stopping.is_set():
            log.warning("%s received again: stopping now", name)
            for callback in self._on_force:
                callback()
            return
        log.warning("%s received: stopping (send it again to force)", name)
        self.stopping.set()
        for callback in self._on_stop:
            callback()


def watch_server(server: uvicorn.Server, signals: StopSignals) -> None:
    def stop() -> None:
        server.should_exit = True

    def force() -> None:
        server.force_exit = True

    signals.on_stop(stop, force)


def restore_default_sigint() -> None:
    """Before the loop runs: SIGINT raises KeyboardInterrupt even if it was inherited as
    ignored, so Ctrl-C during start-up stops the process too (asyncio.run turns it into a
    cancellation of the main task)."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
