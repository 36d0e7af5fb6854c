"""The event bus: in-process, and Redis pub/sub across two bus instances."""

from __future__ import annotations

import asyncio

from huizhen.integration.events import Event, InProcessBus, RedisBus, Subscription


async def next_event(sub: Subscription) -> Event:
    return await asyncio.wait_for(sub.__anext__(), 5.0)


async def test_in_process_delivers_by_topic() -> None:
    bus = InProcessBus()
    with_topic = bus.subscribe("consultation")
    other = bus.subscribe("message")
    await bus.publish(Event("consultation", "SUBMITTED", {"id": "c1", "name": "张三"}))
    got = await next_event(with_topic)
    assert (got.type, got.data) == ("SUBMITTED", {"id": "c1", "name": "张三"})
    assert other.queue.empty()
    with_topic.close()
    await bus.publish(Event("consultation", "X", {}))
    assert with_topic.queue.empty()


async def test_slow_subscriber_drops_oldest_not_the_publisher() -> None:
    bus = InProcessBus()
    sub = bus.subscribe("t")
    for i in range(1100):
        await bus.publish(Event("t", "n", {"i": i}))
    first = await next_event(sub)
    assert first.data["i"] == 1100 - sub.queue.maxsize


async def test_redis_bus_crosses_instances(redis_url: str) -> None:
    prefix = f"huizhen-test-{id(object())}:"
    a, b = RedisBus(redis_url, prefix=prefix), RedisBus(redis_url, prefix=prefix)
    await a.start()
    await b.start()
    try:
        on_b = b.subscribe("consultation")
        on_a = a.subscribe("consultation")
        await a.publish(Event("consultation", "ASSIGNED", {"id": "c9", "dept": "心血管内科"}))
        got_b, got_a = await next_event(on_b), await next_event(on_a)
        assert got_b.data == {"id": "c9", "dept": "心血管内科"} and got_b.type == "ASSIGNED"
        assert got_a == got_b
    finally:
        await a.close()
        await b.close()
