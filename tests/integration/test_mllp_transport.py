"""The MLLP server and client over real loopback sockets (plain, TLS and mutual TLS).

The handler is a test double of the FrameHandler protocol (``mllp_doubles``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trustme

from huizhen.adapters.mllp import MllpServer, RejectReason, server_ssl_context
from huizhen.adapters.mllp_client import MllpClient, client_ssl_context
from huizhen.adapters.mllp_framing import AckTimeout, MllpConnectionError, MllpError, encode
from huizhen.integration.errors import ConfigurationError
from tests.integration.mllp_doubles import (
    HOST,
    MSG,
    EchoHandler,
    RawPeer,
    eventually,
    expected_ack,
    message,
    serving,
)


@pytest.fixture
def handler() -> EchoHandler:
    return EchoHandler()


async def test_one_message_one_ack(handler: EchoHandler) -> None:
    async with serving(handler) as server, MllpClient(HOST, server.port) as client:
        assert await client.send(MSG) == expected_ack(MSG)
    await eventually(lambda: server.counters.connections_open == 0)
    peer = handler.peers[0]
    assert (peer.host, peer.tls, peer.cert_subject) == (HOST, False, None)
    assert server.counters.frames_received == server.counters.acks_sent == 1
    assert server.counters.connections_accepted == 1


async def test_frame_split_at_every_offset(handler: EchoHandler) -> None:
    stream = encode(MSG)
    async with serving(handler) as server:
        peer = await RawPeer.connect(server.port)
        for cut in range(len(stream) + 1):
            await peer.send(stream[:cut])
            await asyncio.sleep(0)
            await peer.send(stream[cut:])
        assert await peer.read_answers(len(stream) + 1) == [expected_ack(MSG)] * (len(stream) + 1)
        await peer.close()


async def test_frame_sent_one_byte_per_write(handler: EchoHandler) -> None:
    async with serving(handler) as server:
        peer = await RawPeer.connect(server.port)
        for byte in encode(MSG):
            await peer.send(bytes([byte]))
        assert await peer.read_answers(1) == [expected_ack(MSG)]
        await peer.close()


async def test_many_frames_in_one_write_are_answered_in_order(handler: EchoHandler) -> None:
    payloads = [message(i, b"x" * i) for i in range(200)]
    async with serving(handler) as server:
        peer = await RawPeer.connect(server.port)
        await peer.send(b"".join(encode(p) for p in payloads))
        assert await peer.read_answers(200) == [expected_ack(p) for p in payloads]
        await peer.close()


async def test_garbage_before_start_block_is_skipped(handler: EchoHandler) -> None:
    async with serving(handler) as server:
        peer = await RawPeer.connect(server.port)
        await peer.send(b"GET / HTTP/1.1\r\n\r\n" + encode(MSG))
        assert await peer.read_answers(1) == [expected_ack(MSG)]
        await peer.close()
        assert server.counters.garbage == 1


async def test_missing_end_block_then_disconnect_passes_nothing_on(
    handler: EchoHandler, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "huizhen.adapters.mllp")
    async with serving(handler) as server:
        peer = await RawPeer.connect(server.port)
        await peer.send(encode(MSG) + b"\x0b" + MSG[:50])
        assert await peer.read_answers(1) == [expected_ack(MSG)]
        await peer.close()
        await eventually(lambda: server.counters.connections_open == 0)
        assert server.counters.truncated == 1
        assert len(handler.frames) == 1 and handler.rejected == []
    assert any("mid-frame" in r.getMessage() for r in caplog.records)


async def test_oversize_frame_is_rejected_and_the_connection_keeps_working(
    handler: EchoHandler,
) -> None:
    big = MSG + b"OBX|1|TX|||" + b"z" * 5000 + b"\r"
    async with serving(handler, max_frame_bytes=1024) as server:
        peer = await RawPeer.connect(server.port)
        await peer.send(encode(big) + encode(MSG))
        assert await peer.read_answers(2) == [b"MSA|AR|oversize|1024", expected_ack(MSG)]
        await peer.close()
        assert server.counters.oversize == 1
    reason, head = handler.rejected[0]
    assert reason is RejectReason.OVERSIZE and head == big[:1024]  # holds the MSH for an AR


async def test_start_block_before_end_block_rejects_the_cut_frame(handler: EchoHandler) -> None:
    async with serving(handler) as server:
        peer = await RawPeer.connect(server.port)
        await peer.send(b"\x0b" + MSG[:60] + encode(MSG))
        assert await peer.read_answers(2) == [b"MSA|AR|truncated|60", expected_ack(MSG)]
        await peer.close()
    assert handler.rejected == [(RejectReason.TRUNCATED, MSG[:60])]


async def test_idle_connection_is_closed(handler: EchoHandler) -> None:
    async with serving(handler, idle_timeout_s=0.2) as server:
        peer = await RawPeer.connect(server.port)
        assert await peer.closed_by_server()
        await peer.close()
        assert server.counters.timeouts == 1


async def test_client_stalled_mid_frame_is_closed(handler: EchoHandler) -> None:
    async with serving(handler, stall_timeout_s=0.2) as server:
        peer = await RawPeer.connect(server.port)
        await peer.send(encode(MSG) + b"\x0b" + MSG[:20])
        assert await peer.closed_by_server()
        assert peer.answers == [expected_ack(MSG)]
        await peer.close()
        assert server.counters.timeouts == 1 and len(handler.frames) == 1


async def test_client_not_reading_acks_does_not_block_another(handler: EchoHandler) -> None:
    async with serving(handler, write_timeout_s=None) as server:
        slow = await RawPeer.connect(server.port)
        # Every answer is 1 MiB: the server blocks in drain() after a few of them.
        await slow.send(b"".join(encode(message(i, b"SLOW")) for i in range(100)))
        await eventually(lambda: len(handler.frames) > 0)
        slow_id = handler.frames[0][0]
        async with MllpClient(HOST, server.port, ack_timeout_s=10) as client:
            for i in range(20):
                assert await client.send(message(i)) == expected_ack(message(i))
        assert handler.handled_on(slow_id) < 100  # not read further while its ACKs pile up
        await eventually(lambda: server.counters.connections_open == 1)  # still held, not dropped
        slow.writer.transport.abort()
        await slow.close()


async def test_client_not_reading_acks_is_closed_after_write_timeout(
    handler: EchoHandler,
) -> None:
    async with serving(handler, write_timeout_s=0.2) as server:
        slow = await RawPeer.connect(server.port)
        await slow.send(b"".join(encode(message(i, b"SLOW")) for i in range(100)))
        await eventually(lambda: server.counters.timeouts == 1)
        await eventually(lambda: server.counters.connections_open == 0)
        assert len(handler.frames) < 100
        slow.writer.transport.abort()
        await slow.close()


async def test_50_connections_20_frames_each_all_answered_in_order(handler: EchoHandler) -> None:
    async def sender(n: int) -> list[bytes]:
        payloads = [message(n * 100 + i, b"conn%d" % n) for i in range(20)]
        async with MllpClient(HOST, server.port, ack_timeout_s=30) as client:
            if n % 2:
                answers = [await client.send(p) for p in payloads]
            else:
                answers = [a async for a in client.stream(payloads, window=5)]
        assert answers == [expected_ack(p) for p in payloads]
        return answers

    async with serving(handler) as server:
        results = await asyncio.gather(*(sender(n) for n in range(50)))
        await eventually(lambda: server.counters.connections_open == 0)
    assert [len(r) for r in results] == [20] * 50
    assert server.counters.frames_received == 1000 and server.counters.connections_accepted == 50
    by_connection: dict[str, list[bytes]] = {}
    for cid, payload in handler.frames:
        by_connection.setdefault(cid, []).append(payload)
    for payloads in by_connection.values():  # each connection's frames reached the handler in order
        assert payloads == sorted(payloads)


async def test_handler_failure_closes_only_that_connection(
    handler: EchoHandler, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "huizhen.adapters.mllp")
    async with serving(handler) as server:
        async with MllpClient(HOST, server.port) as bystander:
            assert await bystander.send(message(1)) == expected_ack(message(1))
            async with MllpClient(HOST, server.port) as victim:
                with pytest.raises(MllpConnectionError):
                    await victim.send(message(2, b"BOOM"))
            assert await bystander.send(message(3)) == expected_ack(message(3))
        async with MllpClient(HOST, server.port) as newcomer:
            assert await newcomer.send(message(4)) == expected_ack(message(4))
        assert server.counters.handler_errors == 1
    failure = next(r for r in caplog.records if r.levelno == logging.ERROR)
    assert failure.connection_id.startswith("mllp-")  # type: ignore[attr-defined]
    assert failure.peer.startswith(HOST)  # type: ignore[attr-defined]
    for record in caplog.records:  # no message content in the log
        assert "ZHANG" not in record.getMessage() and "123456" not in record.getMessage()


async def test_connections_over_the_limit_are_closed(handler: EchoHandler) -> None:
    async with serving(handler, max_connections=2) as server:
        first, second = MllpClient(HOST, server.port), MllpClient(HOST, server.port)
        async with first, second:
            assert await first.send(MSG) == await second.send(MSG) == expected_ack(MSG)
            third = await RawPeer.connect(server.port)
            assert await third.closed_by_server()
            await third.close()
            assert await first.send(MSG) == expected_ack(MSG)
        assert server.counters.connections_refused == 1


async def test_stop_lets_the_frame_in_flight_finish(handler: EchoHandler) -> None:
    server = MllpServer(handler, HOST, 0)
    await server.start()
    client = MllpClient(HOST, server.port)
    idle = await RawPeer.connect(server.port)
    sending = asyncio.create_task(client.send(message(1, b"WAIT")))
    await handler.entered.wait()
    stopping = asyncio.create_task(server.stop(grace_s=10))
    await eventually(lambda: server.counters.connections_open == 1)  # the idle one is gone
    handler.release.set()
    assert await sending == expected_ack(message(1, b"WAIT"))
    await stopping
    assert await idle.closed_by_server()
    await idle.close()
    await client.close()
    with pytest.raises(MllpConnectionError):
        await MllpClient(HOST, server.port).connect()


async def test_client_ack_timeout_then_reconnects(handler: EchoHandler) -> None:
    async with serving(handler) as server:
        client = MllpClient(HOST, server.port, ack_timeout_s=0.2)
        with pytest.raises(AckTimeout):
            await client.send(message(1, b"SILENT"))
        assert not client.connected
        assert await client.send(MSG) == expected_ack(MSG)
        await client.close()
        await eventually(lambda: server.counters.connections_open == 0)
        assert server.counters.connections_accepted == 2


async def test_client_reconnects_after_the_server_closed_an_idle_connection(
    handler: EchoHandler,
) -> None:
    async with serving(handler, idle_timeout_s=0.2) as server:
        async with MllpClient(HOST, server.port) as client:
            assert await client.send(message(1)) == expected_ack(message(1))
            await eventually(lambda: server.counters.timeouts == 1)
            await eventually(lambda: not client.connected)
            assert await client.send(message(2)) == expected_ack(message(2))
        assert server.counters.connections_accepted == 2


async def test_client_stream_pipelines_in_order(handler: EchoHandler) -> None:
    payloads = [message(i) for i in range(100)]

    async def produce() -> AsyncIterator[bytes]:
        for p in payloads:
            yield p

    async with serving(handler) as server, MllpClient(HOST, server.port) as client:
        answers = [a async for a in client.stream(produce(), window=16)]
        assert answers == [expected_ack(p) for p in payloads]
        assert await client.send(MSG) == expected_ack(MSG)  # the connection is reused
    assert server.counters.connections_accepted == 1


async def test_client_stream_stopped_early_leaves_the_client_usable(handler: EchoHandler) -> None:
    async with serving(handler) as server, MllpClient(HOST, server.port) as client:
        answers = client.stream([message(i) for i in range(50)], window=4)
        async with contextlib.aclosing(answers):
            async for answer in answers:
                assert answer == expected_ack(message(0))
                break
        assert await client.send(MSG) == expected_ack(MSG)  # no late answer taken for this one


async def test_client_connect_refused() -> None:
    server = MllpServer(EchoHandler(), HOST, 0)
    await server.start()
    port = server.port
    await server.stop()
    with pytest.raises(MllpConnectionError):
        await MllpClient(HOST, port, connect_timeout_s=2).send(MSG)


# --- TLS ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    ca = trustme.CA()
    folder = tmp_path_factory.mktemp("pki")
    server_cert = ca.issue_cert(HOST, "localhost")
    client_cert = ca.issue_cert(
        "his.town.example", common_name="his.town.example", organization_name="Town Clinic"
    )
    paths = {name: folder / f"{name}.pem" for name in
             ("ca", "server_cert", "server_key", "client_cert", "client_key")}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    server_cert.cert_chain_pems[0].write_to_path(str(paths["server_cert"]))
    server_cert.private_key_pem.write_to_path(str(paths["server_key"]))
    client_cert.cert_chain_pems[0].write_to_path(str(paths["client_cert"]))
    client_cert.private_key_pem.write_to_path(str(paths["client_key"]))
    return paths


def tls_server_context(pki: dict[str, Path], mutual: bool) -> ssl.SSLContext:
    return server_ssl_context(
        str(pki["server_cert"]), str(pki["server_key"]),
        client_ca_file=str(pki["ca"]) if mutual else None, require_client_cert=mutual,
    )


async def test_tls(handler: EchoHandler, pki: dict[str, Path]) -> None:
    context = client_ssl_context(ca_file=str(pki["ca"]))
    async with serving(handler, ssl_context=tls_server_context(pki, mutual=False)) as server:
        async with MllpClient(HOST, server.port, ssl_context=context) as client:
            for i in range(5):
                assert await client.send(message(i)) == expected_ack(message(i))
    peer = handler.peers[0]
    assert peer.tls and peer.cert_subject is None and peer.cert_fingerprint is None


async def test_mutual_tls_exposes_the_client_certificate(
    handler: EchoHandler, pki: dict[str, Path]
) -> None:
    context = client_ssl_context(
        ca_file=str(pki["ca"]), cert_file=str(pki["client_cert"]), key_file=str(pki["client_key"])
    )
    async with serving(handler, ssl_context=tls_server_context(pki, mutual=True)) as server:
        async with MllpClient(HOST, server.port, ssl_context=context) as client:
            assert await client.send(MSG) == expected_ack(MSG)
    peer = handler.peers[0]
    assert peer.tls and peer.cert_common_name == "his.town.example"
    assert peer.cert_subject is not None and "CN=his.town.example" in peer.cert_subject
    assert "O=Town Clinic" in peer.cert_subject
    assert peer.cert_fingerprint is not None and len(peer.cert_fingerprint) == 64


async def test_mutual_tls_refuses_a_client_without_certificate(
    handler: EchoHandler, pki: dict[str, Path]
) -> None:
    context = client_ssl_context(ca_file=str(pki["ca"]))
    async with serving(handler, ssl_context=tls_server_context(pki, mutual=True)) as server:
        client = MllpClient(HOST, server.port, ssl_context=context, ack_timeout_s=5)
        with pytest.raises(MllpError):
            await client.send(MSG)
        await client.close()
        async with MllpClient(HOST, server.port, ssl_context=client_ssl_context(
            ca_file=str(pki["ca"]), cert_file=str(pki["client_cert"]),
            key_file=str(pki["client_key"]),
        )) as good:
            assert await good.send(MSG) == expected_ack(MSG)
    assert len(handler.frames) == 1


def test_tls_configuration_errors_stop_start_up(pki: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError):
        server_ssl_context(str(pki["server_cert"]), str(pki["server_key"]),
                           require_client_cert=True)
    with pytest.raises(ConfigurationError):
        server_ssl_context(str(tmp_path / "missing.pem"), str(pki["server_key"]))
    with pytest.raises(ConfigurationError):
        client_ssl_context(ca_file=str(tmp_path / "missing.pem"))


async def test_garbage_then_disconnect_and_double_start(handler: EchoHandler) -> None:
    async with serving(handler) as server:
        with pytest.raises(RuntimeError):
            await server.start()
        peer = await RawPeer.connect(server.port)
        await peer.send(b"\x16\x03\x01 not MLLP at all")  # e.g. a TLS hello on the plain port
        await peer.close()
        await eventually(lambda: server.counters.connections_open == 0)
        assert server.counters.garbage == 1 and handler.frames == []
