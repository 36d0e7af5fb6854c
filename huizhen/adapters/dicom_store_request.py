"""C-STORE requests read from their command set's bytes, rather than through a pydicom dataset.

pynetdicom decodes every received command set with pydicom (a Dataset read,
each element converted and validated on access), then walks that dataset to
fill the request primitive. For a C-STORE-RQ, seven fixed elements of
Implicit VR Little Endian, that took ~0.45 ms of CPU per instance on this
project's machines, in the DUL reactor, on the path between one C-STORE's
response and the next one's handler (measured: 0.16 ms for the command PDU,
0.29 ms when the data set completed the message; half of the latter checking
the two UIDs three times over).

:func:`read_store_command` reads those elements straight from the bytes, and
:func:`receive_stores_directly` makes one association build its C-STORE
requests from them (:class:`StoreRequest`): same primitive, same values. UIDs
that are conformant (digits and dots, at most 64 characters: nothing for the
checks to say) are set as they are; any other goes through the primitive's own
validating setters, as do the message id and priority, so a bad value still
ends the association as pynetdicom's path would. Anything else takes
pynetdicom's own path, untouched: a command set split over fragments, any
other DIMSE message, a C-STORE-RQ with elements beyond the plain seven (Move
Originator, odd lengths, several values), a listener for ``EVT_DIMSE_RECV``
(pynetdicom's debug log handlers, a test: they read the decoded command set),
and data sets received into temporary files (``STORE_RECV_CHUNKED_DATASET``).
It replaces ``receive_primitive`` of pynetdicom 3.0.x's DIMSE provider on that
association only; other versions keep their own.
"""

from __future__ import annotations

import struct
import types
from dataclasses import dataclass
from io import BytesIO

import pynetdicom
from pydicom import config
from pydicom.dataset import Dataset
from pydicom.uid import RE_VALID_UID, UID
from pynetdicom import _config, evt
from pynetdicom.association import Association
from pynetdicom.dimse import DIMSEServiceProvider
from pynetdicom.dimse_messages import C_STORE_RQ
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dsutils import decode
from pynetdicom.pdu_primitives import P_DATA

_ELEMENT = struct.Struct("<HHI")  # Implicit VR Little Endian element header: group, element, length
_US = struct.Struct("<H")
_GROUP_LENGTH, _SOP_CLASS, _COMMAND_FIELD, _MESSAGE_ID = 0x0000, 0x0002, 0x0100, 0x0110
_PRIORITY, _DATA_SET_TYPE, _SOP_INSTANCE = 0x0700, 0x0800, 0x1000
_C_STORE_RQ = 0x0001
_NO_DATA_SET = 0x0101
_PLAIN = frozenset({_GROUP_LENGTH, _SOP_CLASS, _COMMAND_FIELD, _MESSAGE_ID, _PRIORITY, _DATA_SET_TYPE, _SOP_INSTANCE})
_REQUIRED = _PLAIN - {_GROUP_LENGTH}  # pynetdicom does not check the group length either
_UID_MAX = 64
_WHOLE_COMMAND = 0x03  # message control header bits: command information, last fragment (PS3.8 E.2)


@dataclass(frozen=True, slots=True)
class StoreCommand:
    """The values of a C-STORE-RQ command set, as pydicom would decode them."""

    sop_class_uid: str
    sop_instance_uid: str
    message_id: int
    priority: int


def read_store_command(command: bytes) -> StoreCommand | None:
    """The C-STORE-RQ in an encoded command set, or ``None`` for anything else (other messages,
    other elements, values of another length or several values): pynetdicom decodes those."""
    values: dict[int, bytes] = {}
    pos, end = 0, len(command)
    while pos < end:
        if pos + _ELEMENT.size > end:
            return None
        group, element, length = _ELEMENT.unpack_from(command, pos)
        pos += _ELEMENT.size
        if group != 0 or element not in _PLAIN or element in values or pos + length > end:
            return None
        values[element] = command[pos : pos + length]
        pos += length
    if not _REQUIRED <= values.keys():
        return None
    numbers = {e: _us(values[e]) for e in (_COMMAND_FIELD, _MESSAGE_ID, _PRIORITY, _DATA_SET_TYPE)}
    class_uid, instance_uid = _ui(values[_SOP_CLASS]), _ui(values[_SOP_INSTANCE])
    if None in numbers.values() or class_uid is None or instance_uid is None:
        return None
    if numbers[_COMMAND_FIELD] != _C_STORE_RQ or numbers[_DATA_SET_TYPE] == _NO_DATA_SET:
        return None
    return StoreCommand(class_uid, instance_uid, numbers[_MESSAGE_ID] or 0, numbers[_PRIORITY] or 0)


class StoreRequest(C_STORE_RQ):
    """A C-STORE-RQ message whose command set was read by :func:`read_store_command`: it
    gathers the data set fragments as pynetdicom's does and gives the same request primitive."""

    def __init__(self, context_id: int, encoded: bytes, command: StoreCommand) -> None:
        # not DIMSEMessage.__init__: its empty command set costs a pydicom element per keyword
        self.context_id: int | None = context_id
        self.encoded_command_set = BytesIO(encoded)
        self.data_set: BytesIO | None = BytesIO()
        self._data_set_path = None
        self._data_set_file = None
        self._command = command
        self._command_seen = False  # the P-DATA it was read from is decoded again: its first PDV is skipped

    @property
    def command_set(self) -> Dataset:  # type: ignore[override]  # an attribute in DIMSEMessage
        """The command set as pynetdicom decodes it, for whoever asks (nothing on the C-STORE path)."""
        return decode(BytesIO(self.encoded_command_set.getvalue()), True, True)

    def decode_msg(self, primitive: P_DATA, assoc: Association | None = None) -> bool:
        """Add the data set fragments; ``True`` once the last one came (as pynetdicom's)."""
        for _, data in primitive.presentation_data_value_list:
            if data[0] & 1:
                if self._command_seen:
                    raise ValueError("a command fragment inside a C-STORE-RQ's data set")
                self._command_seen = True
                continue
            self.data_set.write(data[1:])  # type: ignore[union-attr]  # a BytesIO here, never a file
            if data[0] & 2:
                return True
        return False

    def message_to_primitive(self) -> C_STORE:  # type: ignore[override]  # pynetdicom's is a Union of all
        command, primitive = self._command, C_STORE()
        class_uid, instance_uid = command.sop_class_uid, command.sop_instance_uid
        if _conformant(class_uid) and _conformant(instance_uid):  # what the setters would accept, silently
            primitive._affected_sop_class_uid = UID(class_uid, validation_mode=config.IGNORE)
            primitive._affected_sop_instance_uid = UID(instance_uid, validation_mode=config.IGNORE)
        else:  # the setters validate, refuse and warn, as on pynetdicom's path
            primitive.AffectedSOPClassUID = class_uid
            primitive.AffectedSOPInstanceUID = instance_uid
        primitive.MessageID = command.message_id
        primitive.Priority = command.priority
        primitive.DataSet = self.data_set
        primitive._context_id = self.context_id
        primitive._dataset_path = None
        primitive._dataset_file = None
        return primitive


def starting_store(primitive: P_DATA) -> StoreRequest | None:
    """The C-STORE-RQ a message's first P-DATA opens, when its first PDV is the whole command set."""
    pdvs = primitive.presentation_data_value_list
    if not pdvs:
        return None
    context_id, data = pdvs[0]
    if data[0] & _WHOLE_COMMAND != _WHOLE_COMMAND:
        return None
    encoded = bytes(data[1:])
    command = read_store_command(encoded)
    return None if command is None else StoreRequest(context_id, encoded, command)


def receive_stores_directly(assoc: Association) -> None:
    """Read this association's C-STORE requests through :func:`read_store_command`
    (see the module docstring). Call on ``EVT_CONN_OPEN``."""
    if pynetdicom.__version__.startswith("3.0."):
        assoc.dimse.receive_primitive = types.MethodType(_receive_primitive, assoc.dimse)  # type: ignore[method-assign]


def _receive_primitive(self: DIMSEServiceProvider, primitive: P_DATA) -> None:
    if (
        self.message is None
        and type(primitive) is P_DATA
        and not _config.STORE_RECV_CHUNKED_DATASET
        and not self.assoc.get_handlers(evt.EVT_DIMSE_RECV)
    ):
        self.message = starting_store(primitive)
    DIMSEServiceProvider.receive_primitive(self, primitive)


def _conformant(uid: str) -> bool:
    """A UID pydicom and pynetdicom both take without a word (so their checks can be skipped)."""
    return len(uid) <= _UID_MAX and RE_VALID_UID.match(uid) is not None


def _us(value: bytes) -> int | None:
    return _US.unpack(value)[0] if len(value) == _US.size else None


def _ui(value: bytes) -> str | None:
    """A UI value as pydicom decodes it (trailing NULs and spaces dropped); ``None`` for several."""
    text = value.decode("iso8859").rstrip("\0 ")
    return None if "\\" in text else text

