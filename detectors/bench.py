"""Detector scoring throughput (readings/s): ML batch scoring, rule detectors, the whole service.

`gridwatch bench detectors --points 1000 --days 7 --batch 5000 --batches 100`
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta

import numpy as np

from core.config import PointSpec, ResolvedPoint
from core.records import Quality, Reading

from .config import DetectorsConfig
from .ml import MLScorer, train
from .service import DetectionService


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of the benchmark."""
    p.add_argument("--points", type=int, default=1000, help="number of points")
    p.add_argument("--days", type=float, default=7.0, help="days of 15-min history to train on")
    p.add_argument("--batch", type=int, default=5000, help="readings per scored batch")
    p.add_argument("--batches", type=int, default=50, help="batches to score")
    p.add_argument("--seed", type=int, default=1)


def _history(points: int, days: float, rng: np.random.Generator) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    t0 = datetime(2026, 1, 5, tzinfo=UTC).timestamp()
    n = int(days * 96)
    ts = t0 + np.arange(n) * 900.0
    tod = (ts % 86400) / 86400
    out = {}
    for p in range(points):
        base = 100 + 10 * p % 50
        v = base * (1 + 0.3 * np.sin(2 * np.pi * tod)) + rng.normal(0, 2, n)
        out[p + 1] = (ts, v)
    return out


def run(args: argparse.Namespace) -> int:
    """Train on synthetic history, then time scoring; prints readings/s."""
    rng = np.random.default_rng(args.seed)
    hist = _history(args.points, args.days, rng)
    t = time.perf_counter()
    model = train(hist, trees=100)
    t_train = time.perf_counter() - t
    rows = sum(len(v[1]) for v in hist.values())
    print(f"train: {args.points} points, {rows} rows in {t_train:.2f} s")

    scorer = MLScorer(model)
    n = args.batch
    t0 = datetime(2026, 1, 5, tzinfo=UTC).timestamp() + args.days * 86400
    pids = np.tile(np.arange(1, args.points + 1), n // args.points + 1)[:n].astype(np.int64)
    base = (100 + 10 * (pids - 1) % 50).astype(np.float64)
    for label, shifted in (("typical data", False), ("every reading off its baseline", True)):
        total = 0
        t = time.perf_counter()
        for b in range(args.batches):
            ts_s = t0 + (b * (n // args.points + 1) + np.arange(n) // args.points) * 900.0
            tod = (ts_s % 86400) / 86400
            if shifted:
                vals = 100 + rng.normal(0, 5, n)
            else:
                vals = base * (1 + 0.3 * np.sin(2 * np.pi * tod)) + rng.normal(0, 2, n)
            scorer.score_arrays(pids, ts_s, vals)
            total += n
        dt = time.perf_counter() - t
        print(f"ml scoring (arrays, {label}): {total} readings in {dt:.2f} s = {total / dt:,.0f} readings/s")

    spec = PointSpec.model_validate({"name": "p", "unit": "kW", "interval_s": 900,
                                     "limits": {"hi": 1e9, "lo": -1e9, "deadband": 1}})
    points = {pid: ResolvedPoint(spec=spec,
                                 name=f"p{pid}", key=f"p{pid}", source="bench", device=f"d{pid // 3}",
                                 subject="", zone="", options=None)
              for pid in range(1, args.points + 1)}
    cfg = DetectorsConfig.model_validate({"ml": {"store_scores": False}})
    svc = DetectionService(cfg, points, db=None, alert_sink=None, journal=None, clock=lambda: datetime.now(UTC))
    svc.scorer = MLScorer(model, svc.groups)
    start = datetime.fromtimestamp(t0, UTC)
    now = datetime.now(UTC)
    batches = []
    for b in range(max(1, args.batches // 5)):
        batch = [Reading(int(pids[i]), start + timedelta(seconds=900 * (b * 10 + i // args.points)),
                         float(100 + (i % 7)), Quality.GOOD, now) for i in range(n)]
        batches.append(batch)
    total = 0
    t = time.perf_counter()
    for batch in batches:
        svc.process(batch)
        total += len(batch)
    dt = time.perf_counter() - t
    print(f"service.process (Reading objects, rules + ML): {total} readings in {dt:.2f} s = "
          f"{total / dt:,.0f} readings/s")
    return 0
