"""NAB (Numenta Anomaly Benchmark) scoring, implemented from the published description.

See `/work/shared/notes/nab-scoring.md`: per-row detection weights from a scaled sigmoid of the
position relative to the labelled windows, a probationary period, one threshold per profile
optimised over the whole corpus by an exhaustive sweep, and normalisation between the null
detector (0) and the perfect detector (100).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Profile:
    """An application profile: weights of true positives, false positives and misses."""

    name: str
    a_tp: float
    a_fp: float
    a_fn: float


PROFILES: dict[str, Profile] = {
    "standard": Profile("standard", 1.0, 0.11, 1.0),
    "reward_low_FP_rate": Profile("reward_low_FP_rate", 1.0, 0.22, 1.0),
    "reward_low_FN_rate": Profile("reward_low_FN_rate", 1.0, 0.11, 2.0),
}


def sigmoid(y: float) -> float:
    """NAB's scaled sigmoid: 2/(1+e^(5y)) - 1 for y <= 3, else -1."""
    if y > 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * y)) - 1.0


def probationary_rows(n: int) -> int:
    """P = min(floor(0.15 N), 750)."""
    return min(math.floor(0.15 * n), int(0.15 * 5000))


@dataclass
class NabFile:
    """One data file: its key (`<category>/<file>.csv`), rows, and windows as row indices."""

    key: str
    timestamps: list[str]
    values: FloatArray
    windows: list[tuple[int, int]] = field(default_factory=list)
    times: FloatArray | None = None  # epoch seconds (timestamps read as UTC)

    @property
    def n(self) -> int:
        return len(self.timestamps)


def _parse_ts(text: str) -> datetime:
    text = text.strip()
    for fmt in ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S"):
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            continue
    raise ValueError(f"unparseable timestamp {text!r}")


def read_series(path: Path) -> tuple[list[str], FloatArray]:
    """Read a `timestamp,value` CSV; raise ValueError naming the file, row and field."""
    ts: list[str] = []
    vals: list[float] = []
    with path.open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:2]] != ["timestamp", "value"]:
            raise ValueError(f"{path}: header must start with timestamp,value (got {header!r})")
        for lineno, row in enumerate(reader, start=2):
            if not row:
                continue
            try:
                vals.append(float(row[1]))
            except (IndexError, ValueError) as e:
                raise ValueError(f"{path}:{lineno}: field value: not a number ({row!r})") from e
            try:
                _parse_ts(row[0])
            except ValueError as e:
                raise ValueError(f"{path}:{lineno}: field timestamp: {e}") from e
            ts.append(row[0].strip())
    return ts, np.asarray(vals, dtype=np.float64)


def load_corpus(data_dir: Path, windows_file: Path | None) -> list[NabFile]:
    """Every `<category>/<file>.csv` under `data_dir` with its windows mapped to row indices."""
    windows: Mapping[str, Sequence[Sequence[str]]] = {}
    if windows_file is not None:
        windows = json.loads(windows_file.read_text())
    files: list[NabFile] = []
    for path in sorted(data_dir.rglob("*.csv")):
        key = path.relative_to(data_dir).as_posix()
        ts, vals = read_series(path)
        parsed = np.array([_parse_ts(t) for t in ts], dtype="datetime64[us]")
        f = NabFile(key=key, timestamps=ts, values=vals,
                    times=parsed.astype("datetime64[us]").astype(np.int64) / 1e6)
        if key in windows:
            for k, (start, end) in enumerate(windows[key]):
                try:
                    s = np.datetime64(_parse_ts(start), "us")
                    e = np.datetime64(_parse_ts(end), "us")
                except ValueError as err:
                    raise ValueError(f"{windows_file}: {key}[{k}]: {err}") from err
                lo = int(np.searchsorted(parsed, s, side="left"))
                hi = int(np.searchsorted(parsed, e, side="right")) - 1
                if hi >= lo:
                    f.windows.append((lo, hi))
        files.append(f)
    return files


def row_weights(n: int, windows: Sequence[tuple[int, int]],
                profile: Profile) -> tuple[FloatArray, npt.NDArray[np.int64]]:
    """Per-row detection weight and window index (-1 outside every window)."""
    w = np.full(n, -profile.a_fp, dtype=np.float64)
    win = np.full(n, -1, dtype=np.int64)
    s1 = sigmoid(-1.0)
    ordered = sorted(windows)
    for k, (lo, hi) in enumerate(ordered):
        width = hi - lo + 1
        for i in range(lo, hi + 1):
            w[i] = profile.a_tp * sigmoid(-(hi - i + 1) / width) / s1
            win[i] = k
        nxt = ordered[k + 1][0] if k + 1 < len(ordered) else n
        for i in range(hi + 1, nxt):
            w[i] = profile.a_fp * sigmoid((i - hi) / (width - 1)) if width > 1 else -profile.a_fp
    return w, win


@dataclass(frozen=True)
class ProfileResult:
    """The outcome of one profile: threshold, raw and normalised score, per-file raw scores."""

    profile: str
    threshold: float
    raw: float
    normalized: float
    null: float
    perfect: float
    per_file: dict[str, float]
    tp: int
    fp: int
    fn: int


def score_corpus(files: Sequence[NabFile], scores: Mapping[str, FloatArray],
                 profile: Profile) -> ProfileResult:
    """Optimise one threshold over the corpus and score it (exhaustive sweep)."""
    all_scores: list[FloatArray] = []
    all_w: list[FloatArray] = []
    all_win: list[npt.NDArray[np.int64]] = []
    all_file: list[npt.NDArray[np.int64]] = []
    win_base = 0
    n_windows = 0
    counted = 0
    for fi, f in enumerate(files):
        s = np.asarray(scores[f.key], dtype=np.float64)
        if s.shape != (f.n,):
            raise ValueError(f"{f.key}: {s.shape[0]} scores for {f.n} rows")
        p = probationary_rows(f.n)
        w, win = row_weights(f.n, f.windows, profile)
        n_windows += len(f.windows)
        counted += sum(1 for (_lo, hi) in f.windows if hi >= p)
        all_scores.append(s[p:])
        all_w.append(w[p:])
        all_win.append(np.where(win[p:] >= 0, win[p:] + win_base, -1))
        all_file.append(np.full(f.n - p, fi, dtype=np.int64))
        win_base += len(f.windows)
    sc = np.concatenate(all_scores) if all_scores else np.zeros(0)
    ww = np.concatenate(all_w) if all_w else np.zeros(0)
    wi = np.concatenate(all_win) if all_win else np.zeros(0, dtype=np.int64)
    fidx = np.concatenate(all_file) if all_file else np.zeros(0, dtype=np.int64)
    s_null = -profile.a_fn * counted
    s_perfect = profile.a_tp * n_windows

    order = np.argsort(-sc, kind="stable")
    sc_o, w_o, wi_o = sc[order], ww[order], wi[order]
    # Vectorised sweep: FP rows add their weight; a window's contribution changes only when a
    # row earlier in it than every detected one becomes detected.
    delta = np.where(wi_o < 0, w_o, 0.0)
    best_w: dict[int, float] = {}
    win_rows = np.nonzero(wi_o >= 0)[0]
    for j in win_rows:
        k = int(wi_o[j])
        wv = float(w_o[j])
        cur = best_w.get(k)
        if cur is None:
            delta[j] = wv + profile.a_fn
            best_w[k] = wv
        elif wv > cur:
            delta[j] = wv - cur
            best_w[k] = wv
    cum = s_null + np.cumsum(delta)
    # Only the last row of each group of equal scores is a valid cut.
    if len(sc_o):
        last_of_group = np.ones(len(sc_o), dtype=bool)
        last_of_group[:-1] = sc_o[:-1] != sc_o[1:]
        cand = np.nonzero(last_of_group)[0]
        vals = cum[cand]
        best_idx = int(np.argmax(vals))  # first max = highest threshold
        if vals[best_idx] > s_null:
            theta = float(sc_o[cand[best_idx]])
            raw = float(vals[best_idx])
        else:
            theta, raw = 1.1, s_null
    else:
        theta, raw = 1.1, s_null
    # Per-file breakdown at theta.
    det = sc >= theta
    per_file: dict[str, float] = {}
    tp = fp = fn = 0
    for fi, f in enumerate(files):
        m = fidx == fi
        d, w_f, win_f = det[m], ww[m], wi[m]
        total = float(np.sum(w_f[d & (win_f < 0)]))
        fp += int(np.sum(d & (win_f < 0)))
        for k in np.unique(win_f[win_f >= 0]):
            sel = d & (win_f == k)
            if np.any(sel):
                total += float(np.max(w_f[sel]))
                tp += 1
            else:
                total -= profile.a_fn
                fn += 1
        per_file[f.key] = total
    denom = s_perfect - s_null
    normalized = 100.0 * (raw - s_null) / denom if denom else 0.0
    return ProfileResult(profile.name, theta, raw, normalized, s_null, s_perfect, per_file, tp, fp, fn)


def score_all(files: Sequence[NabFile], scores: Mapping[str, FloatArray]) -> dict[str, ProfileResult]:
    """Score every profile."""
    return {name: score_corpus(files, scores, p) for name, p in PROFILES.items()}
