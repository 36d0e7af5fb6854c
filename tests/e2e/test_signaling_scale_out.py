"""Two `huizhen serve` processes on one PostgreSQL and one Redis: peers on different instances meet."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from huizhen.integration.consultations import ConsultationService
from huizhen.integration.crypto import load_or_create_keyring
from huizhen.integration.events import InProcessBus
from huizhen.integration.store import Store
from huizhen.rbac.identity import TokenService, load_or_create_signing_key
from tests.conftest import PostgresDatabases, free_port
from tests.e2e.instance import Instance
from tests.signaling_support import FACILITY, SignalingClient, assigned_consultation, seed_directory


@pytest.fixture
def pair(tmp_path: Path, postgres_databases: PostgresDatabases, redis_url: str) -> Iterator[list[Instance]]:
    data = tmp_path / "shared-data"  # one data folder: the signing key and PHI keys all instances share
    base = {k: v for k, v in os.environ.items() if not k.startswith("HUIZHEN_")}
    base.update(
        HUIZHEN_DATABASE_URL=postgres_databases.new(), HUIZHEN_BROKER_URL=redis_url,
        HUIZHEN_DATA_DIR=str(data), HUIZHEN_DICOM_PORT="0",
    )
    instances = []
    for name in ("a", "b"):
        workdir = tmp_path / name
        workdir.mkdir()
        env = dict(base, HUIZHEN_HTTP_PORT=str(free_port()), HUIZHEN_MLLP_PORT=str(free_port()))
        instances.append(Instance(workdir, env))
    instances[0].start()  # creates the data folder and migrates
    instances[1].start()
    yield instances
    for inst in instances:
        inst.stop(signal.SIGKILL)


class _Services:
    """What the seeding helpers need, on the instances' own database."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.consultations = ConsultationService(store, InProcessBus(), ZoneInfo("Asia/Shanghai"))


@pytest.fixture
async def seeded(pair: list[Instance]) -> AsyncIterator[tuple[str, TokenService]]:
    data = Path(pair[0].env["HUIZHEN_DATA_DIR"])
    store = Store(pair[0].env["HUIZHEN_DATABASE_URL"], load_or_create_keyring(data))
    services = _Services(store)
    await seed_directory(services)  # type: ignore[arg-type]
    cid = await assigned_consultation(services)  # type: ignore[arg-type]
    await store.close()
    yield cid, TokenService(load_or_create_signing_key(data))


@pytest.mark.postgres
@pytest.mark.redis
async def test_peers_on_two_instances_meet_in_one_room(
    pair: list[Instance], seeded: tuple[str, TokenService]
) -> None:
    cid, tokens = seeded
    a, b = pair
    doctor = await SignalingClient.connect(a.base, tokens.issue("doc1", ["primary_doctor"], FACILITY))
    expert = await SignalingClient.connect(b.base, tokens.issue("exp1", ["expert"]))
    doctor_id = (await doctor.join(cid))["peer"]
    joined = await expert.join(cid)
    assert [p["id"] for p in joined["peers"]] == [doctor_id]  # learned from the other instance
    assert (await doctor.expect("peer-joined"))["peer"]["id"] == joined["peer"]

    await expert.send(type="offer", to=doctor_id, sdp="v=0 跨实例")
    assert await doctor.expect("offer") == {"type": "offer", "from": joined["peer"], "sdp": "v=0 跨实例"}
    await doctor.send(type="answer", to=joined["peer"], sdp="v=0 answer")
    assert (await expert.expect("answer"))["from"] == doctor_id
    for i in range(3):
        await doctor.send(type="candidate", to=joined["peer"], candidate={"candidate": f"candidate:{i}"})
    assert [(await expert.expect("candidate"))["candidate"]["candidate"] for _ in range(3)] == [
        "candidate:0", "candidate:1", "candidate:2"
    ]

    # the expert's join on b started it; completing it on b closes the room on a too
    done = b.gql(
        tokens.issue("exp1", ["expert"]),
        'mutation($id: ID!) { completeConsultation(id: $id, diagnosis: "稳定型心绞痛", treatmentPlan: "随访") '
        "{ status } }",
        id=cid,
    )
    assert done["data"]["completeConsultation"]["status"] == "COMPLETED", done
    assert (await doctor.expect("room-closed"))["status"] == "COMPLETED"
    assert await doctor.closed() == 4410
    assert await expert.closed() == 4410
