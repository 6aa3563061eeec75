"""Request planner (pure): merging, limits, gaps, splitting, remembered bad addresses."""

from __future__ import annotations

import functools

from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.modbus.planner import BadAddresses, Item, Request, plan, split


def items(*spans: tuple[int, int], table: str = "holding") -> list[Item]:
    return [Item(i, table, a, w) for i, (a, w) in enumerate(spans)]


def test_contiguous_points_make_one_request() -> None:
    reqs = plan(items((0, 2), (2, 2), (4, 1), (5, 4)))
    assert [(r.address, r.count) for r in reqs] == [(0, 9)]


def test_gap_limit_splits_and_merges() -> None:
    its = items((0, 2), (10, 2), (30, 2))
    assert [(r.address, r.count) for r in plan(its, max_gap=8)] == [(0, 12), (30, 2)]
    assert [(r.address, r.count) for r in plan(its, max_gap=0)] == [(0, 2), (10, 2), (30, 2)]
    assert [(r.address, r.count) for r in plan(its, max_gap=18)] == [(0, 32)]


def test_request_size_limit_and_tables_are_separate() -> None:
    its = [Item(i, "input", 2 * i, 2) for i in range(100)]  # 200 registers
    reqs = plan(its, max_registers=125)
    assert [(r.address, r.count) for r in reqs] == [(0, 124), (124, 76)]
    mixed = [*items((0, 1)), Item(1, "input", 0, 1), Item(2, "coil", 5, 1), Item(3, "coil", 50, 1), Item(4, "coil", 200, 1)]
    reqs = plan(mixed, max_gap=4)
    assert [(r.table, r.address, r.count) for r in reqs] == [
        ("coil", 5, 46), ("coil", 200, 1), ("holding", 0, 1), ("input", 0, 1)]  # bit gaps x16


def test_overlapping_points_share_registers() -> None:
    its = items((31, 1), (31, 1), (30, 2))  # two bit fields of one register and a 32-bit value
    (r,) = plan(its)
    assert (r.address, r.count) == (30, 2) and len(r.items) == 3


def test_skip_and_split() -> None:
    its = items((0, 2), (2, 2), (4, 2), (6, 2))
    (r,) = plan(its)
    left, right = split(r)
    assert (left.address, left.count, right.address, right.count) == (0, 4, 4, 4)
    assert split(Request("holding", 0, 2, (its[0],))) == []
    reqs = plan(its, skip={("holding", 2)})
    assert [(r.address, r.count) for r in reqs] == [(0, 2), (4, 4)]  # never across a bad register
    assert [i.index for r in reqs for i in r.items] == [0, 2, 3]


def test_learned_holes_are_never_spanned() -> None:
    its = items((0, 2), (4, 2), (10, 2))
    assert [(r.address, r.count) for r in plan(its)] == [(0, 12)]
    reqs = plan(its, holes={("holding", 2, 4)})
    assert [(r.address, r.count) for r in reqs] == [(0, 2), (4, 8)]
    assert [(r.address, r.count) for r in plan(its, holes={("input", 2, 4)})] == [(0, 12)]
    bad = BadAddresses(ttl_s=10)
    bad.remember_hole("holding", 2, 4, now=0)
    assert bad.holes(5) == {("holding", 2, 4)} and bad.holes(10) == frozenset()


def test_bisection_finds_a_bad_point_in_log_steps() -> None:
    its = [Item(i, "holding", 2 * i, 2) for i in range(60)]
    bad = 37
    queue = plan(its)
    found = []
    requests = 0
    while queue:
        r = queue.pop(0)
        requests += 1
        if any(i.index == bad for i in r.items):
            parts = split(r)
            if parts:
                queue = parts + queue
            else:
                found.append(r.items[0].index)
    assert found == [bad]
    assert requests <= 2 * 7 + 1


def test_bad_addresses_expire() -> None:
    bad = BadAddresses(ttl_s=100)
    bad.remember("holding", 7, now=1000)
    assert ("holding", 7) in bad
    assert bad.active(1050) == {("holding", 7)}
    v = bad.version
    assert bad.active(1100) == frozenset()
    assert bad.version > v and len(bad) == 0


def _optimal(spans: list[tuple[int, int]], limit: int, gap: int) -> int:
    spans = sorted(spans)

    @functools.cache
    def best(i: int) -> int:
        if i == len(spans):
            return 0
        out = 10**9
        start = spans[i][0]
        end = spans[i][0] + spans[i][1]
        for j in range(i, len(spans)):
            if j > i:
                if spans[j][0] - end > gap:
                    break
                end = max(end, spans[j][0] + spans[j][1])
            if end - start > limit:
                break
            out = min(out, 1 + best(j + 1))
        return out

    return best(0)


@settings(max_examples=200, deadline=None)
@given(
    spans=st.lists(st.tuples(st.integers(0, 400), st.sampled_from([1, 2, 4])), min_size=1, max_size=25),
    limit=st.integers(4, 125),
    gap=st.integers(0, 20),
)
def test_plan_covers_everything_within_limits_with_the_fewest_requests(
        spans: list[tuple[int, int]], limit: int, gap: int) -> None:
    its = items(*spans)
    reqs = plan(its, max_registers=limit, max_gap=gap)
    covered = sorted(i.index for r in reqs for i in r.items)
    assert covered == list(range(len(its)))
    for r in reqs:
        assert r.count <= limit
        for i in r.items:
            assert r.address <= i.address and i.end <= r.end
    assert len(reqs) == _optimal(spans, limit, gap)
