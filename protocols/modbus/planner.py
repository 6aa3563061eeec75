"""Request planner: the fewest read requests that cover a device's points (pure logic).

Points of one table are sorted by address and merged greedily while the next point starts
at most `max_gap` registers after the current request ends and the request stays within
`max_registers` (125 for registers, 2000 for bits). Greedy left-to-right is optimal here:
every split it makes is forced by the gap or size limit.

When a merged request answers "illegal data address" (or "illegal data value", which some
meters send for over-long reads), `split()` halves it along point boundaries so the bad point
is found in O(log n) further requests; a single point that still fails is remembered in
`BadAddresses` and left out of later plans until its entry expires.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

REGISTER_LIMIT = 125
BIT_LIMIT = 2000


@dataclass(frozen=True, slots=True)
class Item:
    """One point to read: its index in the device's point list and its register span."""

    index: int
    table: str
    address: int
    words: int

    @property
    def end(self) -> int:
        """One past the last register (or bit) of the point."""
        return self.address + self.words


@dataclass(frozen=True, slots=True)
class Request:
    """One read request: `count` registers (or bits) of `table` from `address`."""

    table: str
    address: int
    count: int
    items: tuple[Item, ...]

    @property
    def end(self) -> int:
        """One past the last register of the request."""
        return self.address + self.count

    def describe(self) -> str:
        """E.g. 'holding 100..159' for events and errors."""
        return f"{self.table} {self.address}..{self.end - 1}"


def _is_bit_table(table: str) -> bool:
    return table in ("coil", "discrete")


def plan(
    items: Iterable[Item],
    *,
    max_registers: int = REGISTER_LIMIT,
    max_bits: int = BIT_LIMIT,
    max_gap: int = 8,
    skip: Collection[tuple[str, int]] = (),
    holes: Collection[tuple[str, int, int]] = (),
) -> list[Request]:
    """Merge `items` into the fewest requests; items whose (table, address) is in `skip` are left out.

    A request never spans the registers of a skipped item (they answered "illegal data
    address"), nor a learned hole (table, lo, hi) - a gap between points the device refused
    to read across - even where the gap limit would allow it.

    An item longer than the limit gets a request of its own (the device will refuse it; the
    driver validates this at start-up). Requests come out ordered by table, then address.
    """
    if max_registers < 1 or max_bits < 1 or max_gap < 0:
        raise ValueError("max_registers and max_bits must be >= 1 and max_gap >= 0")
    by_table: dict[str, list[Item]] = {}
    blocked: dict[str, list[tuple[int, int]]] = {}  # spans never to read across
    for it in items:
        if (it.table, it.address) in skip:
            blocked.setdefault(it.table, []).append((it.address, it.end))
            continue
        by_table.setdefault(it.table, []).append(it)
    for table, lo, hi in holes:
        blocked.setdefault(table, []).append((lo, hi))
    out: list[Request] = []
    for table in sorted(by_table):
        limit = max_bits if _is_bit_table(table) else max_registers
        gap = max_gap * 16 if _is_bit_table(table) else max_gap
        cur: list[Item] = []
        start = end = 0
        table_holes = blocked.get(table, [])
        for it in sorted(by_table[table], key=lambda i: (i.address, i.index)):
            if cur and it.address - end <= gap and max(end, it.end) - start <= limit \
                    and not any(h0 < it.address and h1 > end for h0, h1 in table_holes):
                cur.append(it)
                end = max(end, it.end)
                continue
            if cur:
                out.append(Request(table, start, end - start, tuple(cur)))
            cur, start, end = [it], it.address, it.end
        if cur:
            out.append(Request(table, start, end - start, tuple(cur)))
    return out


def tighten(table: str, items: Iterable[Item]) -> Request:
    """The smallest request covering `items`."""
    its = tuple(sorted(items, key=lambda i: (i.address, i.index)))
    if not its:
        raise ValueError("no items")
    start = its[0].address
    end = max(i.end for i in its)
    return Request(table, start, end - start, its)


def split(req: Request) -> list[Request]:
    """Two smaller requests along point boundaries; [] when `req` holds a single address."""
    its = req.items
    starts = sorted({i.address for i in its})
    if len(starts) < 2:
        return []
    pivot = starts[len(starts) // 2]
    left = [i for i in its if i.address < pivot]
    right = [i for i in its if i.address >= pivot]
    return [tighten(req.table, left), tighten(req.table, right)]


class BadAddresses:
    """Addresses of one device that answered "illegal data address", with an expiry.

    Times are plain seconds (any monotonic or epoch clock the caller uses consistently).
    """

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._until: dict[tuple[str, int], float] = {}
        self._holes: dict[tuple[str, int, int], float] = {}
        self.version = 0

    def remember_hole(self, table: str, lo: int, hi: int, now: float) -> None:
        """Never read across registers [lo, hi) of `table` until `now + ttl_s`."""
        if (table, lo, hi) not in self._holes:
            self.version += 1
        self._holes[(table, lo, hi)] = now + self.ttl_s

    def holes(self, now: float) -> frozenset[tuple[str, int, int]]:
        """The learned holes still in force at `now`."""
        expired = [k for k, t in self._holes.items() if t <= now]
        for k in expired:
            del self._holes[k]
        return frozenset(self._holes)

    def remember(self, table: str, address: int, now: float) -> None:
        """Leave (table, address) out of plans until `now + ttl_s`."""
        if (table, address) not in self._until:
            self.version += 1
        self._until[(table, address)] = now + self.ttl_s

    def active(self, now: float) -> frozenset[tuple[str, int]]:
        """The addresses still to skip at `now` (expired ones are forgotten)."""
        expired = [k for k, t in self._until.items() if t <= now]
        for k in expired:
            del self._until[k]
        if expired:
            self.version += 1
        return frozenset(self._until)

    def __contains__(self, key: object) -> bool:
        return key in self._until

    def __len__(self) -> int:
        return len(self._until)
