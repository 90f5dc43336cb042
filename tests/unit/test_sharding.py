"""Shards, lease expiry, the selector, and what the operator keeps of each watched body."""

from __future__ import annotations

import uuid
from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from stackscaler.handlers.operator import Packed, _kept, parse_selector, selected
from stackscaler.sharding import Expiry, assign, shard_of

members_st = st.sets(st.from_regex(r"[a-z][a-z0-9-]{0,12}", fullmatch=True), min_size=1, max_size=8)


def test_shard_of_is_stable_across_processes_and_spreads_uids() -> None:
    # a fixed digest, not Python's salted hash(): the same on every replica
    assert shard_of("0b0e4a7e-5f6c-4f7e-9f43-1b2c3d4e5f60", 5) == shard_of(
        "0b0e4a7e-5f6c-4f7e-9f43-1b2c3d4e5f60", 5
    )
    counts = Counter(shard_of(str(uuid.UUID(int=i * 7919)), 5) for i in range(10_000))
    assert set(counts) == {0, 1, 2, 3, 4}
    assert min(counts.values()) > 1_700  # 2,000 each on average


@given(shards=st.integers(1, 64), members=members_st)
def test_every_shard_has_one_owner_and_the_load_is_balanced(shards: int, members: set[str]) -> None:
    plan = assign(shards, members)
    assert sorted(plan) == list(range(shards))
    assert set(plan.values()) <= members
    load = Counter(plan.values())
    base, extra = divmod(shards, len(members))
    assert all(load[m] in (base, base + 1) for m in members)
    assert sum(1 for m in members if load[m] == base + 1) == extra
    if shards >= len(members):
        assert len(load) == len(members)  # nobody idle while there is work


@given(shards=st.integers(1, 64), members=members_st)
def test_the_plan_depends_only_on_the_set_of_members(shards: int, members: set[str]) -> None:
    assert assign(shards, sorted(members)) == assign(shards, sorted(members, reverse=True))


def test_a_member_leaving_moves_few_shards() -> None:
    members = [f"replica-{i}" for i in range(5)]
    before = assign(60, members)
    after = assign(60, members[:-1])
    moved = sum(1 for s in range(60) if before[s] != after[s])
    gone = sum(1 for s in range(60) if before[s] == "replica-4")
    assert gone == 12
    assert moved < 30  # far from a reshuffle of all 60


def test_no_members_no_plan() -> None:
    assert assign(3, []) == {}


def test_a_lease_expires_only_after_its_duration_unchanged_on_our_clock() -> None:
    e = Expiry()
    e.observe("shard-0", "100", "a", 15.0, now=1000.0)
    assert not e.free("shard-0", 1014.9)
    assert e.holder("shard-0", 1014.9) == "a"
    e.observe("shard-0", "101", "a", 15.0, now=1010.0)  # renewed: the clock restarts
    assert not e.free("shard-0", 1024.0)
    assert e.free("shard-0", 1025.1)
    assert e.holder("shard-0", 1025.1) == ""
    e.observe("shard-0", "102", "", 15.0, now=1030.0)  # released: free at once
    assert e.free("shard-0", 1030.0)
    assert e.free("never-seen", 0.0)


def test_the_first_sight_of_an_old_lease_still_waits_a_whole_duration() -> None:
    # a replica that just started cannot tell how old the renewal is: it waits
    e = Expiry()
    e.observe("shard-0", "7", "a", 15.0, now=5.0)
    assert not e.free("shard-0", 19.0)
    e.forget_except([])
    assert e.free("shard-0", 19.0)


def test_selector_matching_follows_labels_on_every_event() -> None:
    sel = parse_selector("team=web,shard")
    body = {"metadata": {"labels": {"team": "web", "shard": "a"}}}
    assert selected(sel, body)
    assert not selected(sel, {"metadata": {"labels": {"team": "db", "shard": "a"}}})
    assert not selected(sel, {"metadata": {"labels": {"team": "web"}}})
    assert selected((), {"metadata": {}})


def test_the_operator_keeps_no_managed_fields_or_last_applied_copy() -> None:
    body = {
        "kind": "WebTier",
        "metadata": {
            "uid": "u",
            "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
            "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": "{...}",
                "stackscaler.dev/paused": "true",
            },
        },
        "spec": {"minCapacity": 1},
    }
    kept = _kept(body)
    assert "managedFields" not in kept["metadata"]
    assert kept["metadata"]["annotations"] == {"stackscaler.dev/paused": "true"}
    assert kept["spec"] == body["spec"] and kept["spec"] is not body["spec"]  # a deep copy
    assert "managedFields" in body["metadata"]  # the watched body is left alone


def test_the_next_expiry_is_the_soonest_lease_held_by_someone_else() -> None:
    e = Expiry()
    assert e.next_expiry(0.0) is None
    e.observe("member-me", "1", "me", 15.0, now=0.0)
    e.observe("shard-0", "2", "b", 15.0, now=3.0)
    e.observe("shard-1", "3", "c", 15.0, now=1.0)
    e.observe("shard-2", "4", "", 15.0, now=0.0)  # free already: nothing to wait for
    assert e.next_expiry(2.0, ignore="me") == 16.0
    e.observe("shard-1", "5", "c", 15.0, now=4.0)  # renewed: its expiry moves on
    assert e.next_expiry(4.0, ignore="me") == 18.0
    assert e.next_expiry(18.5, ignore="me") == 19.0
    assert e.next_expiry(19.5, ignore="me") is None  # expired ones are free, not due
    assert e.next_expiry(2.0) == 15.0  # this replica's own lease, unless ignored
    e.forget("shard-0")
    assert e.seen("shard-0") is None
    assert e.next_expiry(4.0, ignore="me") == 19.0


def test_a_resource_kept_for_another_shard_comes_back_as_it_was_seen() -> None:
    body = {
        "apiVersion": "stackscaler.dev/v1alpha1",
        "kind": "WebTier",
        "metadata": {
            "uid": "u",
            "name": "web\u2028<script>",
            "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{...}"},
        },
        "spec": {"minCapacity": 1, "metrics": [{"name": "cpu", "target": 50.5}]},
        "status": {"history": {"events": [[1, 2]]}, "lastDecision": {"reasons": ["\udcff"]}},
    }
    packed = Packed.of(body)
    back = packed.body()
    assert back["spec"] == body["spec"] and back["status"]["history"] == {"events": [[1, 2]]}
    assert back["metadata"] == {"uid": "u", "name": "web\u2028<script>", "annotations": {}}
    assert len(packed.data) < 400


def test_a_lease_is_gone_only_when_held_and_unrenewed_for_that_many_durations() -> None:
    e = Expiry()
    e.observe("member-b", "1", "b", 15.0, now=100.0)
    assert not e.gone_for("member-b", 159.9, 4)
    assert e.gone_for("member-b", 160.1, 4)
    e.observe("member-b", "2", "b", 15.0, now=160.0)  # renewed: back again
    assert not e.gone_for("member-b", 200.0, 4)
    e.observe("shard-0", "3", "", 15.0, now=0.0)  # released, not gone
    assert not e.gone_for("shard-0", 1000.0, 4)
    assert not e.gone_for("never-seen", 1000.0, 4)
