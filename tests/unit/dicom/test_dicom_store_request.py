"""C-STORE requests read from their command set's bytes give pynetdicom's primitive for the same P-DATA."""

from __future__ import annotations

import logging
import struct
from io import BytesIO

import pytest
from pynetdicom.dimse_messages import C_ECHO_RQ, C_STORE_RQ, DIMSEMessage
from pynetdicom.dimse_primitives import C_ECHO, C_STORE
from pynetdicom.pdu_primitives import P_DATA

from huizhen.adapters.dicom_store_request import StoreCommand, read_store_command, starting_store

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"  # even length
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"  # odd length: NUL-padded
DATA_SET = bytes(range(256)) * 40  # stands for an encoded data set: ten fragments at 1 KiB PDUs
_FIELDS = ("AffectedSOPClassUID", "AffectedSOPInstanceUID", "MessageID", "Priority",
           "MoveOriginatorApplicationEntityTitle", "MoveOriginatorMessageID", "_context_id")


def _request(**values: object) -> C_STORE:
    req = C_STORE()
    req.MessageID = 7
    req.Priority = 2
    req.AffectedSOPClassUID = CT_IMAGE
    req.AffectedSOPInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    req.DataSet = BytesIO(DATA_SET)
    for name, value in values.items():
        setattr(req, name, value)
    return req


def _pdata(req: C_STORE, context_id: int = 3) -> list[P_DATA]:
    message = C_STORE_RQ()
    message.primitive_to_message(req)
    return list(message.encode_msg(context_id, 1024))


def _command_bytes(pdatas: list[P_DATA]) -> bytes:
    return bytes(pdatas[0].presentation_data_value_list[0][1][1:])


def _as_pynetdicom(pdatas: list[P_DATA]) -> C_STORE:
    message = DIMSEMessage()
    done = [message.decode_msg(p) for p in pdatas]
    assert done[-1] and not any(done[:-1])
    primitive = message.message_to_primitive()
    assert isinstance(primitive, C_STORE)
    return primitive


def _as_read_here(pdatas: list[P_DATA]) -> C_STORE:
    message = starting_store(pdatas[0])
    assert message is not None
    done = [message.decode_msg(p) for p in pdatas]
    assert done[-1] and not any(done[:-1])
    return message.message_to_primitive()


@pytest.mark.parametrize("values", [
    {},
    {"AffectedSOPClassUID": SECONDARY_CAPTURE, "AffectedSOPInstanceUID": "1.2.3", "MessageID": 65535, "Priority": 0},
    pytest.param(  # non-conformant (a leading zero): the setters' path, which warns
        {"AffectedSOPInstanceUID": "1.2.03.4"}, marks=pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
    ),
], ids=["ct", "odd-uids", "non-conformant-uid"])
def test_the_request_is_pynetdicoms(values: dict[str, object]) -> None:
    pdatas = _pdata(_request(**values))
    assert len(pdatas) > 2  # command, then the data set in fragments
    ours, theirs = _as_read_here(pdatas), _as_pynetdicom(pdatas)
    for name in _FIELDS:
        assert getattr(ours, name) == getattr(theirs, name), name
    assert type(ours.AffectedSOPInstanceUID) is type(theirs.AffectedSOPInstanceUID)
    assert ours.DataSet is not None and theirs.DataSet is not None
    assert ours.DataSet.getvalue() == theirs.DataSet.getvalue() == DATA_SET


def test_the_command_set_is_decoded_for_whoever_asks() -> None:
    pdatas = _pdata(_request())
    message = starting_store(pdatas[0])
    assert message is not None
    assert message.command_set.AffectedSOPInstanceUID == "1.2.826.0.1.3680043.8.498.1"
    assert message.command_set.CommandField == 0x0001


def test_read_store_command() -> None:
    command = _command_bytes(_pdata(_request(AffectedSOPClassUID=SECONDARY_CAPTURE)))
    assert read_store_command(command) == StoreCommand(SECONDARY_CAPTURE, "1.2.826.0.1.3680043.8.498.1", 7, 2)


def test_what_is_not_a_plain_store_request_is_left_to_pynetdicom() -> None:
    moved = _command_bytes(_pdata(_request(MoveOriginatorApplicationEntityTitle="PACS", MoveOriginatorMessageID=3)))
    assert read_store_command(moved) is None
    echo = C_ECHO_RQ()
    primitive = C_ECHO()
    primitive.MessageID = 1
    primitive.AffectedSOPClassUID = "1.2.840.10008.1.1"
    echo.primitive_to_message(primitive)
    assert starting_store(next(echo.encode_msg(1, 16384))) is None
    plain = _command_bytes(_pdata(_request()))
    assert read_store_command(plain[:-3]) is None  # cut short
    assert read_store_command(plain + b"\x00\x00\x00\x09\x02\x00\x00\x00\x00\x00") is None  # another element


def test_a_command_fragment_inside_the_data_set_is_refused() -> None:
    pdatas = _pdata(_request())
    message = starting_store(pdatas[0])
    assert message is not None
    message.decode_msg(pdatas[0])
    with pytest.raises(ValueError, match="command fragment"):
        message.decode_msg(pdatas[0])


@pytest.mark.filterwarnings("ignore:The value length")  # pydicom's, before pynetdicom refuses it
def test_an_invalid_uid_is_refused_as_pynetdicom_refuses_it(caplog: pytest.LogCaptureFixture) -> None:
    pdatas = _pdata(_request())
    uid, too_long = b"1.2.826.0.1.3680043.8.498.1\x00", b"1." + b"2" * 64  # 66 characters, 64 at most
    command = _command_bytes(pdatas).replace(struct.pack("<I", len(uid)) + uid, struct.pack("<I", 66) + too_long)
    pdatas[0].presentation_data_value_list[0] = (3, b"\x03" + command)
    message = starting_store(pdatas[0])
    assert message is not None
    for p in pdatas:
        message.decode_msg(p)
    with caplog.at_level(logging.ERROR, logger="pynetdicom"), pytest.raises(ValueError):
        message.message_to_primitive()
    with pytest.raises(ValueError):
        _as_pynetdicom(pdatas)


def test_a_command_and_its_data_set_in_one_p_data() -> None:
    pdatas = _pdata(_request())
    together = P_DATA()
    together.presentation_data_value_list = [list(pv) for p in pdatas for pv in p.presentation_data_value_list]
    ours, theirs = _as_read_here([together]), _as_pynetdicom([together])
    for name in _FIELDS:
        assert getattr(ours, name) == getattr(theirs, name), name
    assert ours.DataSet is not None and ours.DataSet.getvalue() == DATA_SET
