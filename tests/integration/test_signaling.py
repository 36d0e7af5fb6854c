"""/signaling over a real socket against the real server, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from huizhen.integration.model import Actor, ConsultationStatus
from huizhen.rbac.policy import Rule
from tests.helpers import RunningServer, running_server
from tests.signaling_support import FACILITY, SignalingClient, assigned_consultation, seed_directory


@pytest.fixture
async def server(tmp_path: Path, db_url: str) -> AsyncIterator[RunningServer]:
    async with running_server(
        tmp_path / "data", db_url, turn_urls="turn:turn.example.org:3478", turn_secret="test-only-secret",
    ) as srv:
        await seed_directory(srv.services)
        yield srv


def tokens(srv: RunningServer) -> dict[str, str]:
    return {
        "doctor": srv.token("doc1", "primary_doctor", facility=FACILITY),
        "expert": srv.token("exp1", "expert"),
        "patient": srv.token("pat1", "patient"),
        "outsider": srv.token("doc2", "primary_doctor", facility="TWN002"),
        "colleague": srv.token("doc9", "primary_doctor", facility=FACILITY),
        "coordinator": srv.token("coord", "coordinator", facility="*"),
        "admin": srv.token("ops1", "integration_admin", facility="*"),
    }


async def timeline(srv: RunningServer, cid: str) -> list[str]:
    async with srv.services.store.read() as repo:
        c = await repo.consultations.get(cid)
    assert c is not None
    return [e.type for e in c.timeline]


async def test_call_room_presence_relay_and_timeline(server: RunningServer) -> None:
    cid = await assigned_consultation(server.services)
    t = tokens(server)
    doctor = await SignalingClient.connect(server.base_url, t["doctor"])
    joined = await doctor.join(cid)
    assert joined["peers"] == [] and joined["room"] == cid
    (turn,) = joined["iceServers"]
    expiry, _, peer = turn["username"].partition(":")
    assert peer == joined["peer"] and int(expiry) > 0 and turn["credential"]

    expert = await SignalingClient.connect(server.base_url, t["expert"], first_message=True)
    ejoined = await expert.join(cid)
    assert [p["id"] for p in ejoined["peers"]] == [joined["peer"]]
    assert (await doctor.expect("peer-joined"))["peer"]["id"] == ejoined["peer"]

    await expert.send(type="offer", to=joined["peer"], sdp="v=0 会诊")
    offer = await doctor.expect("offer")
    assert offer == {"type": "offer", "from": ejoined["peer"], "sdp": "v=0 会诊"}
    await doctor.send(type="answer", to=ejoined["peer"], sdp="v=0 answer")
    assert (await expert.expect("answer"))["from"] == joined["peer"]
    cand = {"candidate": "candidate:1 1 udp 2122260223 192.0.2.2 50000 typ host", "sdpMid": "0"}
    await doctor.send(type="candidate", to=ejoined["peer"], candidate=cand)
    assert (await expert.expect("candidate"))["candidate"] == cand

    await expert.send(type="stats", bitrateKbps=600, lossPct=20, rttMs=90)
    rec = await expert.expect("bitrate")
    assert rec["width"] < 640 and rec["bitrateKbps"] < 600

    # the expert's join started the consultation; joins and leaves are on the timeline
    async with server.services.store.read() as repo:
        c = await repo.consultations.get(cid)
    assert c is not None and c.status is ConsultationStatus.IN_PROGRESS

    await expert.send(type="leave")
    assert (await doctor.expect("peer-left"))["peer"] == ejoined["peer"]
    patient = await SignalingClient.connect(server.base_url, t["patient"])
    pj = await patient.join(cid)
    assert [p["id"] for p in pj["peers"]] == [joined["peer"]]
    await patient.close()  # a dropped socket: the others get peer-left
    assert (await doctor.expect("peer-left"))["peer"] == pj["peer"]
    await asyncio.sleep(0.2)
    kinds = await timeline(server, cid)
    assert kinds[-6:] == ["CALL_JOINED", "STARTED", "CALL_JOINED", "CALL_LEFT", "CALL_JOINED", "CALL_LEFT"]
    await doctor.close()
    await expert.close()


async def test_room_closes_when_the_consultation_completes(server: RunningServer) -> None:
    cid = await assigned_consultation(server.services)
    t = tokens(server)
    coordinator = await SignalingClient.connect(server.base_url, t["coordinator"])
    await coordinator.join(cid)  # a role the policy allows beside the participants
    expert = await SignalingClient.connect(server.base_url, t["expert"])
    await expert.join(cid)
    await server.services.consultations.complete(cid, Actor("exp1", ("expert",)), "稳定型心绞痛", "阿司匹林")
    for client in (coordinator, expert):
        assert (await client.expect("room-closed"))["status"] == "COMPLETED"
        assert await client.closed() == 4410
    late = await SignalingClient.connect(server.base_url, t["doctor"])
    await late.send(type="join", room=cid)
    assert await late.error() == "ROOM_CLOSED"
    await late.send(type="stats", bitrateKbps=300, lossPct=0, rttMs=50)
    assert (await late.expect("bitrate"))["type"] == "bitrate"  # the socket stays up
    await late.close()


async def test_authentication_is_required(server: RunningServer) -> None:
    for token, first in ((None, False), ("not-a-jwt", False), ("not-a-jwt", True)):
        client = await SignalingClient.connect(server.base_url, token, first_message=first)
        if token is None:
            await client.send(type="join", room="x")
        assert await client.error() == "UNAUTHENTICATED"
        assert await client.closed() == 4401


@pytest.mark.parametrize(("who", "code"), [("outsider", "NOT_FOUND"), ("colleague", "FORBIDDEN")])
async def test_non_participants_may_not_join(server: RunningServer, who: str, code: str) -> None:
    cid = await assigned_consultation(server.services)
    client = await SignalingClient.connect(server.base_url, tokens(server)[who])
    await client.send(type="join", room=cid)
    assert await client.error() == code
    await client.send(type="join", room="no-such-consultation")
    assert await client.error() == "NOT_FOUND"
    await client.close()


async def test_the_policy_decides_who_may_join_or_observe(server: RunningServer) -> None:
    cid = await assigned_consultation(server.services)
    admin = await SignalingClient.connect(server.base_url, tokens(server)["admin"])
    await admin.send(type="join", room=cid)  # no `call join` for integration admins, whatever the room
    assert await admin.error() == "FORBIDDEN"
    await admin.close()
    officer = Actor("sec1", ("security_officer",), None)
    observe = Rule("p", "coordinator", "*", "call", "observe")
    assert await server.services.policies.remove(observe, officer)
    try:
        coordinator = await SignalingClient.connect(server.base_url, tokens(server)["coordinator"])
        await coordinator.send(type="join", room=cid)
        assert await coordinator.error() == "FORBIDDEN"
        await coordinator.close()
    finally:
        await server.services.policies.add(observe, officer)


async def test_relay_stays_inside_the_room(server: RunningServer) -> None:
    t = tokens(server)
    room_a, room_b = await assigned_consultation(server.services), await assigned_consultation(server.services)
    a = await SignalingClient.connect(server.base_url, t["doctor"])
    b = await SignalingClient.connect(server.base_url, t["expert"])
    a_peer = (await a.join(room_a))["peer"]
    await b.send(type="offer", to=a_peer, sdp="v=0")
    assert await b.error() == "NOT_IN_ROOM"
    b_peer = (await b.join(room_b))["peer"]
    await b.send(type="offer", to=a_peer, sdp="v=0")  # a peer of another room
    assert await b.error() == "UNKNOWN_PEER"
    await b.send(type="candidate", to=b_peer, candidate=None)  # itself
    assert await b.error() == "UNKNOWN_PEER"
    await b.send(type="join", room=room_a)
    assert await b.error() == "ALREADY_JOINED"
    assert not [m for m in a.backlog if m["type"] == "offer"]
    await a.close()
    await b.close()


async def test_bad_input_gets_codes_and_the_socket_stays_up(server: RunningServer) -> None:
    client = await SignalingClient.connect(server.base_url, tokens(server)["doctor"])
    for raw, code in (
        ("{oops", "BAD_JSON"),
        ('{"type":"teleport"}', "UNKNOWN_TYPE"),
        ('{"type":"offer"}', "BAD_INPUT"),
        ('"just a string"', "BAD_INPUT"),
        ('{"type":"leave"}', "NOT_IN_ROOM"),
    ):
        await client.ws.send(raw)
        assert await client.error() == code
    await client.ws.send(b"\x00binary")
    assert await client.error() == "BAD_INPUT"
    await client.send(type="stats", bitrateKbps=1500, lossPct=0, rttMs=20)
    assert await client.expect("bitrate")
    await client.close()


async def test_a_10_mb_message_closes_only_that_socket(server: RunningServer) -> None:
    t = tokens(server)
    big = await SignalingClient.connect(server.base_url, t["doctor"])
    other = await SignalingClient.connect(server.base_url, t["expert"])
    await big.ws.send(json.dumps({"type": "offer", "to": "x", "sdp": "a" * (10 * 1024 * 1024)}))
    assert await big.error() == "MESSAGE_TOO_LARGE"
    assert await big.closed() == 1009
    await other.send(type="stats", bitrateKbps=100, lossPct=0, rttMs=20)
    assert await other.expect("bitrate")
    await other.close()


async def test_1000_messages_a_second_are_limited(server: RunningServer) -> None:
    t = tokens(server)
    flood = await SignalingClient.connect(server.base_url, t["doctor"])
    other = await SignalingClient.connect(server.base_url, t["expert"])
    msg = json.dumps({"type": "stats", "bitrateKbps": 100, "lossPct": 0, "rttMs": 20})
    for _ in range(1000):
        await flood.ws.send(msg)
    assert await flood.error() == "RATE_LIMITED"
    assert await flood.closed() == 1008
    answered = [m for m in flood.backlog if m["type"] == "bitrate"]
    assert 0 < len(answered) < 1000
    await other.send(type="stats", bitrateKbps=100, lossPct=0, rttMs=20)
    assert await other.expect("bitrate")
    await other.close()


async def test_call_page_is_served(server: RunningServer) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=server.base_url) as http:
        page = await http.get("/call/any-consultation-id")
        script = await http.get("/call-assets/call.js")
    assert page.status_code == 200 and "会诊视频" in page.text and "any-consultation-id" not in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert script.status_code == 200 and "/signaling" in script.text


async def test_signaling_shows_in_channels_and_metrics(server: RunningServer) -> None:
    cid = await assigned_consultation(server.services)
    t = tokens(server)
    admin = server.client(server.token("ops1", "integration_admin", facility="*"))
    try:
        doctor = await SignalingClient.connect(server.base_url, t["doctor"])
        await doctor.join(cid)
        await doctor.send(type="offer", to="nobody", sdp="v=0")
        assert await doctor.error() == "UNKNOWN_PEER"
        channels = {c["name"]: c for c in (await admin.execute(
            "{ channels { name state received errors lastError lastMessageAt } }"))["channels"]}
        sig = channels["signaling"]
        assert sig["state"] == "listening" and sig["received"] == 2 and sig["errors"] == 1
        assert sig["lastError"].startswith("UNKNOWN_PEER") and sig["lastMessageAt"]
        auth = {"Authorization": f"Bearer {server.token('ops1', 'integration_admin', facility='*')}"}
        async with httpx.AsyncClient(base_url=server.base_url, headers=auth) as http:
            assert "huizhen_signaling_peers 1.0" in (await http.get("/metrics")).text
            await doctor.close()
            await asyncio.sleep(0.2)
            assert "huizhen_signaling_peers 0.0" in (await http.get("/metrics")).text
    finally:
        await admin.aclose()
