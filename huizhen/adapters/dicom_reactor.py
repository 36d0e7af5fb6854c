"""pynetdicom tuning for C-STORE throughput: a DUL reactor that waits on events instead of polling,
and cheap copies of the supported presentation contexts.

pynetdicom 3 runs every association in two threads. Its DUL reactor polls:
each loop it tries the outgoing queue, checks the socket with a zero-timeout
``select`` and, when nothing happened, sleeps ``_run_loop_delay`` (1 ms).
With one storescu sending instance after instance, each C-STORE pays that
sleep when its request arrives and again when the response is queued; on
this project's 2-core machines that was a fifth of the time per instance.

:func:`wake_on_events`, run on ``EVT_CONN_OPEN`` for each association, makes
that association's reactor wait instead: ``_run_loop_delay`` becomes 0 and
the socket's ``ready`` check blocks in ``select`` on the peer's socket *and*
on a wake-up socket written whenever a primitive is queued to be sent. So a
request is read the moment its bytes arrive and a response leaves the moment
it is queued, while an idle association wakes at most every
:data:`IDLE_WAKE_S` (to see its timers and the stop flag) rather than every
millisecond. Only instance attributes of that association's objects are
changed; nothing global.

:func:`cheaply_copied` answers a cost paid once per association: pynetdicom
deep-copies the server's presentation contexts for every association it
accepts, and for every storage SOP class times every transfer syntax (170
contexts, 45 syntaxes) that took ~140 ms of CPU (under the GIL) before the
first C-STORE could be read. The contexts it returns copy only what an
association may change (the UIDs are immutable strings and stay shared).

:func:`quiet_pynetdicom_logs` sets the one global, ``_config.LOG_HANDLER_LEVEL``:
unless the ``pynetdicom`` logger is enabled for INFO, pynetdicom's "standard"
handlers (which build a log text for every PDU and DIMSE message) are not
bound to new associations. Association-level messages still reach the log.
"""

from __future__ import annotations

import logging
import queue
import select
import socket
import ssl
import weakref
from typing import Any

from pynetdicom import _config
from pynetdicom.dul import DULServiceProvider
from pynetdicom.presentation import PresentationContext
from pynetdicom.transport import AssociationSocket

IDLE_WAKE_S = 0.02  # an idle association's reactor looks at its timers and stop flag this often


def quiet_pynetdicom_logs() -> None:
    """No per-PDU/per-message log handlers on new associations, unless someone asked for those logs."""
    if not logging.getLogger("pynetdicom").isEnabledFor(logging.INFO):
        _config.LOG_HANDLER_LEVEL = "none"


class _CheaplyCopied(PresentationContext):
    """Deep-copied as a plain context whose own state is copied and whose UIDs are shared."""

    def __deepcopy__(self, memo: dict[int, Any]) -> PresentationContext:
        return _copy(self, PresentationContext)


def cheaply_copied(contexts: list[PresentationContext]) -> list[PresentationContext]:
    """The server's contexts (``start_server(contexts=…)``), copied for each association at little cost."""
    return [_copy(cx, _CheaplyCopied) for cx in contexts]


def _copy(cx: PresentationContext, cls: type[PresentationContext]) -> PresentationContext:
    new = cls.__new__(cls)
    new.__dict__.update(cx.__dict__)
    new._transfer_syntax = list(cx._transfer_syntax)  # the one mutable attribute; UIDs are immutable str
    return new


class _WakingQueue(queue.Queue[Any]):
    """The DUL's outgoing queue: every put also wakes the reactor's ``select``."""

    def __init__(self, wake: socket.socket) -> None:
        super().__init__()
        self._wake = wake

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        super().put(item, block, timeout)
        try:
            self._wake.send(b"\0")
        except OSError:  # full (the reactor is awake anyway) or closed (the association is over)
            pass


class _WaitingSocket(AssociationSocket):
    """An :class:`AssociationSocket` whose ``ready`` waits (bounded) for data or a wake-up."""

    _wake_r: socket.socket
    _dul: DULServiceProvider

    @property
    def ready(self) -> bool:
        sock = self.socket
        if sock is None or self._is_connected is False:
            return False
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return True  # decrypted bytes already buffered: select cannot see them (pynetdicom #528)
        dul = self._dul
        busy = not dul.event_queue.empty() or not dul.to_provider_queue.empty()
        try:
            readable, _, _ = select.select([sock, self._wake_r], [], [], 0 if busy else IDLE_WAKE_S)
        except (OSError, TimeoutError, ValueError):
            self.event_queue.put("Evt17")  # as pynetdicom does: the transport connection closed
            return False
        if self._wake_r in readable:
            try:
                self._wake_r.recv(4096)
            except OSError:
                pass
        return sock in readable


def wake_on_events(dul: DULServiceProvider) -> None:
    """Turn one association's polling DUL reactor into a waiting one (see the module docstring).

    Call before the reactor sends anything (``EVT_CONN_OPEN``). Does nothing when the
    association has no socket yet or was already converted.
    """
    sock = dul.socket
    if sock is None or isinstance(sock, _WaitingSocket) or type(sock) is not AssociationSocket:
        return
    wake_r, wake_w = socket.socketpair()
    wake_r.setblocking(False)
    wake_w.setblocking(False)
    pending = dul.to_provider_queue
    waking = _WakingQueue(wake_w)
    while True:  # anything already queued keeps its place
        try:
            waking.put(pending.get_nowait())
        except queue.Empty:
            break
    dul.to_provider_queue = waking
    sock._wake_r = wake_r  # type: ignore[attr-defined]
    sock._dul = dul  # type: ignore[attr-defined]
    sock.__class__ = _WaitingSocket
    weakref.finalize(sock, _close, wake_r, wake_w)
    dul._run_loop_delay = 0


def _close(*sockets: socket.socket) -> None:
    for s in sockets:
        s.close()
