"""The store shared by several workers (on SQLite and PostgreSQL): a box's messages dealt round robin to
different workers are applied once, in the box's order, acknowledged by whichever worker applied them."""

from __future__ import annotations

import json
import random
import threading
import time
from pathlib import Path

from sync.backoffice.store import BackOfficeStore, Incoming


def _event(device: str, seq: int, prev: int | None) -> Incoming:
    body: dict[str, object] = {"key": f"{device}:{seq}", "seq": seq, "stream": "events", "type": "claim.created"}
    if prev is not None:
        body["prev"] = prev
    return Incoming(f"comptoir/{device}/events", json.dumps(body).encode(), time.time(), seq.to_bytes(8, "big"))


def test_a_message_ahead_of_its_predecessor_is_applied_by_the_worker_that_stores_the_predecessor(
    store_target: Path | str,
) -> None:
    a, b = BackOfficeStore(store_target), BackOfficeStore(store_target)
    try:
        first = a.apply([_event("ph1/c1", 1, None)])
        assert first.stored == [("ph1/c1", "ph1/c1:1")]
        ahead = b.apply([_event("ph1/c1", 3, 2), _event("ph1/c1", 4, 3)])  # worker B got 3 and 4 first
        assert ahead.stored == [] and [k for _, k, _ in ahead.held] == ["ph1/c1:3", "ph1/c1:4"]
        assert ahead.held[0][2] == (3).to_bytes(8, "big"), "the correlation of the send it came in"
        assert b.still_pending("ph1/c1", ["ph1/c1:3", "ph1/c1:4", "ph1/c1:9"]) == {"ph1/c1:3", "ph1/c1:4"}
        late = a.apply([_event("ph1/c1", 2, 1)])  # worker A gets 2: it applies 3 and 4 right after
        assert late.stored == [("ph1/c1", "ph1/c1:2"), ("ph1/c1", "ph1/c1:3"), ("ph1/c1", "ph1/c1:4")]
        assert late.held == [] and b.still_pending("ph1/c1", ["ph1/c1:3", "ph1/c1:4"]) == set()
        again = b.apply([_event("ph1/c1", 3, 2)])  # the box sent 3 again meanwhile: a duplicate
        assert again.stored == [("ph1/c1", "ph1/c1:3")]
        assert a.event_keys("ph1/c1") == ["ph1/c1:1", "ph1/c1:2", "ph1/c1:3", "ph1/c1:4"]
        device = a.device("ph1/c1")
        assert device is not None and device["duplicates"] == 1 and device["out_of_order"] == 0
    finally:
        a.close()
        b.close()


def test_the_first_message_of_a_stream_waits_when_it_names_a_predecessor(store_target: Path | str) -> None:
    """A box's second message may reach a worker before its first reaches another: nothing applied yet
    in that stream is no reason to take it (the box sends a run without ``prev`` when the back office
    really lost the predecessor)."""
    store = BackOfficeStore(store_target)
    try:
        assert [k for _, k, _ in store.apply([_event("ph1/c1", 2, 1)]).held] == ["ph1/c1:2"]
        assert [k for _, k in store.apply([_event("ph1/c1", 1, None)]).stored] == ["ph1/c1:1", "ph1/c1:2"]
    finally:
        store.close()


def test_workers_applying_at_the_same_time_keep_each_box_in_order(store_target: Path | str) -> None:
    """Three workers (threads, each its own connection) get the messages of four boxes dealt round
    robin, in batches, at the same time, with repeats: every message applied once, in order."""
    boxes = [f"ph{n}/c1" for n in range(4)]
    count = 60
    messages = [_event(box, seq, seq - 1 if seq > 1 else None) for seq in range(1, count + 1) for box in boxes]
    repeats = random.Random(7).sample(messages, 40)
    stores = [BackOfficeStore(store_target) for _ in range(3)]
    share: list[list[Incoming]] = [[] for _ in stores]
    for n, message in enumerate(messages + repeats):
        share[n % len(stores)].append(message)
    errors: list[BaseException] = []

    def work(store: BackOfficeStore, mine: list[Incoming]) -> None:
        try:
            for start in range(0, len(mine), 7):
                store.apply(mine[start : start + 7])
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=pair) for pair in zip(stores, share, strict=True)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == []
        for box in boxes:
            assert stores[0].event_keys(box) == [f"{box}:{seq}" for seq in range(1, count + 1)]
            device = stores[0].device(box)
            assert device is not None and device["out_of_order"] == 0
    finally:
        for store in stores:
            store.close()


def test_a_late_online_handled_by_another_worker_does_not_hide_a_newer_offline(store_target: Path | str) -> None:
    store = BackOfficeStore(store_target)
    try:
        store.apply([Incoming("comptoir/ph1/c1/state", b"offline", 200.0)])
        store.apply([Incoming("comptoir/ph1/c1/state", b"online", 100.0)])
        assert (store.device("ph1/c1") or {})["state"] == "offline"
        store.apply([Incoming("comptoir/ph1/c1/telemetry", b'{"versions": {"comptoir": "2"}}', 300.0)])
        store.apply([Incoming("comptoir/ph1/c1/telemetry", b'{"versions": {"comptoir": "1"}}', 250.0)])
        assert (store.device("ph1/c1") or {})["version"] == "2"
    finally:
        store.close()


def test_one_worker_at_a_time_holds_a_lease(store_target: Path | str) -> None:
    store = BackOfficeStore(store_target)
    try:
        assert store.acquire_lease("rollouts", "w1", 100.0, 10.0)
        assert not store.acquire_lease("rollouts", "w2", 105.0, 10.0), "w1 holds it"
        assert store.acquire_lease("rollouts", "w1", 108.0, 10.0), "the holder renews"
        assert store.acquire_lease("rollouts", "w2", 119.0, 10.0), "expired: taken over"
        assert not store.acquire_lease("rollouts", "w1", 120.0, 10.0)
    finally:
        store.close()
