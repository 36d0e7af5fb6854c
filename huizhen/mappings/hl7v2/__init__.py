"""HL7 v2, pure: bytes → typed message → commands, and the ACK back. No sockets, no database.

Layers, in the order a message meets them:

    charset     MSH-18 (table 0211) → codec; undecodable bytes → CharsetError
    delimiters  MSH-1/MSH-2 and escape sequences
    header      MessageHeader (MSH, typed) and the whole-message checks
    parse       parse_message(raw) → Hl7Message (python-hl7 split, typed Segment access)
    registry    MSH-9 → mapper; default_registry() builds one, nothing is built at import
    adt oru orders referral siu     the mappers: Hl7Message → MappingResult (commands)
    ack         build_ack / fallback_ack / ack_plan (enhanced mode)
    validate    validate_structure (hl7apy, slow: only for senders configured for it)

Errors are one tree (``errors``): ``Rejected`` answers AR, ``MappingError`` AE.
"""
