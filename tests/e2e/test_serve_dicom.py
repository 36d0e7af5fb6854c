"""`huizhen serve` with its DICOM listener: storescu in, GraphQL imagingStudies out."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.conftest import free_port
from tests.dicom_support import corpus, need_program
from tests.e2e.instance import Instance


@pytest.mark.parametrize("instance", ["sqlite", "postgresql"], indirect=True)
def test_stored_study_reads_back_through_graphql(instance: Instance) -> None:
    storescu = need_program("storescu")
    port = free_port()
    instance.env.update(HUIZHEN_DICOM_PORT=str(port), HUIZHEN_DICOM_PEERS="TOWN_CT=QSWSY")
    instance.start()
    sent = subprocess.run(
        [storescu, "-aet", "TOWN_CT", "-aec", "HUIZHEN", "127.0.0.1", str(port), str(corpus("CT_small.dcm"))],
        capture_output=True, text=True, timeout=60, env={**instance.env, "TCP_NODELAY": "1"},
    )
    assert sent.returncode == 0, sent.stderr
    refused = subprocess.run(
        [storescu, "-aet", "STRANGER", "-aec", "HUIZHEN", "127.0.0.1", str(port), str(corpus("MR_small.dcm"))],
        capture_output=True, text=True, timeout=60,
    )
    assert refused.returncode != 0  # an AE that is not on the allow-list is refused
    token = instance.run("token", "--sub", "admin-1", "--role", "integration_admin").stdout.strip()
    # an integration admin sees channels but no clinical data; a platform coordinator reads the study
    clinical = instance.run("token", "--sub", "coord-1", "--role", "coordinator").stdout.strip()
    [patient] = [e["node"] for e in instance.gql(clinical, '{ patients(identifier: "1CT1") { edges { node { id } } } }')
                 ["data"]["patients"]["edges"]]
    studies = instance.gql(
        clinical,
        "query($p: ID!) { imagingStudies(patientId: $p) { studyInstanceUid modalities seriesCount instanceCount } }",
        p=patient["id"],
    )["data"]["imagingStudies"]
    assert studies == [{"studyInstanceUid": "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322", "modalities": ["CT"],
                        "seriesCount": 1, "instanceCount": 1}]
    channels = instance.gql(token, "{ channels { name state received } }")["data"]["channels"]
    assert {"name": "dicom", "state": "listening", "received": 1} in channels


@pytest.mark.parametrize("instance", ["sqlite"], indirect=True)
def test_each_dicom_operation_is_a_policy_decision(instance: Instance) -> None:
    storescu, findscu = need_program("storescu"), need_program("findscu")
    port = free_port()
    instance.env.update(HUIZHEN_DICOM_PORT=str(port), HUIZHEN_DICOM_PEERS="TOWN_CT=QSWSY")
    instance.start()
    officer = instance.run("token", "--sub", "sec-1", "--role", "security_officer").stdout.strip()
    rule = '{subject: "his_system", domain: "*", object: "study", action: "%s"}'
    for action in ("write", "read"):
        removed = instance.gql(officer, "mutation { removePolicy(input: %s) }" % (rule % action))
        assert removed["data"]["removePolicy"] is True, removed

    def store() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [storescu, "-v", "-aet", "TOWN_CT", "-aec", "HUIZHEN", "127.0.0.1", str(port), str(corpus("CT_small.dcm"))],
            capture_output=True, text=True, timeout=60, env={**instance.env, "TCP_NODELAY": "1"},
        )

    refused = store()
    assert re.search(r"0x0?124\b", refused.stdout + refused.stderr)  # PS3.7 C.5: Refused, Not Authorized
    find = subprocess.run(
        [findscu, "-v", "-S", "-aet", "TOWN_CT", "-aec", "HUIZHEN", "-k", "QueryRetrieveLevel=STUDY",
         "-k", "PatientID=*", "-k", "StudyInstanceUID", "127.0.0.1", str(port)],
        capture_output=True, text=True, timeout=60,
    )
    assert re.search(r"0x0?124\b", find.stdout + find.stderr)
    clinical = instance.run("token", "--sub", "coord-1", "--role", "coordinator").stdout.strip()
    none = instance.gql(clinical, '{ patients(identifier: "1CT1") { totalCount } }')["data"]["patients"]
    assert none == {"totalCount": 0}  # nothing of the refused store was kept
    restored = instance.gql(officer, "mutation { addPolicy(input: %s) { action } }" % (rule % "write"))
    assert restored["data"]["addPolicy"] == {"action": "write"}
    assert store().returncode == 0
    found = instance.gql(clinical, '{ patients(identifier: "1CT1") { totalCount } }')["data"]["patients"]
    assert found == {"totalCount": 1}
