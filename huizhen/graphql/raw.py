"""A journaled message's raw content: decrypted for integration admins only, every view audited."""

from __future__ import annotations

import contextlib

from huizhen.graphql.types import Info
from huizhen.integration import model as m
from huizhen.integration.errors import Forbidden
from huizhen.mappings.hl7v2 import charset
from huizhen.mappings.hl7v2.errors import CharsetError
from huizhen.rbac.audit import DENIED


def decode_raw(raw: bytes) -> str:
    """The message text by its own MSH-18 (as the pipeline decoded it); for what does not decode so
    (a FHIR body, a message refused for its bytes): UTF-8, else GB 18030, else Latin-1 (never fails)."""
    with contextlib.suppress(CharsetError):
        return charset.decode(raw).text
    for codec in ("utf-8", "gb18030"):
        try:
            return raw.decode(codec)
        except UnicodeDecodeError:
            continue
    return raw.decode("latin-1")


async def raw_content(info: Info, message: m.Message) -> str:
    """Decrypted content for those the policy allows (``message raw``); every view is audited."""
    ctx = info.context
    what = f"raw content of a {message.channel} message"
    if not ctx.allowed("message", "raw"):
        ctx.audited().add("read-raw", "Message", message.id, DENIED, detail=what)
        raise Forbidden(f"{', '.join(sorted(ctx.roles)) or 'no role'} in {ctx.domain} may not read {what}s")
    ctx.audited().add("read-raw", "Message", message.id, detail=what)
    return decode_raw(message.raw)
