"""A real WebRTC peer (aiortc) that signals through Huizhen's /signaling."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from aiortc import RTCConfiguration, RTCIceCandidate, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, VideoStreamTrack
from aiortc.sdp import candidate_from_sdp

from tests.signaling_support import SignalingClient


def ice_candidate(c: dict[str, Any]) -> RTCIceCandidate:
    candidate = candidate_from_sdp(str(c["candidate"]).removeprefix("candidate:"))
    candidate.sdpMid = c.get("sdpMid")
    candidate.sdpMLineIndex = c.get("sdpMLineIndex")
    return candidate


class RtcPeer:
    """Sends a test video track, counts the frames it receives, keeps data-channel messages.

    ``iceServers=[]``: host candidates only (this machine's own addresses).
    """

    def __init__(self, client: SignalingClient) -> None:
        self.client = client
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pc.addTrack(VideoStreamTrack())
        self.frames = 0
        self.frame_size: tuple[int, int] | None = None
        self.messages: asyncio.Queue[str] = asyncio.Queue()
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()  # what is not signaling, once serving
        self.channel: Any = None
        self.channel_open = asyncio.Event()
        self._frame_waiters: list[tuple[int, asyncio.Event]] = []
        self.connected = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.pc.on("track", self._on_track)
        self.pc.on("datachannel", self._on_channel)
        self.pc.on("connectionstatechange", self._on_state)

    def _on_state(self) -> None:
        if self.pc.connectionState == "connected":
            self.connected.set()

    def _on_track(self, track: Any) -> None:
        if track.kind == "video":
            self._tasks.append(asyncio.create_task(self._count(track)))

    async def _count(self, track: Any) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                self.frames += 1
                self.frame_size = (frame.width, frame.height)
                for n, event in self._frame_waiters:
                    if self.frames >= n:
                        event.set()

    def _on_channel(self, channel: Any) -> None:
        self.channel = channel
        channel.on("message", self.messages.put_nowait)
        if channel.readyState == "open":
            self.channel_open.set()
        channel.on("open", self.channel_open.set)

    async def offer_to(self, peer_id: str) -> None:
        self._on_channel(self.pc.createDataChannel("chat"))
        await self.pc.setLocalDescription(await self.pc.createOffer())
        await self.client.send(type="offer", to=peer_id, sdp=self.pc.localDescription.sdp)

    def serve(self) -> None:
        """Answer offers, take answers and candidates from the socket in the background."""
        self._tasks.append(asyncio.create_task(self._signals()))

    async def _signals(self) -> None:
        pending = list(self.client.backlog)
        self.client.backlog.clear()  # from now on, other messages go to ``inbox``
        while True:
            m = pending.pop(0) if pending else json.loads(await self.client.ws.recv())
            if m["type"] == "offer":
                await self.pc.setRemoteDescription(RTCSessionDescription(m["sdp"], "offer"))
                await self.pc.setLocalDescription(await self.pc.createAnswer())
                await self.client.send(type="answer", to=m["from"], sdp=self.pc.localDescription.sdp)
            elif m["type"] == "answer":
                await self.pc.setRemoteDescription(RTCSessionDescription(m["sdp"], "answer"))
            elif m["type"] == "candidate" and m["candidate"] and m["candidate"].get("candidate"):
                await self.pc.addIceCandidate(ice_candidate(m["candidate"]))
            else:
                self.inbox.put_nowait(m)

    async def expect(self, kind: str) -> dict[str, Any]:
        """The next non-signaling message of type ``kind`` (while serving)."""
        while True:
            m = await self.inbox.get()
            if m["type"] == kind:
                return m

    async def wait_frames(self, n: int) -> None:
        event = asyncio.Event()
        self._frame_waiters.append((n, event))
        if self.frames >= n:
            event.set()
        await event.wait()

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.pc.close()
        await self.client.close()
