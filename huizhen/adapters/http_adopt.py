"""uvicorn serving connections accepted elsewhere: the HTTP side of :mod:`huizhen.adapters.balance`.

uvicorn has no API for a socket another process accepted, so this leans on its
internals at the pinned version: a connection is served by
``config.http_protocol_class`` built as ``uvicorn.Server.startup`` builds it,
on ``loop.connect_accepted_socket`` (TLS handshake included, with the context
of the config). Each connection reports its end once, whether it ended as
HTTP or after an upgrade to a WebSocket (uvicorn then moves the transport to a
``ws_protocol_class`` protocol, whose ``connection_lost`` is the one called).
Graceful shutdown is uvicorn's: the adopted connections are in its
``server_state.connections`` like any other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import uvicorn

log = logging.getLogger(__name__)

_Ended = Callable[[], None]


def _reporting(base: type[Any]) -> type[Any]:
    """``base`` (a uvicorn protocol class) calling its ``on_closed`` once the connection is lost."""

    class Reporting(base):  # type: ignore[misc, valid-type]
        on_closed: _Ended | None = None

        def connection_lost(self, exc: Exception | None) -> None:
            try:
                super().connection_lost(exc)
            finally:
                on_closed, self.on_closed = self.on_closed, None
                if on_closed is not None:
                    on_closed()

    return Reporting


def _reporting_http(base: type[Any], ws: type[Any] | None) -> type[Any]:
    class ReportingHttp(_reporting(base)):  # type: ignore[misc]
        on_closed: _Ended | None

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.ws_protocol_class = ws

        def handle_websocket_upgrade(self, *args: Any) -> None:
            super().handle_websocket_upgrade(*args)
            upgraded = self.transport.get_protocol()
            if upgraded is not self:  # the WebSocket protocol reports the end from now on
                upgraded.on_closed, self.on_closed = self.on_closed, None

    return ReportingHttp


class AdoptingServer(uvicorn.Server):
    """uvicorn serving the connections handed to :meth:`adopt`; ``serve(sockets=[])``: it listens on nothing.

    ``signals=False``: no signal handlers (a worker process, which the parent stops).
    ``on_started``: awaited once it serves (connections may be handed from then on);
    ``on_stopping``: awaited when shutdown begins (no more are handed from then on).
    """

    def __init__(self, config: uvicorn.Config, *, signals: bool = True) -> None:
        super().__init__(config)
        self._signals = signals
        self.on_started: Callable[[], Awaitable[None]] | None = None
        self.on_stopping: Callable[[], Awaitable[None]] | None = None
        self._protocol: type[Any] | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and self.on_started is not None:
            await self.on_started()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self.on_stopping is not None:
            await self.on_stopping()
        await super().shutdown(sockets)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if not self._signals:
            yield
            return
        with super().capture_signals():
            yield

    async def adopt(self, sock: socket.socket, on_closed: _Ended) -> None:
        reported = False

        def ended() -> None:
            nonlocal reported
            if not reported:
                reported = True
                on_closed()

        if not self.started or self.should_exit:  # not serving (yet, or any more): the client may retry
            sock.close()
            ended()
            return
        config, loop = self.config, asyncio.get_running_loop()
        if self._protocol is None:  # the config is loaded once started
            ws = config.ws_protocol_class
            self._protocol = _reporting_http(config.http_protocol_class, _reporting(ws) if ws else None)
        protocol_class = self._protocol

        def protocol() -> asyncio.Protocol:
            made = protocol_class(config=config, server_state=self.server_state, app_state=self.lifespan.state,
                                  _loop=loop)
            made.on_closed = ended
            return made  # type: ignore[no-any-return]

        try:
            await loop.connect_accepted_socket(protocol, sock, ssl=config.ssl)
        except OSError as exc:  # a failed TLS handshake (SSLError), a peer gone already
            log.info("HTTP connection lost before it was served: %s", type(exc).__name__)
            sock.close()
            ended()
