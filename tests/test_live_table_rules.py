"""The table's rules on their own (no server): who may act under each policy as
people sit down, change seats, leave, and the policy changes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from taleweaver.domain import table as t
from taleweaver.domain.errors import Conflict, Forbidden
from taleweaver.domain.events import NewEvent, RecordedEvent


def recorded(events: list[NewEvent]) -> list[RecordedEvent]:
    now = datetime.now(UTC)
    return [
        RecordedEvent("table:s", "w", i, i, str(e.type), 1, e.payload, {}, now)
        for i, e in enumerate(events, start=1)
    ]


def table_of(*events: NewEvent) -> t.Table:
    return t.fold("s", recorded(list(events)))


def players(*names: str) -> list[NewEvent]:
    return [t.seated(t.Seat(name, t.Role.PLAYER)) for name in names]


def test_round_robin_goes_round_in_seating_order_and_skips_who_left() -> None:
    events = [t.opened("gm", t.Policy.ROUND_ROBIN), *players("ann", "bob", "cy")]
    turns = []
    for _ in range(4):
        table = table_of(*events)
        who = table.next_player()
        assert who is not None and table.admit(who).runs_now
        turns.append(who)
        events.append(t.acted(who, f"turn-{len(turns)}"))
    assert turns == ["ann", "bob", "cy", "ann"]
    events.append(t.left("bob"))  # bob was next: cy comes after ann now
    table = table_of(*events)
    assert table.next_player() == "cy"
    with pytest.raises(Conflict, match="waits for cy"):
        table.admit("ann")


def test_a_changed_seat_keeps_its_place_and_the_game_master_acts_any_time() -> None:
    events = [t.opened("gm", t.Policy.ROUND_ROBIN), *players("ann", "bob")]
    events.append(t.seated(t.Seat("ann", t.Role.PLAYER, "Vex")))
    table = table_of(*events)
    assert table.players == ["ann", "bob"]
    assert table.seats["ann"].character == "Vex"
    assert table.admit("gm").runs_now
    table = table_of(*events, t.acted("gm", "turn-1"))
    assert table.next_player() == "ann"  # the game master's turns move no one on


def test_observers_and_strangers_never_act_and_approval_makes_proposals() -> None:
    events = [
        t.opened("gm", t.Policy.GM_APPROVES),
        *players("ann"),
        t.seated(t.Seat("cy", t.Role.OBSERVER)),
    ]
    table = table_of(*events)
    assert not table.admit("ann").runs_now
    for who in ("cy", "zed"):
        with pytest.raises(Forbidden):
            table.admit(who)
    full = [t.proposed(t.Proposal(f"p{i}", "ann", "hm")) for i in range(t.MAX_PENDING)]
    with pytest.raises(Conflict, match="too many"):
        table_of(*events, *full).admit("ann")
    settled = table_of(*events, *full, t.decided("p0", approved=False))
    assert "p0" not in settled.pending and not settled.admit("ann").runs_now


def test_a_new_policy_applies_at_once() -> None:
    events = [t.opened("gm", t.Policy.GM_APPROVES), *players("ann", "bob")]
    events += [t.policy_set(t.Policy.ROUND_ROBIN), t.acted("ann", "turn-1")]
    table = table_of(*events)
    assert table.policy == t.Policy.ROUND_ROBIN and table.next_player() == "bob"
    table = table_of(*events, t.policy_set(t.Policy.FREE))
    assert table.admit("ann").runs_now and table.admit("bob").runs_now
