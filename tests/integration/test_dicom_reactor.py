"""The SCP's pynetdicom tuning (huizhen/adapters/dicom_reactor.py) over real sockets and a real store.

Each accepted association's DUL reactor waits on its socket and a wake-up
socket instead of polling, and its own reactor on its DIMSE message queue:
these tests check that the conversion happens, and
that a converted association still does everything a polling one did: serve
after sitting idle, see its peer abort, release, carry TLS.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from copy import deepcopy
from pathlib import Path
from typing import Any

import pytest
import trustme
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, _config, evt
from pynetdicom.presentation import PresentationContext, build_context
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from huizhen.adapters.dicom import DicomListener
from huizhen.adapters.dicom_reactor import (
    IDLE_WAKE_S,
    _run_reactor,
    _WaitingSocket,
    _WakingQueue,
    cheaply_copied,
    quiet_pynetdicom_logs,
)
from huizhen.adapters.dicom_store_response import _send_msg
from huizhen.integration.events import InProcessBus
from huizhen.integration.store import Store
from huizhen.settings import Settings
from tests.dicom_support import MODALITY, PEERS, Running, corpus, pynetdicom_store, running_listener

CT = corpus("CT_small.dcm")
CT_CONTEXT = build_context("1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.1.2.1")  # CT Image Storage, explicit LE


@pytest.fixture
async def scp(store: Store, tmp_path: Path) -> Any:
    async with running_listener(store, tmp_path / "data") as running:
        yield running


def _acceptor(running: Running) -> Any:
    server = running.listener.server
    assert server is not None
    [assoc] = [a for a in server.active_associations if a.is_alive()]
    return assoc


def _until(condition: Any, within: float = 10.0) -> bool:
    """Poll ``condition`` until true or ``within`` seconds passed (a bound for the wait, not a timing check)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return bool(condition())


def _session(port: int, running: Running, *, tls: ssl.SSLContext | None = None) -> dict[str, Any]:
    ae = AE(MODALITY)
    ae.requested_contexts = [build_context(Verification), CT_CONTEXT]
    tls_args = (tls, "127.0.0.1") if tls is not None else None
    assoc = ae.associate("127.0.0.1", port, ae_title="HUIZHEN", tls_args=tls_args)
    assert assoc.is_established
    try:
        acceptor = _acceptor(running)
        seen = {
            "waiting_socket": isinstance(acceptor.dul.socket, _WaitingSocket),
            "waking_queue": isinstance(acceptor.dul.to_provider_queue, _WakingQueue),
            "loop_delay": acceptor.dul._run_loop_delay,
            "waiting_association": getattr(acceptor._run_reactor, "__func__", None) is _run_reactor,
            "direct_store_answers": getattr(acceptor.dimse.send_msg, "__func__", None) is _send_msg,
        }
        time.sleep(IDLE_WAKE_S * 5)  # let the reactor go idle: the next request must wake it
        seen["echo"] = int(assoc.send_c_echo().Status)
        seen["stores"] = [int(assoc.send_c_store(CT).Status) for _ in range(3)]
        # someone listening for sent messages gets them: that response takes pynetdicom's own path
        sent: list[str] = []
        acceptor.bind(evt.EVT_DIMSE_SENT, lambda event: sent.append(type(event.message).__name__))
        seen["stores"].append(int(assoc.send_c_store(CT).Status))
        seen["seen_sent"] = sent
    finally:
        assoc.release()
    seen["released"] = assoc.is_released
    seen["acceptor_gone"] = _until(lambda: not running.listener.server.active_associations)  # type: ignore[union-attr]
    return seen


async def test_accepted_association_waits_instead_of_polling_and_serves(scp: Running) -> None:
    seen = await asyncio.to_thread(_session, scp.port, scp)
    assert seen == {
        "waiting_socket": True, "waking_queue": True, "loop_delay": 0, "waiting_association": True,
        "direct_store_answers": True, "echo": 0, "stores": [0, 0, 0, 0], "seen_sent": ["C_STORE_RSP"],
        "released": True, "acceptor_gone": True,
    }


def _abort(port: int, running: Running) -> bool:
    ae = AE(MODALITY)
    ae.requested_contexts = [build_context(Verification)]
    assoc = ae.associate("127.0.0.1", port, ae_title="HUIZHEN")
    assert assoc.is_established
    assert isinstance(_acceptor(running).dul.socket, _WaitingSocket)
    assoc.abort()
    return _until(lambda: not running.listener.server.active_associations)  # type: ignore[union-attr]


async def test_a_waiting_reactor_sees_its_peer_abort_and_the_listener_serves_on(scp: Running) -> None:
    assert await asyncio.to_thread(_abort, scp.port, scp)
    assert await pynetdicom_store(scp.port, CT) == [0]


async def test_tls_association_is_served_by_a_waiting_reactor(store: Store, tmp_path: Path) -> None:
    ca = trustme.CA()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_tls)
    client_tls = ssl.create_default_context()
    ca.configure_trust(client_tls)
    settings = Settings(data_dir=tmp_path / "data", dicom_peers=PEERS)
    listener = DicomListener(settings, store, InProcessBus(), port=0, ssl_context=server_tls)
    await listener.start()
    try:
        running = Running(listener, settings, InProcessBus(), store)
        seen = await asyncio.to_thread(_session, listener.port, running, tls=client_tls)
    finally:
        await listener.stop()
    assert seen["waiting_socket"] and seen["echo"] == 0 and seen["stores"] == [0, 0, 0, 0] and seen["released"]


def test_pynetdicom_per_pdu_log_handlers_are_off_unless_its_logger_is_at_info(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    logger = logging.getLogger("pynetdicom")
    level = logger.level
    try:
        monkeypatch.setattr(_config, "LOG_HANDLER_LEVEL", "standard")
        logger.setLevel(logging.WARNING)
        quiet_pynetdicom_logs()
        assert _config.LOG_HANDLER_LEVEL == "none"

        _config.LOG_HANDLER_LEVEL = "standard"
        logger.setLevel(logging.DEBUG)  # someone troubleshooting wants every PDU in the log
        quiet_pynetdicom_logs()
        assert _config.LOG_HANDLER_LEVEL == "standard"
    finally:
        logger.setLevel(level)


def test_an_associations_copy_of_the_contexts_is_cheap_plain_and_its_own() -> None:
    ae = AE()
    for cx in AllStoragePresentationContexts[:20]:
        ae.add_supported_context(str(cx.abstract_syntax), ALL_TRANSFER_SYNTAXES, scu_role=False, scp_role=True)
    server_contexts = cheaply_copied(ae.supported_contexts)
    copies = deepcopy(server_contexts)  # what pynetdicom does for each association
    assert [vars(c) for c in copies] == [vars(c) for c in deepcopy(ae.supported_contexts)]
    assert all(type(c) is PresentationContext for c in copies)
    copies[0].result = 0
    copies[0].add_transfer_syntax("1.2.3.4")
    assert server_contexts[0].result is None and "1.2.3.4" not in server_contexts[0].transfer_syntax
