"""ML detectors for the pipeline: a per-point seasonal baseline and a multivariate IsolationForest.

* `SeasonalBaseline`: per point, robust statistics (median and MAD) of the value in each slot of
  (day type × time of day) — day type is weekday / Saturday / Sunday, the slot is `slot_minutes`
  long. The forecast of a reading is its slot's median; the residual in robust sigma units
  (MAD·1.4826, floored) gives a score in [0, 1] (two-sided Gaussian tail).
* `MultivariateModel`: an IsolationForest over per-reading features: the baseline residual z,
  the rate of change (z of the first difference against the point's typical difference), and a
  cross-point feature (z minus the median z of the same device's points in the same batch:
  one phase behaving unlike its sister phases).
* `MLScorer` scores batches vectorised with numpy (no Python loop per reading): arrays of
  point index, timestamp and value in, an array of scores out. The reading's score is
  max(baseline score, forest score).

Training takes history arrays (from the archive or the service's in-memory history); models
serialise to bytes (`to_bytes` / `from_bytes`) for storage.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import numpy.typing as npt
from sklearn.ensemble import IsolationForest

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

MODEL_NAME = "seasonal+iforest"
_MAD_K = 1.4826


def _erfc(x: FloatArray) -> FloatArray:
    """erfc for x >= 0 (Abramowitz & Stegun 7.1.26, |error| < 1.5e-7), vectorised."""
    t = 1.0 / (1.0 + 0.3275911 * x)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return np.asarray(poly * np.exp(-x * x), dtype=np.float64)


def z_to_score(z: FloatArray) -> FloatArray:
    """Two-sided Gaussian tail score: 0 at z = 0, → 1 as |z| grows."""
    return 1.0 - _erfc(np.abs(z) / np.sqrt(2.0))


def slot_index(ts_s: FloatArray, slot_minutes: int) -> IntArray:
    """Slot of (day type × time of day) for epoch seconds (UTC). Day types: Mon-Fri, Sat, Sun."""
    day = np.floor(ts_s / 86400.0).astype(np.int64)
    dow = (day + 3) % 7  # 1970-01-01 was a Thursday; 0 = Monday
    day_type = np.where(dow < 5, 0, dow - 4)  # 0 weekday, 1 Saturday, 2 Sunday
    per_day = 1440 // slot_minutes
    tod = ((ts_s - day * 86400.0) // (slot_minutes * 60)).astype(np.int64)
    return np.asarray(day_type * per_day + np.minimum(tod, per_day - 1), dtype=np.int64)


def epoch_seconds(ts: Sequence[datetime]) -> FloatArray:
    """Aware datetimes to float epoch seconds."""
    return np.fromiter((t.timestamp() for t in ts), dtype=np.float64, count=len(ts))


@dataclass
class SeasonalBaseline:
    """Robust per-point, per-slot median and MAD (see module docstring)."""

    slot_minutes: int = 15
    min_count: int = 3
    median: FloatArray = field(default_factory=lambda: np.zeros((0, 0)))
    scale: FloatArray = field(default_factory=lambda: np.zeros((0, 0)))
    diff_scale: FloatArray = field(default_factory=lambda: np.zeros(0))

    @property
    def n_slots(self) -> int:
        return 3 * (1440 // self.slot_minutes)

    def fit(self, n_points: int, idx: IntArray, ts_s: FloatArray, values: FloatArray) -> SeasonalBaseline:
        """Fit from history arrays (point index, epoch seconds, value), any order."""
        ns = self.n_slots
        med = np.full((n_points, ns), np.nan)
        sc = np.full((n_points, ns), np.nan)
        dsc = np.ones(n_points)
        slots = slot_index(ts_s, self.slot_minutes)
        order = np.lexsort((ts_s, idx))
        idx_o, slots_o, v_o = idx[order], slots[order], values[order]
        bounds = np.searchsorted(idx_o, np.arange(n_points + 1))
        for p in range(n_points):
            lo, hi = bounds[p], bounds[p + 1]
            if hi - lo == 0:
                continue
            v = v_o[lo:hi]
            s = slots_o[lo:hi]
            gmed = float(np.median(v))
            gmad = float(np.median(np.abs(v - gmed))) * _MAD_K
            floor = max(gmad * 0.05, abs(gmed) * 1e-4, 1e-9)
            d = np.diff(v)
            if len(d):
                dsc[p] = max(float(np.median(np.abs(d - np.median(d)))) * _MAD_K, floor)
            so = np.argsort(s, kind="stable")
            s_sorted, v_sorted = s[so], v[so]
            cuts = np.flatnonzero(np.diff(s_sorted)) + 1
            for grp_s, grp_v in zip(np.split(s_sorted, cuts), np.split(v_sorted, cuts), strict=True):
                if len(grp_v) < self.min_count:
                    continue
                m = float(np.median(grp_v))
                med[p, grp_s[0]] = m
                sc[p, grp_s[0]] = max(float(np.median(np.abs(grp_v - m))) * _MAD_K, floor)
            # Slots without enough history fall back to the point's global statistics.
            missing = np.isnan(med[p])
            med[p, missing] = gmed
            sc[p, missing] = max(gmad, floor)
        self.median, self.scale, self.diff_scale = med, sc, dsc
        return self

    def residual_z(self, idx: IntArray, ts_s: FloatArray, values: FloatArray) -> tuple[FloatArray, FloatArray]:
        """(z, expected) for readings; points without a model give z = 0, expected = value."""
        slots = slot_index(ts_s, self.slot_minutes)
        known = (idx >= 0) & (idx < self.median.shape[0])
        safe = np.where(known, idx, 0)
        if self.median.size == 0:
            return np.zeros(len(values)), values.copy()
        exp = self.median[safe, slots]
        sc = self.scale[safe, slots]
        z = np.where(known, (values - exp) / sc, 0.0)
        return z, np.where(known, exp, values)


def features(baseline: SeasonalBaseline, idx: IntArray, ts_s: FloatArray, values: FloatArray,
             prev_values: FloatArray, groups: IntArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(feature matrix, residual z, expected) for a batch.

    `prev_values` is each reading's previous value of the same point (NaN when unknown);
    `groups` assigns each reading a group (device) for the cross-point feature (-1: none).
    """
    z, expected = baseline.residual_z(idx, ts_s, values)
    known = (idx >= 0) & (idx < len(baseline.diff_scale))
    dsc = baseline.diff_scale[np.where(known, idx, 0)] if len(baseline.diff_scale) else np.ones(len(idx))
    rate = np.where(np.isnan(prev_values), 0.0, (values - np.nan_to_num(prev_values)) / dsc)
    cross = np.zeros(len(values))
    if len(values):
        g = np.where(groups >= 0, groups, -1 - np.arange(len(groups)))  # ungrouped: own group
        uniq, inv = np.unique(g, return_inverse=True)
        sums = np.bincount(inv, weights=z, minlength=len(uniq))
        counts = np.bincount(inv, minlength=len(uniq))
        mean_z = sums / np.maximum(counts, 1)
        cross = np.where(counts[inv] > 1, z - mean_z[inv], 0.0)
    x = np.column_stack([np.clip(z, -50, 50), np.clip(rate, -50, 50), np.clip(cross, -50, 50)])
    return x, z, expected


@dataclass
class MLModel:
    """A trained seasonal baseline plus IsolationForest, with the point ids it covers."""

    point_ids: list[int]
    baseline: SeasonalBaseline
    forest: IsolationForest | None
    forest_lo: float = 0.0
    forest_hi: float = 1.0
    trained_at: datetime | None = None
    version: int = 1

    def index_of(self) -> dict[int, int]:
        return {p: i for i, p in enumerate(self.point_ids)}

    def to_bytes(self) -> bytes:
        """Serialise (pickle of numpy arrays and the sklearn forest: the database is trusted)."""
        buf = io.BytesIO()
        pickle.dump(self, buf, protocol=pickle.HIGHEST_PROTOCOL)
        return buf.getvalue()

    @staticmethod
    def from_bytes(data: bytes) -> MLModel:
        """Inverse of `to_bytes`."""
        obj = pickle.loads(data)  # our own model blobs from our own (trusted) database
        if not isinstance(obj, MLModel):
            raise ValueError("stored model blob is not an MLModel")
        return obj


def train(history: Mapping[int, tuple[FloatArray, FloatArray]], *, slot_minutes: int = 15,
          trees: int = 100, sample: int = 256, seed: int = 0,
          groups: Mapping[int, int] | None = None, trained_at: datetime | None = None,
          version: int = 1) -> MLModel:
    """Train from history {point_id: (epoch seconds, values)} (each sorted by time)."""
    pids = sorted(history)
    idx_parts, ts_parts, v_parts, prev_parts, grp_parts = [], [], [], [], []
    for i, pid in enumerate(pids):
        ts, v = history[pid]
        idx_parts.append(np.full(len(v), i, dtype=np.int64))
        ts_parts.append(np.asarray(ts, dtype=np.float64))
        v_parts.append(np.asarray(v, dtype=np.float64))
        prev = np.empty(len(v))
        if len(v):
            prev[0] = np.nan
            prev[1:] = v[:-1]
        prev_parts.append(prev)
        grp_parts.append(np.full(len(v), (groups or {}).get(pid, -1), dtype=np.int64))
    idx = np.concatenate(idx_parts) if idx_parts else np.zeros(0, dtype=np.int64)
    ts_s = np.concatenate(ts_parts) if ts_parts else np.zeros(0)
    vals = np.concatenate(v_parts) if v_parts else np.zeros(0)
    prev_v = np.concatenate(prev_parts) if prev_parts else np.zeros(0)
    grp = np.concatenate(grp_parts) if grp_parts else np.zeros(0, dtype=np.int64)
    baseline = SeasonalBaseline(slot_minutes=slot_minutes).fit(len(pids), idx, ts_s, vals)
    forest = None
    lo, hi = 0.0, 1.0
    if len(vals) >= 32:
        # The cross feature is computed per timestamp in scoring; in training, per group and ts.
        tgroups = np.where(grp >= 0, grp * 1_000_003 + (ts_s // 60).astype(np.int64), -1)
        x, _, _ = features(baseline, idx, ts_s, vals, prev_v, tgroups)
        forest = IsolationForest(n_estimators=trees, max_samples=min(sample, len(vals)), random_state=seed)
        forest.fit(x)
        raw = -forest.score_samples(x)
        lo = float(np.quantile(raw, 0.5))
        hi = float(np.quantile(raw, 0.999))
        if hi <= lo:
            hi = lo + 1e-6
    return MLModel(point_ids=pids, baseline=baseline, forest=forest, forest_lo=lo, forest_hi=hi,
                   trained_at=trained_at, version=version)


class MLScorer:
    """Vectorised batch scoring with a trained model; keeps each point's previous value."""

    def __init__(self, model: MLModel, groups: Mapping[int, int] | None = None, gate: float = 2.5) -> None:
        self.model = model
        self.gate = gate
        self.index = model.index_of()
        self.groups = dict(groups or {})
        self.prev = np.full(len(model.point_ids), np.nan)
        self._pid_lut: tuple[int, IntArray] | None = None

    def _lookup(self, pids: IntArray) -> IntArray:
        if self._pid_lut is None:
            top = max(self.index, default=-1) + 1
            lut = np.full(top + 1, -1, dtype=np.int64)
            for pid, i in self.index.items():
                lut[pid] = i
            self._pid_lut = (top, lut)
        top, lut = self._pid_lut
        ok = (pids >= 0) & (pids < top)
        return np.where(ok, lut[np.where(ok, pids, top)], -1)

    def score_arrays(self, pids: IntArray, ts_s: FloatArray, values: FloatArray) -> tuple[FloatArray, FloatArray]:
        """(score in [0, 1], expected value) per reading; unknown points score 0.

        Rows are assumed in time order per point (as batches arrive).
        """
        idx = self._lookup(pids)
        n = len(values)
        prev = np.full(n, np.nan)
        known = idx >= 0
        if n:
            # previous value per point: last earlier row of the same point in this batch, else
            # the value remembered from earlier batches.
            order = np.lexsort((np.arange(n), idx))
            io_ = idx[order]
            same = np.zeros(n, dtype=bool)
            same[1:] = io_[1:] == io_[:-1]
            prev_sorted = np.where(same, np.concatenate([[np.nan], values[order][:-1]]),
                                   self.prev[np.where(io_ >= 0, io_, 0)])
            prev[order] = prev_sorted
            prev = np.where(known, prev, np.nan)
            last = np.ones(n, dtype=bool)
            last[:-1] = io_[:-1] != io_[1:]
            upd = order[last & (io_ >= 0)]
            self.prev[idx[upd]] = values[upd]
        grp_arr = np.fromiter((self.groups.get(int(p), -1) for p in pids), dtype=np.int64, count=n) \
            if self.groups else np.full(n, -1, dtype=np.int64)
        tgroups = np.where(grp_arr >= 0, grp_arr * 1_000_003 + (ts_s // 60).astype(np.int64), -1)
        x, z, expected = features(self.model.baseline, idx, ts_s, values, prev, tgroups)
        score = z_to_score(z)
        if self.model.forest is not None and n:
            # Gate: only rows with some feature beyond `gate` robust sigmas go through the
            # forest (the costly part); rows inside that box are normal for the forest too.
            sel = np.flatnonzero(np.max(np.abs(x), axis=1) >= self.gate)
            if len(sel):
                raw = -self.model.forest.score_samples(x[sel])
                f = np.clip((raw - self.model.forest_lo) / (self.model.forest_hi - self.model.forest_lo),
                            0.0, 1.0)
                # The forest's normalised score is capped below the baseline's extreme tail so
                # that alerts need a clear residual or a clearly multivariate outlier.
                score[sel] = np.maximum(score[sel], f * 0.999)
        score = np.where(known, score, 0.0)
        return score, expected
