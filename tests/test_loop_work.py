"""The event loop's own work: garbage collection at quiet moments, sends handed from the database thread."""

import asyncio
import gc

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer

from agentchat import quiet_gc
from agentchat.broadcast import group_send


@pytest.fixture
def collections():
    """The generations collected while the test runs (by anyone)."""
    seen: list[int] = []

    def record(phase, info):
        if phase == "stop":
            seen.append(info["generation"])

    gc.callbacks.append(record)
    yield seen
    gc.callbacks.remove(record)


@pytest.fixture
def thresholds():
    before = gc.get_threshold()
    yield gc.set_threshold
    gc.set_threshold(*before)


def test_collect_due_runs_the_oldest_generation_past_half_its_threshold(collections, thresholds):
    thresholds(1_000_000, 1_000, 2)
    gc.collect()
    assert quiet_gc.collect_due() is None  # nothing due right after a full collection

    gc.collect(0)  # a young collection counts towards the middle generation's threshold
    thresholds(1_000_000, 1, 2)
    collections.clear()
    assert quiet_gc.collect_due() == 1
    assert collections == [1]


async def test_a_collection_runs_once_nothing_arrived_for_a_while_and_not_before(collections, thresholds, monkeypatch):
    monkeypatch.setattr(quiet_gc, "_enabled", True)
    monkeypatch.setattr(quiet_gc, "QUIET_SECONDS", 0.1)
    thresholds(2, 1, 1_000_000)  # a young collection is always due
    gc.disable()  # only the quiet collector collects
    try:
        for _ in range(5):  # activity every 0.05 s: never quiet for 0.1 s
            collections.clear()
            quiet_gc.activity()
            await asyncio.sleep(0.05)
            assert collections == []
        await asyncio.sleep(0.25)
        assert collections  # quiet now: it collected
    finally:
        gc.enable()


async def test_sends_from_the_database_thread_are_handed_to_the_loop_in_order(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add("handed", channel)

    def send_three() -> None:
        for n in range(3):
            group_send("handed", {"type": "test.event", "n": n})

    await sync_to_async(send_three)()
    received = [await asyncio.wait_for(layer.receive(channel), 2) for _ in range(3)]
    assert [event["n"] for event in received] == [0, 1, 2]


async def test_a_thinned_out_group_gets_the_first_send_at_once_and_the_last_of_a_burst_later(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add("thinned", channel)

    def burst() -> None:
        for n in range(10):
            group_send("thinned", {"type": "test.event", "n": n}, at_most_every=0.2)

    await sync_to_async(burst)()
    first = await asyncio.wait_for(layer.receive(channel), 1)
    assert first["n"] == 0
    last = await asyncio.wait_for(layer.receive(channel), 1)
    assert last["n"] == 9  # the burst's others were dropped: only the latest matters
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(layer.receive(channel), 0.4)
