"""Real WebRTC peers (aiortc) meeting through /signaling: a consultation call and a network check."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.e2e.webrtc_support import RtcPeer
from tests.helpers import RunningServer, running_server
from tests.signaling_support import FACILITY, SignalingClient, assigned_consultation, seed_directory


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'huizhen.db'}"
    async with running_server(tmp_path / "data", url, netcheck_seconds=3.0, netcheck_timeout_seconds=30.0) as srv:
        await seed_directory(srv.services)
        yield srv


async def test_two_aiortc_peers_call_through_the_room(server: RunningServer) -> None:
    cid = await assigned_consultation(server.services)
    doctor = RtcPeer(await SignalingClient.connect(server.base_url, server.token("doc1", "primary_doctor",
                                                                                  facility=FACILITY)))
    expert = RtcPeer(await SignalingClient.connect(server.base_url, server.token("exp1", "expert")))
    doctor_id = (await doctor.client.join(cid))["peer"]
    joined = await expert.client.join(cid)
    assert [p["id"] for p in joined["peers"]] == [doctor_id]
    doctor.serve()
    expert.serve()
    await expert.offer_to(doctor_id)  # the newcomer calls the peers present
    try:
        async with asyncio.timeout(30):
            await asyncio.gather(doctor.connected.wait(), expert.connected.wait(), doctor.channel_open.wait())
        doctor.channel.send("血压 150/95，请会诊")
        assert await asyncio.wait_for(expert.messages.get(), 10) == "血压 150/95，请会诊"
        expert.channel.send("收到")
        assert await asyncio.wait_for(doctor.messages.get(), 10) == "收到"
        await asyncio.wait_for(asyncio.gather(doctor.wait_frames(10), expert.wait_frames(10)), 30)
        assert doctor.frame_size == expert.frame_size == (640, 480)
    finally:
        await doctor.close()
        await expert.close()


async def test_network_check_echoes_video_and_reports(server: RunningServer) -> None:
    cid = await assigned_consultation(server.services)
    token = server.token("doc1", "primary_doctor", facility=FACILITY)
    clinic = RtcPeer(await SignalingClient.connect(server.base_url, token))
    second = await SignalingClient.connect(server.base_url, token)
    try:
        await clinic.client.send(type="netcheck", room=cid)
        ready = await clinic.client.expect("netcheck-ready")
        await second.send(type="netcheck")
        assert await second.error() == "NETCHECK_BUSY"  # one check per user at a time
        clinic.serve()
        await clinic.offer_to(ready["peer"])
        await asyncio.wait_for(clinic.wait_frames(10), 30)  # its own video, echoed back by the server
        result = await asyncio.wait_for(clinic.expect("netcheck-result"), 30)
        assert result["framesEchoed"] > 0 and result["bitrateKbps"] > 0 and 0 <= result["lossPct"] <= 100
        assert {"width", "height", "fps", "bitrateKbps"} <= set(result["recommended"])
        async with server.services.store.read() as repo:
            c = await repo.consultations.get(cid)
        assert c is not None and c.timeline[-1].type == "NETWORK_CHECK" and "kbps" in (c.timeline[-1].detail or "")
        await second.send(type="netcheck")  # the slot is free again
        assert (await second.expect("netcheck-ready"))["peer"]
    finally:
        await clinic.close()
        await second.close()
