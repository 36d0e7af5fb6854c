"""The request's DataLoader caches are emptied once its operation is answered."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from huizhen.graphql.context import Loaders, make_loaders


def _loaders() -> Loaders:
    services: Any = SimpleNamespace(store=None)  # the batch functions are never called here
    return make_loaders(services)


def test_release_forgets_every_loaded_value() -> None:
    async def go() -> None:
        loaders = _loaders()
        for name, loader in vars(loaders).items():
            loader.prime(name, None)
        assert all(len(loader.cache_map.cache_map) == 1 for loader in vars(loaders).values())
        loaders.release()
        assert all(not loader.cache_map.cache_map for loader in vars(loaders).values())
        loaders.patient.prime("p1", None)  # still usable afterwards
        assert await loaders.patient.load("p1") is None

    asyncio.run(go())
