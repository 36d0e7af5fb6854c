"""``/signaling``: the WebRTC signaling WebSocket of a consultation's video call, and ``/call/{id}``.

One :class:`Session` per socket: authenticate (``?token=``, the
Authorization header, or a first ``auth`` message), then read, check and
dispatch every message — size, rate, shape (huizhen/adapters/signaling_protocol.py),
sender in a room, target in the same room. Rooms span instances through the
bus (huizhen/adapters/signaling_rooms.py); who may join is decided in one
place (huizhen/adapters/signaling_access.py). Every failure becomes an
``error`` message with a code here, and the socket stays up unless it abuses
size or rate limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket

from huizhen.adapters import bitrate
from huizhen.adapters.call_page import call_page, call_script
from huizhen.adapters.netcheck import NetChecks
from huizhen.adapters.signaling_access import OPEN, authorize_join
from huizhen.adapters.signaling_protocol import (
    Auth,
    Candidate,
    Close,
    Code,
    Join,
    Leave,
    NetCheck,
    Sdp,
    SignalingError,
    Stats,
    error,
    parse,
)
from huizhen.adapters.signaling_rooms import Closing, Peer, Rooms
from huizhen.adapters.turn import IceConfig, ice_servers, split_urls
from huizhen.integration.model import Consultation
from huizhen.integration.workflow import TimelineType
from huizhen.rbac.identity import AuthenticationError, Principal

if TYPE_CHECKING:
    from huizhen.app import Services

log = logging.getLogger(__name__)


class SignalingHub:
    """Built in the composition root; ``running()`` belongs in the app's lifespan."""

    def __init__(self, services: Services) -> None:
        s = services.settings
        self.services = services
        others = s.broker_url or s.http_workers > 1  # peers of this room may be on another process
        self.rooms = Rooms(services.bus, presence_wait_s=s.signaling_presence_wait_ms / 1000 if others else 0)
        self.ice = IceConfig(split_urls(s.ice_stun_urls), split_urls(s.turn_urls), s.turn_secret, s.turn_ttl_seconds)
        self.policy = bitrate.Policy(
            bitrate.parse_ladder(s.bitrate_ladder), start=s.bitrate_start_rung,
            loss_down_pct=s.bitrate_loss_down_pct, loss_severe_pct=s.bitrate_loss_severe_pct,
            rtt_down_ms=s.bitrate_rtt_down_ms, good_loss_pct=s.bitrate_good_loss_pct,
            good_rtt_ms=s.bitrate_good_rtt_ms, up_after=s.bitrate_up_after,
        )
        self.channel = services.channels["signaling"]  # what `channels` and the dashboard show
        self.netchecks = NetChecks(
            self.policy, seconds=s.netcheck_seconds, timeout_s=s.netcheck_timeout_seconds,
            max_concurrent=s.netcheck_max_concurrent,
        )

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        async with self.rooms.running():
            yield

    def routes(self) -> list[BaseRoute]:
        return [
            WebSocketRoute("/signaling", self.endpoint),
            Route("/call/{consultation_id}", call_page),
            Route("/call-assets/call.js", call_script),
        ]

    async def endpoint(self, ws: WebSocket) -> None:
        await Session(self, ws).run()


class _Bucket:
    """Token bucket: ``rate`` messages a second, bursts up to ``burst``."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, float(burst)
        self.tokens, self.at = float(burst), time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class Session:
    def __init__(self, hub: SignalingHub, ws: WebSocket) -> None:
        self.hub = hub
        self.ws = ws
        settings = hub.services.settings
        self.max_bytes = settings.signaling_max_message_bytes
        self.bucket = _Bucket(settings.signaling_messages_per_second, settings.signaling_burst)
        self.strikes = 0  # messages refused for rate since the last accepted one
        self.principal: Principal | None = None
        self.peer: Peer | None = None
        self.bitrate_state = hub.policy.initial()
        self.check: Any = None  # the running network check's EchoPeer
        self.check_task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        await self.ws.accept()
        self.principal = await self._authenticate()
        if self.principal is None:
            return
        self.peer = self.hub.rooms.new_peer(self.principal.sub)
        writer = asyncio.create_task(self._write(self.peer))
        try:
            await self._read(self.peer)
        finally:
            await self._cleanup(self.peer)
            self.peer.close(Close.NORMAL, "bye")
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer, timeout=2)
            writer.cancel()

    async def _authenticate(self) -> Principal | None:
        tokens = self.hub.services.tokens
        token = self.ws.query_params.get("token")
        header = self.ws.headers.get("authorization")
        try:
            if token or header:
                return tokens.verify_header(header or f"Bearer {token}")
            text = await self._first_text()
            msg = parse(text) if text is not None else None
            if not isinstance(msg, Auth):
                raise AuthenticationError("send the token: ?token=, or a first message {\"type\":\"auth\"}")
            return tokens.verify(msg.token)
        except (AuthenticationError, SignalingError) as exc:
            await self.ws.send_json(error(Code.UNAUTHENTICATED, str(exc)))
            await self.ws.close(Close.UNAUTHORIZED, "Unauthorized")
            return None

    async def _first_text(self) -> str | None:
        timeout = self.hub.services.settings.signaling_auth_timeout_seconds
        try:
            msg = await asyncio.wait_for(self.ws.receive(), timeout)
        except TimeoutError:
            return None
        text = msg.get("text")
        if not isinstance(text, str) or len(text) > self.max_bytes:
            return None
        return text

    async def _write(self, peer: Peer) -> None:
        while True:
            item = await peer.outbox.get()
            if isinstance(item, Closing):
                with contextlib.suppress(Exception):
                    await self.ws.close(item.code, item.reason)
                return
            await self.ws.send_text(item)

    async def _read(self, peer: Peer) -> None:
        while True:
            msg = await self.ws.receive()
            if msg["type"] == "websocket.disconnect":
                return
            text, data = msg.get("text"), msg.get("bytes")
            size = len(data) if text is None and data is not None else len((text or "").encode())
            if size > self.max_bytes:
                peer.send(error(Code.MESSAGE_TOO_LARGE, f"a message may have at most {self.max_bytes} bytes"))
                peer.close(Close.TOO_BIG, "message too big")
                return
            if not self.bucket.take():
                self.strikes += 1
                if self.strikes == 1:
                    peer.send(error(Code.RATE_LIMITED, "too many messages; this one was dropped"))
                if self.strikes >= self.bucket.burst:
                    peer.close(Close.POLICY, "rate limit exceeded")
                    return
                continue
            self.strikes = 0
            channel = self.hub.channel
            channel.received += 1
            channel.last_activity_at = datetime.now(UTC)
            try:
                if text is None:
                    raise SignalingError(Code.BAD_INPUT, "binary frames are not part of the protocol")
                await self._dispatch(peer, parse(text))
            except SignalingError as exc:
                channel.errors += 1
                channel.last_error = f"{exc.code}: {exc}"
                peer.send(exc.as_message())
            except Exception:  # a bug must not end the session; the client gets a code, the log the trace
                log.exception("signaling: message handling failed")
                peer.send(error(Code.INTERNAL, "internal error"))

    async def _dispatch(self, peer: Peer, msg: Any) -> None:
        match msg:
            case Join():
                await self._join(peer, msg)
            case Sdp() | Candidate():
                await self._relay(peer, msg)
            case Leave():
                if peer.room is None:
                    raise SignalingError(Code.NOT_IN_ROOM, "not in a room")
                await self._leave(peer)
            case Stats():
                self.bitrate_state, rung = bitrate.recommend(
                    self.hub.policy, self.bitrate_state, bitrate.Stats(msg.bitrateKbps, msg.lossPct, msg.rttMs)
                )
                peer.send({"type": "bitrate", **rung.as_message()})
            case NetCheck():
                await self._start_check(peer, msg)
            case Auth():
                raise SignalingError(Code.BAD_INPUT, "already authenticated")

    async def _join(self, peer: Peer, msg: Join) -> None:
        if peer.room is not None:
            raise SignalingError(Code.ALREADY_JOINED, f"already in room {peer.room}; leave it first")
        if self.check is not None:
            raise SignalingError(Code.BAD_INPUT, "a network check is running")
        assert self.principal is not None
        admission = await authorize_join(self.hub.services, self.principal, msg.room)
        await self._note(admission.consultation.id, TimelineType.CALL_JOINED, admission.part,
                         start=admission.starts_call)
        servers = ice_servers(self.hub.ice, peer.id, time.time())
        await self.hub.rooms.enter(peer, msg.room, lambda present: {
            "type": "joined", "room": msg.room, "peer": peer.id, "peers": present, "iceServers": servers,
        })
        self.hub.services.metrics.signaling_peers.inc()

    async def _leave(self, peer: Peer) -> None:
        room = peer.room
        await self.hub.rooms.exit(peer)
        if room is not None:
            self.hub.services.metrics.signaling_peers.dec()
            await self._note(room, TimelineType.CALL_LEFT, None)

    async def _relay(self, peer: Peer, msg: Sdp | Candidate) -> None:
        if self.check is not None and msg.to == self.check.id:
            await self._to_check(peer, msg)
            return
        if peer.room is None:
            raise SignalingError(Code.NOT_IN_ROOM, "join a room before sending offers, answers or candidates")
        body: dict[str, Any] = (
            {"sdp": msg.sdp} if isinstance(msg, Sdp) else {"candidate": msg.candidate}
        )
        if msg.to == peer.id or not await self.hub.rooms.relay(
            peer.room, msg.to, {"type": msg.type, "from": peer.id, **body}
        ):
            raise SignalingError(Code.UNKNOWN_PEER, f"no peer {msg.to!r} in this room")

    async def _note(self, cid: str, kind: TimelineType, part: str | None, *, start: bool = False) -> None:
        assert self.principal is not None and self.peer is not None
        detail = f"{part} peer {self.peer.id}" if part else f"peer {self.peer.id}"
        await self.hub.services.consultations.note(
            cid, self.principal.actor("signaling"), kind.value, detail, start=start
        )

    async def _start_check(self, peer: Peer, msg: NetCheck) -> None:
        assert self.principal is not None
        if peer.room is not None:
            raise SignalingError(Code.BAD_INPUT, "leave the call room before a network check")
        if self.check is not None:
            raise SignalingError(Code.NETCHECK_BUSY, "a network check is already running on this socket")
        consultation = None
        if msg.room is not None:
            admission = await authorize_join(self.hub.services, self.principal, msg.room, statuses=OPEN)
            consultation = admission.consultation
        self.check = self.hub.netchecks.acquire(self.principal.sub)
        self.check_task = asyncio.create_task(self._run_check(peer, self.check, consultation))

    async def _run_check(self, peer: Peer, echo: Any, consultation: Consultation | None) -> None:
        assert self.principal is not None
        checks = self.hub.netchecks
        try:
            peer.send({
                "type": "netcheck-ready", "peer": echo.id, "seconds": checks.seconds,
                "iceServers": ice_servers(self.hub.ice, peer.id, time.time()),
            })
            try:
                result = await asyncio.wait_for(echo.measure(), checks.timeout_s)
            finally:  # the check is over before its result goes out: the user may start the next one
                await echo.close()
                checks.release(self.principal.sub)
                self.check = None
            if consultation is not None:
                await self.hub.services.consultations.note(
                    consultation.id, self.principal.actor("signaling"), TimelineType.NETWORK_CHECK.value,
                    result.summary(),
                )
            peer.send(result.as_message())
        except TimeoutError:
            peer.send(error(Code.NETCHECK_TIMEOUT, f"no media within {checks.timeout_s:.0f} s"))
        except Exception:
            log.exception("signaling: network check failed")
            peer.send(error(Code.INTERNAL, "network check failed"))

    async def _to_check(self, peer: Peer, msg: Sdp | Candidate) -> None:
        echo = self.check
        if isinstance(msg, Candidate):
            await echo.add_candidate(msg.candidate)
        elif msg.type == "offer":
            peer.send({"type": "answer", "from": echo.id, "sdp": await echo.answer(msg.sdp)})
        else:
            raise SignalingError(Code.BAD_INPUT, "the network check answers offers; it takes no answer")

    async def _cleanup(self, peer: Peer) -> None:
        if self.check_task is not None and not self.check_task.done():
            self.check_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.check_task
        if peer.room is not None:
            try:
                await self._leave(peer)
            except Exception:  # the database may be gone at shutdown; the peer is out of the room anyway
                log.exception("signaling: recording the leave failed")
