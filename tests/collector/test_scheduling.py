import tomllib
from pathlib import Path

from collector.agent import DEFAULT_TICK_S, next_tick, source_tick
from core.config import parse_config
from tests.collector import fakes


def src(options: str, points: str = "[{ name = 'a' }]") -> object:
    text = f"[[sources]]\nname = 's'\nkind = 'fake'\noptions = {{ {options} }}\npoints = {points}\n"
    return parse_config(tomllib.loads(text), Path("t.toml"), {"fake": fakes.KIND}, {}).sources[0]


def test_next_tick_is_aligned_with_stagger() -> None:
    assert next_tick(1000.0, 15.0, 0.0) == 1005.0
    assert next_tick(1005.0, 15.0, 0.0) == 1020.0  # strictly after now
    assert next_tick(1000.0, 15.0, 2.5) == 1007.5
    assert next_tick(1008.0, 15.0, 2.5) == 1022.5
    assert next_tick(1000.0, 900.0, 30.0) == 1830.0


def test_source_tick_is_the_smallest_interval() -> None:
    assert source_tick(src("interval_s = 5")) == 5.0  # type: ignore[arg-type]
    assert source_tick(src("interval_s = 60", "[{ name = 'a', interval_s = 2 }]")) == 2.0  # type: ignore[arg-type]


def test_default_tick() -> None:
    class Opts:
        pass

    from core.config import ResolvedSource

    s = ResolvedSource(name="x", kind="k", options=Opts(), devices=(), points=())
    assert source_tick(s) == DEFAULT_TICK_S
