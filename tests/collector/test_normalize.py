from datetime import UTC, datetime, timedelta, timezone

from collector.normalize import Normalizer, point_keys
from core.config import FilterConfig, parse_config
from core.records import Quality, RawSample
from tests.collector import fakes

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)


def config(points: str = "", devices: str = "") -> object:
    import tomllib
    from pathlib import Path

    text = """
[[templates]]
name = "meter"
points = [{ name = "p", unit = "kW", scale = 0.1 }, { name = "q", key = "Q" }]

[[sources]]
name = "s1"
kind = "fake"
points = [
  { name = "volt", key = "40001", scale = 0.1, offset = 1.0, range = [0, 1000] },
  { name = "freq", spike = 1.0 },
]
[[sources.devices]]
name = "m{n}"
count = 2
template = "meter"
"""
    return parse_config(tomllib.loads(text), Path("t.toml"), {"fake": fakes.KIND}, {})


def make() -> tuple[Normalizer, dict[str, int]]:
    cfg = config()
    src = cfg.sources[0]  # type: ignore[attr-defined]
    ids = {p.name: i + 1 for i, p in enumerate(src.points)}
    return Normalizer(src, ids, FilterConfig()), ids


def s(key: str, value: float, received: datetime = T0, device: datetime | None = None,
      quality: Quality = Quality.GOOD) -> RawSample:
    return RawSample("s1", key, value, received, device, quality)


def test_scale_offset_and_ids() -> None:
    n, ids = make()
    [r] = n.normalize([s("40001", 2300)])
    assert r.point_id == ids["volt"]
    assert r.value == 2300 * 0.1 + 1.0
    assert r.ts == T0 and r.received_at == T0 and r.quality == Quality.GOOD


def test_template_points_by_name_and_device_key() -> None:
    n, ids = make()
    out = n.normalize([s("m1.p", 10), s("m2/Q", 3), s("m2.q", 4)])
    assert [r.point_id for r in out] == [ids["m1.p"], ids["m2.q"], ids["m2.q"]]
    assert out[0].value == 1.0
    # "p" is shared by two devices: ambiguous, so not a key on its own
    assert "p" not in point_keys(config().sources[0])  # type: ignore[attr-defined]


def test_device_time_used_when_plausible_and_converted_to_utc() -> None:
    n, _ = make()
    plus5 = timezone(timedelta(hours=5))
    dev = datetime(2026, 3, 1, 16, 59, tzinfo=plus5)  # 11:59 UTC
    [r] = n.normalize([s("freq", 50.0, device=dev)])
    assert r.ts == T0 - timedelta(minutes=1) and r.ts.tzinfo is UTC
    assert r.received_at == T0


def test_future_device_time_is_clock_invalid_and_receive_time_used() -> None:
    n, _ = make()
    [r] = n.normalize([s("freq", 50.0, device=T0 + timedelta(seconds=301))])
    assert r.ts == T0
    assert r.quality == Quality.CLOCK_INVALID
    [r] = n.normalize([s("freq", 50.0, received=T0 + timedelta(seconds=1), device=T0 + timedelta(seconds=299))])
    assert r.quality == Quality.GOOD


def test_naive_device_time_is_not_trusted() -> None:
    n, _ = make()
    [r] = n.normalize([s("freq", 50.0, device=datetime(2026, 3, 1, 11))])
    assert r.ts == T0 and r.quality & Quality.CLOCK_INVALID


def test_driver_quality_kept_and_filters_added() -> None:
    n, _ = make()
    [r] = n.normalize([s("40001", 99999, quality=Quality.INVALID)])
    assert r.quality == Quality.INVALID | Quality.OUT_OF_RANGE


def test_unknown_keys_collected_and_counted() -> None:
    n, _ = make()
    out = n.normalize([s("nope", 1), s("freq", 50), s("nope", 2)])
    assert len(out) == 1
    assert [u.value for u in n.unknown] == [1, 2]
    assert n.unknown_counts["nope"] == 2


def test_add_point_at_run_time() -> None:
    n, _ = make()
    n.add_point("new", 99)
    [r] = n.normalize([s("new", 5)])
    assert r.point_id == 99 and r.value == 5


def test_non_utc_receive_time_converted_for_every_sample_sharing_it() -> None:
    n, _ = make()
    plus5 = timezone(timedelta(hours=5))
    ra = T0.astimezone(plus5)
    out = n.normalize([s("freq", 50.0, received=ra), s("40001", 1.0, received=ra)])
    assert [r.received_at.tzinfo for r in out] == [UTC, UTC]
    assert all(r.received_at == T0 and r.ts == T0 for r in out)
