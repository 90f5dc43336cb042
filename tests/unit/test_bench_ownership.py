"""bench/ownership.py: the evidence `bench.scale --replicas` gives for one owner at a time."""

from __future__ import annotations

from bench.ownership import (
    OwnerLog,
    first_take,
    held_at,
    joined,
    owned_at,
    ownership,
    shard_moves,
    taken_over,
)


def _log(*scrapes: tuple[str, dict[str, float]]) -> OwnerLog:
    log = OwnerLog()
    for replica, gauges in scrapes:
        log.add(replica, gauges)
    return log


def test_a_clean_handover_is_one_run_per_owner() -> None:
    log = _log(
        ("a", {"t1": 100.0, "t2": 101.0}),
        ("a", {"t1": 130.0, "t2": 131.0}),  # a second scrape: a's next decisions
        ("b", {"t1": 170.0}),  # b took t1 over
        ("b", {"t1": 200.0}),
    )
    found = ownership(log, ["t1", "t2"], close=1.0)
    assert (found.tiers, found.handovers, found.split, found.close) == (2, 1, (), ())
    assert found.shortest_handover == 40.0


def test_an_owner_that_acts_again_after_another_splits_the_tier() -> None:
    log = _log(("a", {"t1": 100.0}), ("b", {"t1": 130.0}), ("a", {"t1": 160.0}))
    found = ownership(log, ["t1"], close=1.0)
    assert found.split == ("t1",)


def test_two_owners_deciding_at_about_the_same_time_are_flagged_close() -> None:
    log = _log(("a", {"t1": 100.0}), ("b", {"t1": 100.4}))
    found = ownership(log, ["t1", "never-decided"], close=1.0)
    assert found.close == (("t1", 0.4),)
    assert found.tiers == 1  # a tier no replica decided is not counted as seen


def test_a_zero_gauge_is_not_a_decision() -> None:
    log = _log(("a", {"t1": 0.0}))
    assert log.sequence("t1") == []


def test_taken_over_measures_from_the_kill_and_names_orphans() -> None:
    log = _log(
        ("a", {"t1": 100.0, "t2": 105.0}),
        ("b", {"t1": 90.0}),  # before the kill: not a takeover
        ("b", {"t1": 130.0}),
    )
    owned = owned_at(log, "a", 95.0, 110.0)
    assert owned == ["t1", "t2"]
    waited, orphans = taken_over(log, "a", owned, since=110.0)
    assert waited == {"t1": 20.0}
    assert orphans == ["t2"]


def test_joined_counts_only_decisions_after_the_start() -> None:
    log = _log(("c", {"t1": 50.0}), ("c", {"t1": 80.0, "t2": 95.0}))
    assert joined(log, "c", since=60.0) == {"t1": 20.0, "t2": 35.0}


def test_shard_moves_from_json_log_records() -> None:
    records = [
        {"time": "2026-11-29T05:00:00.000Z", "logger": "stackscaler.leases",
         "message": "took shard 3 (lease bench-shard-3)"},
        {"time": "2026-11-29T05:00:10.500Z", "logger": "stackscaler.leases",
         "message": "shard 3 handed over to the replica the plan gives it to"},
        {"time": "2026-11-29T05:00:05.000Z", "logger": "stackscaler.leases",
         "message": "took shard 1 (lease bench-shard-1)"},
        {"time": "2026-11-29T05:00:06.000Z", "logger": "other",
         "message": "took shard 2 (lease bench-shard-2)"},  # not the leases' logger
        {"time": 7, "logger": "stackscaler.leases", "message": "took shard 4 (lease x)"},
    ]  # fmt: skip
    moves = shard_moves(records)
    t0 = 1795928400.0  # 2026-11-29T05:00:00Z
    assert moves == [(t0, "took", 3), (t0 + 5, "took", 1), (t0 + 10.5, "gave", 3)]
    assert held_at(moves, t0 + 6) == {1, 3}
    assert held_at(moves, t0 + 11) == {1}
    others = {"b": [(t0 + 20, "took", 3)], "c": [(t0 + 25, "took", 3), (t0 + 30, "took", 1)]}
    assert first_take(others, 3, since=t0 + 11) == ("b", t0 + 20)
    assert first_take(others, 0, since=t0) is None


def test_the_latest_decision_counts_a_killed_replicas_too() -> None:
    log = _log(("a", {"t1": 100.0, "t2": 90.0}), ("b", {"t1": 95.0}))
    assert log.last == {"t1": 100.0, "t2": 90.0}  # b's older scrape does not move t1 back
