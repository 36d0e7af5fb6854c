"""From pynetdicom's association threads to the server's asyncio loop.

pynetdicom runs every association in its own thread and calls handlers
synchronously there; the store, the bus and the services live on the asyncio
loop. :meth:`LoopBridge.call` runs a coroutine on the loop and waits for it
with a deadline, so a handler can never block forever on a store that cannot
keep up: past the deadline the coroutine is cancelled and the caller answers
with a failure status.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class BridgeTimeout(Exception):
    """The loop did not finish the work in time; it was cancelled."""


class LoopBridge:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def call(self, coro: Coroutine[Any, Any, T], *, timeout: float) -> T:
        """Run ``coro`` on the loop from another thread; its exception is raised here.

        Past ``timeout`` it is cancelled and :class:`BridgeTimeout` raised."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout=timeout)
        except concurrent.futures.TimeoutError as exc:
            future.cancel()
            raise BridgeTimeout(f"no answer from the store within {timeout:g} s") from exc
