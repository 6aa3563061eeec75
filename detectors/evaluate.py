"""Offline evaluation: NAB corpus scoring and scoring of the simulators' labelled faults.

`evaluate_nab` runs a streaming detector over every file (a fresh detector object per file,
fed in causal chunks), optionally writes `timestamp,value,anomaly_score` CSVs, and scores the
result with `detectors.nab`. `evaluate_faults` runs the per-point stream detectors over a
readings CSV and matches detections against fault labels (JSON lines
`{"point", "start", "end", "kind"}`), reporting precision, recall and detection delay per kind.
"""

from __future__ import annotations

import csv
import inspect
import json
import statistics
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from . import nab
from .online import DETECTORS, FloatArray


class StreamDetector(Protocol):
    """A streaming detector: `score(values) -> scores`, called with consecutive causal chunks."""

    def score(self, values: Sequence[float] | FloatArray) -> FloatArray: ...


def run_stream(factory: Callable[[], Any], values: FloatArray, chunk: int = 1024,
               times: FloatArray | None = None) -> FloatArray:
    """Score a series as a stream: one fresh detector, fed `chunk` rows at a time, in order.

    `times` (epoch seconds) are passed to detectors whose `score` accepts them.
    """
    det = factory()
    takes_times = times is not None and "times" in inspect.signature(det.score).parameters
    out = np.empty(len(values))
    for i in range(0, len(values), chunk):
        if takes_times:
            assert times is not None
            out[i:i + chunk] = det.score(values[i:i + chunk], times[i:i + chunk])
        else:
            out[i:i + chunk] = det.score(values[i:i + chunk])
    return np.clip(out, 0.0, 1.0)


@dataclass
class NabReport:
    """Results of a NAB evaluation."""

    detector: str
    files: int
    rows: int
    windows: int
    results: dict[str, nab.ProfileResult]

    def as_text(self) -> str:
        lines = [f"detector {self.detector}: {self.files} files, {self.rows} rows, {self.windows} windows"]
        for name, r in self.results.items():
            lines.append(f"  {name:20s} score {r.normalized:7.2f}  threshold {r.threshold:.6f}  "
                         f"raw {r.raw:8.3f}  TP {r.tp} FP rows {r.fp} FN {r.fn}")
        return "\n".join(lines)


def evaluate_nab(data: Path, windows: Path, *, detector: str = "ensemble", emit: Path | None = None,
                 factory: Callable[[], Any] | None = None) -> NabReport:
    """Score `detector` on a NAB-format corpus; write per-file CSVs under `emit` if given."""
    files = nab.load_corpus(data, windows)
    make = factory or DETECTORS[detector]
    scores: dict[str, FloatArray] = {}
    for f in files:
        s = run_stream(make, f.values, times=f.times)
        scores[f.key] = s
        if emit is not None:
            out = emit / f.key
            out.parent.mkdir(parents=True, exist_ok=True)
            with out.open("w", newline="") as fh:
                w = csv.writer(fh)
                w.writerow(["timestamp", "value", "anomaly_score"])
                for ts, v, sc in zip(f.timestamps, f.values, s, strict=True):
                    w.writerow([ts, format(float(v), ".12g"), f"{sc:.6f}"])
    # Score the rounded values as written so emitted files reproduce the scores exactly.
    scores = {k: np.round(v, 6) for k, v in scores.items()}
    return NabReport(detector, len(files), sum(f.n for f in files), sum(len(f.windows) for f in files),
                     nab.score_all(files, scores))


# -- labelled faults ------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class FaultLabel:
    """One injected fault: point (name or id as text), interval and kind."""

    point: str
    start: datetime
    end: datetime
    kind: str


def _aware(text: str) -> datetime:
    t = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def read_labels(path: Path) -> list[FaultLabel]:
    """Read JSON-lines labels; errors name the file, line and field."""
    out = []
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{lineno}: not JSON: {e}") from e
        try:
            out.append(FaultLabel(str(obj["point"]), _aware(str(obj["start"])), _aware(str(obj["end"])),
                                  str(obj.get("kind", "fault"))))
        except KeyError as e:
            raise ValueError(f"{path}:{lineno}: field {e.args[0]!r} is missing") from e
        except ValueError as e:
            raise ValueError(f"{path}:{lineno}: bad timestamp: {e}") from e
    return out


def read_readings(path: Path) -> dict[str, tuple[list[datetime], FloatArray]]:
    """Read a readings CSV with columns point (or point_id / point_name), ts (or timestamp), value."""
    series: dict[str, tuple[list[datetime], list[float]]] = defaultdict(lambda: ([], []))
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        cols = reader.fieldnames or []
        pcol = next((c for c in ("point", "point_name", "point_id", "name") if c in cols), None)
        tcol = next((c for c in ("ts", "timestamp", "time") if c in cols), None)
        if pcol is None or tcol is None or "value" not in cols:
            raise ValueError(f"{path}: header needs point, ts and value columns (got {cols})")
        for lineno, row in enumerate(reader, start=2):
            try:
                ts = _aware(row[tcol])
                v = float(row["value"])
            except ValueError as e:
                raise ValueError(f"{path}:{lineno}: {e}") from e
            s = series[row[pcol]]
            s[0].append(ts)
            s[1].append(v)
    out = {}
    for p, (ts_l, v_l) in series.items():
        order = sorted(range(len(ts_l)), key=ts_l.__getitem__)
        out[p] = ([ts_l[i] for i in order], np.asarray([v_l[i] for i in order], dtype=np.float64))
    return out


@dataclass
class KindResult:
    """Per fault kind: counts and delays."""

    kind: str
    faults: int = 0
    detected: int = 0
    delays_s: list[float] = field(default_factory=list)
    delays_intervals: list[float] = field(default_factory=list)

    @property
    def recall(self) -> float:
        return self.detected / self.faults if self.faults else 0.0


@dataclass
class FaultReport:
    """Precision over all detections; recall and delay per fault kind."""

    detections: int
    true_detections: int
    kinds: dict[str, KindResult]

    @property
    def precision(self) -> float:
        return self.true_detections / self.detections if self.detections else 0.0

    def as_text(self) -> str:
        lines = [f"detections {self.detections}, inside a fault {self.true_detections}, "
                 f"precision {self.precision:.3f}"]
        for k in sorted(self.kinds):
            r = self.kinds[k]
            d = f"median delay {statistics.median(r.delays_s):.1f} s " \
                f"({statistics.median(r.delays_intervals):.2f} intervals), max {max(r.delays_s):.1f} s " \
                f"({max(r.delays_intervals):.2f} intervals)" \
                if r.delays_s else "no delay (nothing detected)"
            lines.append(f"  {k:16s} faults {r.faults:4d} detected {r.detected:4d} recall {r.recall:.3f}  {d}")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {"detections": self.detections, "precision": self.precision,
                "kinds": {k: {"faults": r.faults, "detected": r.detected, "recall": r.recall,
                              "median_delay_s": statistics.median(r.delays_s) if r.delays_s else None,
                              "max_delay_s": max(r.delays_s) if r.delays_s else None,
                              "median_delay_intervals": statistics.median(r.delays_intervals)
                              if r.delays_intervals else None,
                              "max_delay_intervals": max(r.delays_intervals) if r.delays_intervals else None}
                          for k, r in self.kinds.items()}}


class FaultDetector:
    """Causal per-point detector for generic faults without configuration.

    Flags a row when the stream detector's score is high; when the value has not changed for
    `frozen` samples although it changed at >= `frozen_share` of the `frozen_window` steps before
    (a serial number or an unused export register is constant by nature); when the gap since the
    previous row exceeds `gap_factor` x the running median interval (a stale period, flagged on
    the first row after it and timed, in `stale_at`, when the gap passed that limit, as the
    daemon's ticking stale rule raises); or when the value is non-finite or a gross error:
    farther than `gross_factor` robust scales (MAD*1.4826, at least `gross_rel` x |median|) from
    the median of the previous `gross_window` finite values.
    Non-finite values and gross errors are flagged without entering the stream detector: one
    corrupt register (1e30 decoded from random words) would otherwise inflate its running
    variance so much that the point's later faults all go unseen.
    """

    def __init__(self, detector: str = "zscore", threshold: float = 0.9999, frozen: int = 4,
                 gap_factor: float = 2.5, gross_factor: float = 50.0, gross_rel: float = 0.01,
                 gross_window: int = 48, frozen_window: int = 96, frozen_share: float = 0.7) -> None:
        self.stream = DETECTORS[detector]()
        self.frozen_window = frozen_window
        self.frozen_share = frozen_share
        self.threshold = threshold
        self.frozen = frozen
        self.gap_factor = gap_factor
        self.gross_factor = gross_factor
        self.gross_rel = gross_rel
        self.gross_window = gross_window
        self._recent: list[float] = []
        self.stale_at: dict[int, datetime] = {}
        """Row index -> when a ticking stale check would have raised (the gap passed its limit)."""

    def gross(self, values: FloatArray) -> np.ndarray:
        """Rows that are non-finite or gross errors against the finite values before them (causal)."""
        out: np.ndarray = ~np.isfinite(values)
        recent = self._recent
        for i, x in enumerate(values):
            if out[i]:
                continue
            if len(recent) >= 5:
                med = statistics.median(recent)
                scale = max(1.4826 * statistics.median(abs(r - med) for r in recent), self.gross_rel * abs(med),
                            1e-9)
                out[i] = abs(x - med) > self.gross_factor * scale
            recent.append(float(x))
            if len(recent) > self.gross_window:
                del recent[0]
        return out

    def flags(self, ts: Sequence[datetime], values: FloatArray) -> np.ndarray:
        bad = self.gross(values)
        sc = self.stream.score(np.where(bad, np.nan, values))  # non-finite rows never enter its state
        flags: np.ndarray = (sc >= self.threshold) | bad
        same = 1
        changed: deque[bool] = deque(maxlen=self.frozen_window)
        moving = False  # did the point change at nearly every step before the current run?
        gaps: list[float] = []
        for i in range(1, len(values)):
            if values[i] == values[i - 1]:
                if same == 1:
                    moving = len(changed) >= 10 and sum(changed) >= self.frozen_share * len(changed)
                same += 1
            else:
                same = 1
            changed.append(same == 1)
            if same >= self.frozen and moving:
                flags[i] = True
            gap = (ts[i] - ts[i - 1]).total_seconds()
            if len(gaps) >= 5:
                limit = self.gap_factor * statistics.median(gaps[-50:])
                if gap > limit:
                    flags[i] = True
                    self.stale_at[i] = ts[i - 1] + timedelta(seconds=limit)
            gaps.append(gap)
        return flags


def _targets(lab: FaultLabel, point: str) -> bool:
    """A label names a point, or a device covering every point `<device>.<...>`."""
    return point == lab.point or point.startswith(lab.point + ".")


def evaluate_faults(labels: Sequence[FaultLabel], readings: dict[str, tuple[list[datetime], FloatArray]], *,
                    detector: str = "zscore", threshold: float = 0.9999,
                    grace_intervals: float = 2.0, probation_s: float = 0.0) -> FaultReport:
    """Match detections (rising edges of flagged runs) to labelled faults.

    A fault (half-open [start, end)) is detected when a flagged row of a point it covers lies in
    [start, end + `grace_intervals` intervals]; its delay is the earliest such row - start. A
    detection is true when some fault covering its point covers its time the same way.
    With `probation_s`, the detectors learn during the first `probation_s` after the earliest
    reading: faults starting and detections made in that period are not scored (as NAB's
    probationary period).
    """
    t_first = min((ts[0] for ts, _ in readings.values() if ts), default=None)
    scored_from = t_first + timedelta(seconds=probation_s) if t_first is not None else None
    scored = [scored_from is None or lab.start >= scored_from for lab in labels]
    kinds: dict[str, KindResult] = {}
    for lab, ok in zip(labels, scored, strict=True):
        if ok:
            kinds.setdefault(lab.kind, KindResult(lab.kind)).faults += 1
    best: dict[int, tuple[float, float]] = {}  # label index -> (delay s, delay intervals)
    detections = 0
    true_det = 0
    for point, (ts, values) in readings.items():
        if len(values) < 2:
            continue
        interval = statistics.median((ts[i] - ts[i - 1]).total_seconds() for i in range(1, len(ts))) or 1.0
        fd = FaultDetector(detector, threshold)
        flags = fd.flags(ts, values)
        # a stale row also counts from when the gap passed its limit (before the row ending it)
        times = [[fd.stale_at[i], ts[i]] if i in fd.stale_at else [ts[i]] for i in range(len(ts))]
        onsets = [i for i in range(len(flags)) if flags[i] and (i == 0 or not flags[i - 1])]
        flagged_ts = sorted(t for i in np.flatnonzero(flags) for t in times[i])
        labs = [(li, lab) for li, lab in enumerate(labels) if _targets(lab, point)]
        grace = grace_intervals * interval
        for i in onsets:
            ti = times[i]
            if scored_from is not None and ti[0] < scored_from:
                continue
            detections += 1
            if any(lab.start <= t and (t - lab.end).total_seconds() <= grace for _, lab in labs for t in ti):
                true_det += 1
        for li, lab in labs:
            if not scored[li]:
                continue
            hit = next((t for t in flagged_ts if lab.start <= t and (t - lab.end).total_seconds() <= grace), None)
            if hit is not None:
                d = (hit - lab.start).total_seconds()
                if li not in best or d < best[li][0]:
                    best[li] = (d, d / interval)
    for li, (d_s, d_i) in best.items():
        kr = kinds[labels[li].kind]
        kr.detected += 1
        kr.delays_s.append(d_s)
        kr.delays_intervals.append(d_i)
    return FaultReport(detections, true_det, kinds)
