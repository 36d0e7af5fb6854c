"""Pure parts of signaling: the adaptive bitrate policy over a recorded sequence, TURN REST
credentials, and the message parser's error codes."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from huizhen.adapters.bitrate import Policy, Stats, choose_for_path, parse_ladder, recommend
from huizhen.adapters.signaling_protocol import Candidate, Code, Sdp, SignalingError, parse
from huizhen.adapters.turn import IceConfig, ice_servers, turn_credential
from huizhen.settings import Settings

LADDER = parse_ladder(Settings().bitrate_ladder)
POLICY = Policy(LADDER, start=2, up_after=3)

# A recorded session of a township clinic on a 4G uplink: (bitrateKbps, lossPct, rttMs) every 2 s,
# with the rung (width) the policy must recommend after each report.
RECORDED = [
    ((620, 0.5, 80), 640),   # good 1
    ((640, 0.2, 90), 640),   # good 2
    ((650, 0.0, 70), 960),   # good 3: one step up, slowly
    ((900, 1.0, 95), 960),   # good 1 on the new rung
    ((880, 6.0, 120), 640),  # loss over 5 %: down at once
    ((500, 18.0, 300), 320),  # severe loss: two rungs down
    ((170, 3.0, 180), 320),  # neither good nor bad: hold (and the lowest rung cannot go lower)
    ((180, 0.5, 450), 320),  # RTT over 400 ms: down (already at the bottom)
    ((190, 0.1, 60), 320),   # good 1
    ((200, 0.1, 60), 320),   # good 2
    ((210, 0.0, 55), 480),   # good 3: up one
    ((350, 0.0, 60), 480),
    ((340, 0.4, 70), 480),
    ((360, 0.2, 65), 640),   # up one more after three good reports
    ((100, 0.0, 60), 480),   # the path carries far less than the rung needs: down without loss
]


def test_recommendation_follows_a_recorded_session() -> None:
    state = POLICY.initial()
    widths = []
    for (kbps, loss, rtt), _ in RECORDED:
        state, rung = recommend(POLICY, state, Stats(kbps, loss, rtt))
        widths.append(rung.width)
    assert widths == [w for _, w in RECORDED]


def test_never_above_the_top_rung() -> None:
    state = Policy(LADDER, start=0, up_after=1).initial()
    for _ in range(5):
        state, rung = recommend(Policy(LADDER, start=0, up_after=1), state, Stats(5000, 0, 10))
    assert rung == LADDER[0] and state.rung == 0


def test_path_choice_for_a_network_check() -> None:
    assert choose_for_path(POLICY, Stats(2000, 0.0, 40)).width == 1280
    assert choose_for_path(POLICY, Stats(700, 0.0, 40)).width == 640
    assert choose_for_path(POLICY, Stats(700, 8.0, 40)).width == 480  # loss lowers it one rung
    assert choose_for_path(POLICY, Stats(50, 0.0, 40)).width == 320


@pytest.mark.parametrize(
    "text", ["", "640x360", "640x360@25:600,1280x720@30:1500", "axb@1:2"],
)
def test_bad_ladders_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_ladder(text)


def test_turn_rest_credentials() -> None:
    username, password = turn_credential("north-secret", "peerA", 1700000000)
    assert username == "1700000000:peerA"
    expected = base64.b64encode(hmac.new(b"north-secret", b"1700000000:peerA", hashlib.sha1).digest()).decode()
    # the value openssl gives: echo -n 1700000000:peerA | openssl dgst -sha1 -hmac north-secret -binary | base64
    assert password == expected == "Bc/6JfMtPdYfJJoQVCRyyY8aXro="


def test_ice_servers_have_turn_only_with_a_secret() -> None:
    stun_only = IceConfig(stun_urls=("stun:stun.example.org:3478",), turn_urls=("turn:turn.example.org:3478",))
    assert ice_servers(stun_only, "p1", 1000.0) == [{"urls": ["stun:stun.example.org:3478"]}]
    assert ice_servers(IceConfig(), "p1", 1000.0) == []
    full = IceConfig(turn_urls=("turn:turn.example.org:3478",), turn_secret="s3", turn_ttl_s=600)
    (turn,) = ice_servers(full, "p1", 1000.0)
    assert turn["username"] == "1600:p1" and turn["credential"] == turn_credential("s3", "p1", 1600)[1]


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("{not json", Code.BAD_JSON),
        ("[1, 2]", Code.BAD_INPUT),
        ('{"type": "dance"}', Code.UNKNOWN_TYPE),
        ('{"type": "offer", "to": "p1"}', Code.BAD_INPUT),
        ('{"type": "stats", "bitrateKbps": 1, "lossPct": 120, "rttMs": 3}', Code.BAD_INPUT),
        ('{"type": "join", "room": ""}', Code.BAD_INPUT),
    ],
)
def test_parse_errors_carry_codes(text: str, code: Code) -> None:
    with pytest.raises(SignalingError) as err:
        parse(text)
    assert err.value.code == code


def test_parse_declared_models() -> None:
    assert parse('{"type":"offer","to":"p1","sdp":"v=0"}') == Sdp(type="offer", to="p1", sdp="v=0")
    c = parse('{"type":"candidate","to":"p1","candidate":null,"extra":"ignored"}')
    assert isinstance(c, Candidate) and c.candidate is None
