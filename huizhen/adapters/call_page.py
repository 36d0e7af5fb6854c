"""``/call/{consultationId}``: the small static call page (vanilla JS) and its script.

Static on purpose: the page reads the consultation id from its own path and the
token from the URL fragment, so nothing of the request is echoed into HTML.
"""

from __future__ import annotations

from importlib import resources

from starlette.requests import Request
from starlette.responses import Response

_PAGE_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "connect-src 'self'; media-src 'self' blob: mediastream:; img-src 'self' data:"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


async def call_page(_: Request) -> Response:
    """Static: the page reads the consultation id from its own path and the token from its fragment."""
    return Response(_asset("call.html"), media_type="text/html; charset=utf-8", headers=_PAGE_HEADERS)


async def call_script(_: Request) -> Response:
    return Response(_asset("call.js"), media_type="text/javascript; charset=utf-8", headers=_PAGE_HEADERS)


def _asset(name: str) -> bytes:
    return resources.files("huizhen.adapters").joinpath("static", name).read_bytes()
