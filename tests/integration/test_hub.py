"""The parent's bus as a hub for worker links (real socket pairs, one event loop playing every process)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

from huizhen.hub import HubBus, Link, LinkBus
from huizhen.integration.events import Event, Subscription
from huizhen.metrics import Metrics, merge_expositions


@contextlib.asynccontextmanager
async def hub_with(workers: int) -> AsyncIterator[tuple[HubBus, list[LinkBus]]]:
    hub = HubBus()
    buses: list[LinkBus] = []
    tasks = []
    for n in range(workers):
        ours, theirs = socket.socketpair()
        parent_end, child_end = await Link.open(ours, f"to {n}"), await Link.open(theirs, f"worker {n}")
        hub.attach(parent_end)
        buses.append(LinkBus(child_end))
        tasks += [asyncio.create_task(parent_end.run()), asyncio.create_task(child_end.run())]
    try:
        yield hub, buses
    finally:
        for link in [*hub.links, *(bus.link for bus in buses)]:
            await link.close()
        await asyncio.wait(tasks, timeout=5)


async def drained(sub: Subscription) -> list[str]:
    """What ``sub`` received, once the links have gone quiet."""
    await asyncio.sleep(0.2)
    out = []
    while not sub.queue.empty():
        out.append(sub.queue.get_nowait().type)
    return out


async def test_an_event_reaches_every_process_once() -> None:
    async with hub_with(2) as (hub, (one, two)):
        subs = [bus.subscribe("consultation") for bus in (hub, one, two)]
        await hub.publish(Event("consultation", "from-parent", {}))
        await one.publish(Event("consultation", "from-one", {"n": "一"}))
        await two.publish(Event("consultation", "from-two", {}))
        got = [await drained(sub) for sub in subs]
    for received in got:  # never echoed back to its publisher, never looping
        assert sorted(received) == ["from-one", "from-parent", "from-two"]


async def test_a_topic_nobody_subscribed_is_not_delivered() -> None:
    async with hub_with(1) as (hub, (one,)):
        sub = one.subscribe("policy")
        await hub.publish(Event("consultation", "x", {}))
        await hub.publish(Event("policy", "changed", {}))
        assert await drained(sub) == ["changed"]


async def test_a_question_over_a_link_is_answered() -> None:
    ours, theirs = socket.socketpair()
    asker, answerer = await Link.open(ours, "asker"), await Link.open(theirs, "answerer")

    async def samples(_: dict[str, object]) -> str:
        return "text"

    answerer.handlers["ask:samples"] = samples
    tasks = [asyncio.create_task(asker.run()), asyncio.create_task(answerer.run())]
    assert await asker.ask("samples") == "text"
    assert await asker.ask("unknown") is None
    await asker.close()
    await answerer.close()
    await asyncio.wait(tasks, timeout=5)


def test_expositions_are_summed() -> None:
    a, b = Metrics(), Metrics()
    a.graphql_operations.labels("query", "ok").inc(3)
    b.graphql_operations.labels("query", "ok").inc(2)
    b.graphql_operations.labels("mutation", "error").inc()
    a.graphql_latency.labels("query").observe(0.3)
    b.graphql_latency.labels("query").observe(0.002)
    a.graphql_subscriptions.inc(4)
    b.graphql_subscriptions.inc(1)
    text = merge_expositions([a.exposition().decode(), b.exposition().decode()]).decode()
    lines = set(text.splitlines())
    assert 'huizhen_graphql_operations_total{operation="query",outcome="ok"} 5.0' in lines
    assert 'huizhen_graphql_operations_total{operation="mutation",outcome="error"} 1.0' in lines
    assert 'huizhen_graphql_duration_seconds_count{operation="query"} 2.0' in lines
    assert 'huizhen_graphql_duration_seconds_bucket{le="0.0025",operation="query"} 1.0' in lines
    assert "huizhen_graphql_subscriptions_active 5.0" in lines
