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

:func:`wait_for_requests` does the same for the association's own reactor
(the thread that runs the handlers), which pynetdicom also runs as a loop
with a 1 ms sleep per turn: its next C-STORE request, decoded meanwhile by
the DUL reactor, waited out the rest of that sleep. The replacement loop does
the same checks in the same order but waits on the DIMSE message queue (up to
:data:`IDLE_WAKE_S`, while it counts as paused, so a thread that pauses the
reactor never waits on it). It copies pynetdicom 3.0's loop, so it is
installed only under pynetdicom 3.0.x; other versions keep their own loop.

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
import types
import weakref
from typing import Any

import pynetdicom
from pynetdicom import _config, evt
from pynetdicom.association import Association
from pynetdicom.dul import DULServiceProvider
from pynetdicom.presentation import PresentationContext
from pynetdicom.transport import AssociationSocket

IDLE_WAKE_S = 0.02  # an idle association's reactors look at their timers and stop flags this often
log = logging.getLogger("pynetdicom.association")  # where pynetdicom's own loop logs these


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


def wait_for_requests(assoc: Association) -> None:
    """Give one accepted association a reactor loop that waits for its next DIMSE message
    instead of sleeping 1 ms per turn (see the module docstring). Call on ``EVT_CONN_OPEN``."""
    if pynetdicom.__version__.startswith("3.0."):
        assoc._run_reactor = types.MethodType(_run_reactor, assoc)  # type: ignore[method-assign]


def _run_reactor(self: Association) -> None:
    """pynetdicom 3.0's ``Association._run_reactor`` for an acceptor, its 1 ms sleep replaced by a wait."""
    messages = self.dimse.msg_queue
    while not self._kill:
        self._is_paused = True
        _wait_for_item(messages, IDLE_WAKE_S)  # takes nothing: the message is taken below, unpaused
        self._reactor_checkpoint.wait()
        self._is_paused = False

        context_id, msg = self.dimse.get_msg(block=False)
        if msg:
            self._serve_request(msg, context_id)  # type: ignore[arg-type]

        if self.is_established and self.acse.is_release_requested():
            self.acse.send_release(is_response=True)
            log.info("Association Released")
            self.is_released = True
            self.is_established = False
            evt.trigger(self, evt.EVT_RELEASED, {})
            self.kill()
            return

        if self.acse.is_aborted():
            log.info("Association Aborted%s", " (A-P-ABORT)" if self.acse.is_aborted("a-p-abort") else "")
            self.dul.receive_pdu(wait=False)  # so that EVT_ACSE_RECV fires for subscribers
            self.is_aborted = True
            self.is_established = False
            evt.trigger(self, evt.EVT_ABORTED, {})
            self.kill()
            return

        if not self.dul.is_alive():
            self.kill()
            return

        if self.dul.idle_timer_expired():
            log.error("Network timeout reached")
            if self.network_timeout_response == "A-RELEASE":
                self._is_paused = True
                self._reactor_checkpoint.wait()
                self.release()
                self._is_paused = False
            else:
                self.abort()
            self.kill()
            return


def _wait_for_item(q: queue.Queue[Any], timeout: float) -> None:
    """Return once ``q`` holds an item, or after ``timeout`` seconds, without taking it."""
    with q.not_empty:
        if not q.queue:  # under the queue's own lock (qsize() would take it again)
            q.not_empty.wait(timeout)


def _close(*sockets: socket.socket) -> None:
    for s in sockets:
        s.close()
