"""C-STORE responses encoded directly are the bytes pynetdicom encodes for the same primitive."""

from __future__ import annotations

import pytest
from pynetdicom.dimse_messages import C_STORE_RSP
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dsutils import encode

from huizhen.adapters.dicom_store_response import encode_store_response

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"  # even length
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"  # odd length: NUL-padded


def _response(**values: object) -> C_STORE:
    rsp = C_STORE()
    for name, value in values.items():
        setattr(rsp, name, value)
    return rsp


def _pynetdicom(rsp: C_STORE) -> bytes:
    message = C_STORE_RSP()
    message.primitive_to_message(rsp)
    encoded = encode(message.command_set, True, True)
    assert isinstance(encoded, bytes)
    return encoded


@pytest.mark.parametrize("rsp", [
    _response(MessageIDBeingRespondedTo=1, AffectedSOPClassUID=CT_IMAGE, AffectedSOPInstanceUID="1.2.3.4", Status=0),
    _response(MessageIDBeingRespondedTo=65535, AffectedSOPClassUID=SECONDARY_CAPTURE,
              AffectedSOPInstanceUID="1.2.826.0.1.3680043.8.498.123", Status=0xA700),
    _response(MessageIDBeingRespondedTo=7, Status=0xC000),  # no UIDs: left out, as pynetdicom does
    _response(MessageIDBeingRespondedTo=2, AffectedSOPClassUID=CT_IMAGE, AffectedSOPInstanceUID="1.2.3", Status=0x0124),
], ids=["success", "out-of-resources-odd-uids", "no-uids", "not-authorized"])
def test_the_command_set_is_byte_for_byte_pynetdicoms(rsp: C_STORE) -> None:
    assert encode_store_response(rsp) == _pynetdicom(rsp)


def test_a_response_with_an_error_comment_or_offending_element_is_left_to_pynetdicom() -> None:
    base = {"MessageIDBeingRespondedTo": 3, "AffectedSOPClassUID": CT_IMAGE, "AffectedSOPInstanceUID": "1.2.3.4"}
    assert encode_store_response(_response(**base, Status=0xC000, ErrorComment="bad")) is None
    assert encode_store_response(_response(**base, Status=0xA900, OffendingElement=[0x00100020])) is None
