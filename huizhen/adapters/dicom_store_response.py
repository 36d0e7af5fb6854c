"""C-STORE responses sent as bytes built directly, rather than through pydicom datasets.

pynetdicom turns every response primitive into a pydicom Dataset (one
attribute set per element, each validated), encodes it once to learn the
Command Group Length and again to send it. For a C-STORE-RSP, seven fixed
elements of Implicit VR Little Endian, that took ~0.4 ms of an instance's
~4 ms on this project's machines, on the path every C-STORE waits on.

:func:`encode_store_response` writes the same command set, byte for byte
(tested against pynetdicom's encoding), and :func:`answer_stores_directly`
makes one association send its C-STORE responses that way, unless someone
listens for ``EVT_DIMSE_SENT`` (pynetdicom's debug log handlers, a test) or
the response carries what it does not encode (an Error Comment, an Offending
Element) or needs more than one PDU: those take pynetdicom's own path. It
replaces ``send_msg`` of pynetdicom 3.0.x's DIMSE provider on that
association only; other versions keep their own.
"""

from __future__ import annotations

import struct
import types

import pynetdicom
from pynetdicom import evt
from pynetdicom.association import Association
from pynetdicom.dimse import DIMSEServiceProvider
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.pdu_primitives import P_DATA

C_STORE_RSP = 0x8001  # (0000,0100) Command Field
NO_DATA_SET = 0x0101  # (0000,0800) Command Data Set Type
_LAST_COMMAND_FRAGMENT = b"\x03"  # message control header: command, last fragment (PS3.8 E.2)
_PDV_OVERHEAD = 6  # item length (4), context id (1) and control header (1) of a PDV in a P-DATA-TF PDU


def encode_store_response(rsp: C_STORE) -> bytes | None:
    """The Implicit VR Little Endian command set of a C-STORE-RSP without a data set, as
    pynetdicom encodes it; ``None`` for a response carrying an Error Comment or Offending Element."""
    if rsp.ErrorComment is not None or rsp.OffendingElement is not None or rsp.Status is None:
        return None
    body = b"".join((
        _ui(0x0002, rsp.AffectedSOPClassUID),
        _us(0x0100, C_STORE_RSP),
        _us(0x0120, rsp.MessageIDBeingRespondedTo),
        _us(0x0800, NO_DATA_SET),
        _us(0x0900, rsp.Status),
        _ui(0x1000, rsp.AffectedSOPInstanceUID),
    ))
    return struct.pack("<HHII", 0x0000, 0x0000, 4, len(body)) + body


def answer_stores_directly(assoc: Association) -> None:
    """Send this association's C-STORE responses through :func:`encode_store_response`
    (see the module docstring). Call on ``EVT_CONN_OPEN``."""
    if pynetdicom.__version__.startswith("3.0."):
        assoc.dimse.send_msg = types.MethodType(_send_msg, assoc.dimse)  # type: ignore[method-assign]


def _send_msg(self: DIMSEServiceProvider, primitive: C_STORE, context_id: int) -> None:
    encoded = None
    if type(primitive) is C_STORE and primitive.MessageIDBeingRespondedTo is not None:
        encoded = encode_store_response(primitive)
    limit = self.maximum_pdu_size
    if encoded is None or (limit and len(encoded) + _PDV_OVERHEAD > limit) or self.assoc.get_handlers(
        evt.EVT_DIMSE_SENT
    ):
        DIMSEServiceProvider.send_msg(self, primitive, context_id)
        return
    pdata = P_DATA()
    pdata.presentation_data_value_list.append((context_id, _LAST_COMMAND_FRAGMENT + encoded))
    self.dul.send_pdu(pdata)


def _ui(element: int, uid: str | None) -> bytes:
    if uid is None:  # pynetdicom leaves an unset parameter out of the command set
        return b""
    value = uid.encode("ascii")
    if len(value) % 2:
        value += b"\0"  # UI values are padded to even length with NUL
    return struct.pack("<HHI", 0x0000, element, len(value)) + value


def _us(element: int, value: int | None) -> bytes:
    if value is None:
        return b""
    return struct.pack("<HHIH", 0x0000, element, 2, value)
