"""Online (streaming) univariate anomaly detectors used for NAB evaluation and per-point scoring.

Every detector here is causal by construction: it is an object with state that is fed rows in
time order (`update(value, t)` one at a time, or `score(values, times)` for a causal chunk,
which just loops) and a row's score depends only on that row and the rows fed before it.
Nothing reads ahead; no file length, global min/max or label is ever seen.

The default detector (`ensemble`, `RecordContextEnsemble`) scores each row by how extreme some
statistic is against its own past (`RankSurprise`: a new record scores >= 0.8): the seasonal
residual, new highs, new lows, their joint surprise, and the left matrix profile (`LeftDiscord`:
the last 30 rows resemble no earlier stretch); plus contextOSE-like context novelty
(`WarmContextNovelty`), counted only while the joint surprise is high. Score = max of them.
Method, results on NAB and every variant tried: docs/detectors.md.

`Ensemble` (`likelihood`, `context`, `residual`, `zscore`) is the earlier design: context
novelty, EWMA residuals and relative entropy, each normalised by an HTM-style anomaly likelihood,
combined by max with a rest period. Its raw EWMA residual tail (`zscore`) is what fault scoring
uses per point.
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

_SQRT2 = math.sqrt(2.0)


def tail_prob(z: float) -> float:
    """P(Z > z) of a standard normal."""
    return 0.5 * math.erfc(z / _SQRT2)


class RunningRange:
    """Running min/max of the values seen so far, with a small margin; quantises into levels."""

    def __init__(self, levels: int) -> None:
        self.levels = levels
        self.lo = math.inf
        self.hi = -math.inf

    def level(self, x: float) -> int:
        if x < self.lo:
            self.lo = x
        if x > self.hi:
            self.hi = x
        span = self.hi - self.lo
        if span <= 0:
            return 0
        q = int((x - self.lo) / span * self.levels)
        return min(q, self.levels - 1)


def novel_fraction(h: tuple[int, ...], seen: set[tuple[int, ...]], max_order: int) -> float:
    """Fraction of the context words ending at `h[-1]` (orders 1..max_order) not in `seen`.

    A word of order k is the last k+1 levels, tagged with k; every word is added to `seen`.
    """
    novel = total = 0
    for k in range(1, max_order + 1):
        if len(h) < k + 1:
            break
        word = (k, *h[-(k + 1):])
        total += 1
        if word not in seen:
            seen.add(word)
            novel += 1
    return novel / total if total else 0.0


class ContextNovelty:
    """Fraction of context words (level sequences of orders 1..max_order) never seen before."""

    def __init__(self, levels: int = 8, max_order: int = 5) -> None:
        self.range = RunningRange(levels)
        self.max_order = max_order
        self.hist: deque[int] = deque(maxlen=max_order + 1)
        self.seen: set[tuple[int, ...]] = set()

    def update(self, x: float) -> float:
        self.hist.append(self.range.level(x))
        return novel_fraction(tuple(self.hist), self.seen, self.max_order)


class EwResidual:
    """|x - EWMA| in units of the EW standard deviation of the residuals, as a tail score."""

    def __init__(self, alpha: float = 0.05, var_alpha: float = 0.01) -> None:
        self.alpha = alpha
        self.var_alpha = var_alpha
        self.mu: float | None = None
        self.var = 0.0
        self.n = 0

    def update(self, x: float) -> float:
        if self.mu is None:
            self.mu = x
            return 0.0
        r = x - self.mu
        self.n += 1
        sd = math.sqrt(self.var)
        z = abs(r) / sd if sd > 1e-12 else (0.0 if abs(r) < 1e-12 else 6.0)
        self.var = (1 - self.var_alpha) * self.var + self.var_alpha * r * r if self.n > 1 else r * r
        self.mu += self.alpha * r
        return 1.0 - 2.0 * tail_prob(min(z, 8.0))


class RelativeEntropy:
    """KL divergence of the last `short` rows' level histogram from the long-run histogram."""

    def __init__(self, levels: int = 10, short: int = 52) -> None:
        self.range = RunningRange(levels)
        self.levels = levels
        self.short: deque[int] = deque(maxlen=short)
        self.long = np.ones(levels)

    def update(self, x: float) -> float:
        q = self.range.level(x)
        self.short.append(q)
        self.long[q] += 1
        if len(self.short) < self.short.maxlen:  # type: ignore[operator]
            return 0.0
        p = np.bincount(np.fromiter(self.short, dtype=np.int64), minlength=self.levels) + 0.5
        p = p / p.sum()
        ql = self.long / self.long.sum()
        kl = float(np.sum(p * np.log(p / ql)))
        return 1.0 - math.exp(-kl)


class Likelihood:
    """HTM-style anomaly likelihood of a raw score stream.

    The mean of the raw score over the last `short` rows is compared with the mean/std of the
    raw score over the last `long` rows; the result is 1 - tail probability, log-scaled so
    that 0.5 means "unremarkable" and values near 1 are rare.
    """

    def __init__(self, short: int = 10, long: int = 2000, warmup: int = 300) -> None:
        self.short: deque[float] = deque(maxlen=short)
        self.long: deque[float] = deque(maxlen=long)
        self.s_sum = 0.0
        self.l_sum = 0.0
        self.l_sq = 0.0
        self.warmup = warmup
        self.n = 0

    def update(self, raw: float) -> float:
        if len(self.short) == self.short.maxlen:
            self.s_sum -= self.short[0]
        self.short.append(raw)
        self.s_sum += raw
        if len(self.long) == self.long.maxlen:
            old = self.long[0]
            self.l_sum -= old
            self.l_sq -= old * old
        self.long.append(raw)
        self.l_sum += raw
        self.l_sq += raw * raw
        self.n += 1
        if self.n < self.warmup:
            return 0.5
        m = len(self.long)
        mean = self.l_sum / m
        var = max(self.l_sq / m - mean * mean, 0.0)
        sd = max(math.sqrt(var), 1e-4)
        short_mean = self.s_sum / len(self.short)
        lik = 1.0 - tail_prob((short_mean - mean) / sd)
        return lik


def log_scale(lik: float) -> float:
    """Map a likelihood to [0, 1] on a log scale (NAB/HTM's computeLogLikelihood)."""
    return min(1.0, max(0.0, math.log(1.0000000001 - lik) / -23.02585084720009))


@dataclass
class EnsembleParams:
    """Method parameters of the ensemble (chosen on the dev corpus, not per file)."""

    levels: int = 8
    max_order: int = 5
    ew_alpha: float = 0.05
    ew_var_alpha: float = 0.01
    re_levels: int = 10
    re_short: int = 52
    lik_short: int = 10
    lik_long: int = 2000
    warmup: int = 300
    cn_weight: float = 1.0
    use_cn: bool = True
    use_ew: bool = True
    use_re: bool = False
    combine: str = "max"
    rest: int = 150
    rest_threshold: float = 0.5
    likelihood: bool = True
    components: tuple[str, ...] = field(default_factory=tuple)


class Ensemble:
    """Causal ensemble detector (see the module docstring); `update(x) -> score in [0, 1]`."""

    def __init__(self, params: EnsembleParams | None = None) -> None:
        p = params or EnsembleParams()
        self.p = p
        self.parts: list[tuple[Callable[[float], float], Likelihood]] = []
        if p.use_cn:
            self.parts.append((ContextNovelty(p.levels, p.max_order).update,
                               Likelihood(p.lik_short, p.lik_long, p.warmup)))
        if p.use_ew:
            self.parts.append((EwResidual(p.ew_alpha, p.ew_var_alpha).update,
                               Likelihood(p.lik_short, p.lik_long, p.warmup)))
        if p.use_re:
            self.parts.append((RelativeEntropy(p.re_levels, p.re_short).update,
                               Likelihood(p.lik_short, p.lik_long, p.warmup)))
        self.quiet = 0
        self.raw_last: list[float] = []

    def update(self, x: float) -> float:
        if not math.isfinite(x):
            return 1.0  # a non-finite value is anomalous itself; it never enters the state
        vals = []
        raws = []
        for raw_fn, lik in self.parts:
            r = raw_fn(x)
            raws.append(r)
            vals.append(log_scale(lik.update(r)) if self.p.likelihood else r)
        self.raw_last = raws
        if not vals:
            return 0.0
        s = max(vals) if self.p.combine == "max" else sum(vals) / len(vals)
        if self.quiet > 0:
            self.quiet -= 1
            return 0.0
        if s >= self.p.rest_threshold:
            self.quiet = self.p.rest
        return s

    def score(self, values: Sequence[float] | FloatArray) -> FloatArray:
        """Score a causal chunk (rows in time order, after every row fed before)."""
        out = np.empty(len(values), dtype=np.float64)
        upd = self.update
        for i, v in enumerate(values):
            out[i] = upd(float(v))
        return out



class RankSurprise:
    """How extreme a statistic is against its own history (file-calibrated, scale-free).

    Not a new maximum: 0.8 × (-ln p / ln(n+1)) with p = (1 + #{past ≥ s}) / (n + 1), so the
    second-largest value so far scores just under 0.8. A new maximum scores 0.8 + 0.2 × the
    relative excess over the previous maximum (capped at +100 %). Nothing before `warm` rows.
    """

    def __init__(self, warm: int = 50) -> None:
        self.warm = warm
        self.sorted: list[float] = []
        self.max = -math.inf

    def update(self, s: float) -> float:
        srt = self.sorted
        n = len(srt)
        out = 0.0
        if n >= self.warm:
            if s > self.max:
                out = 0.8 + 0.2 * min(1.0, s / self.max - 1.0) if self.max > 0 else 0.8
            else:
                ge = n - bisect.bisect_left(srt, s)
                out = 0.8 * (-math.log((1 + ge) / (n + 1)) / math.log(n + 1))
        bisect.insort(srt, s)
        if s > self.max:
            self.max = s
        return out


class RollingMedian:
    """Median of the last `w` values fed (before the current one)."""

    def __init__(self, w: int) -> None:
        self.w = w
        self.buf: deque[float] = deque()
        self.sorted: list[float] = []

    def median(self) -> float | None:
        n = len(self.sorted)
        if n == 0:
            return None
        m = n // 2
        return self.sorted[m] if n % 2 else 0.5 * (self.sorted[m - 1] + self.sorted[m])

    def push(self, x: float) -> None:
        self.buf.append(x)
        bisect.insort(self.sorted, x)
        if len(self.buf) > self.w:
            old = self.buf.popleft()
            del self.sorted[bisect.bisect_left(self.sorted, old)]


class WarmContextNovelty:
    """Context novelty over levels fixed from the first `warm` rows (range ± margin).

    Levels beyond that range keep counting (level 8, 9, ... or -1, -2, ...), so values outside
    the learnt range form new facts and novel contexts. The warm-up rows are replayed once the
    range is known (they are past rows: still causal) so their contexts are remembered. The
    output uses the contextOSE rest rule: 0 for `rest` rows after a raw novelty ≥ `threshold`.
    """

    def __init__(self, levels: int = 8, warm: int = 300, margin: float = 0.25, max_order: int = 3,
                 rest: int = 150, threshold: float = 0.75) -> None:
        self.levels = levels
        self.warm = warm
        self.margin = margin
        self.max_order = max_order
        self.rest = rest
        self.threshold = threshold
        self.pending: list[float] | None = []
        self.lo = 0.0
        self.span = 1.0
        self.hist: deque[int] = deque(maxlen=max_order + 1)
        self.seen: set[tuple[int, ...]] = set()
        self.i = 0
        self.last_high = -1  # index of the last raw score >= threshold

    def _raw(self, x: float) -> float:
        self.hist.append(math.floor((x - self.lo) / self.span * self.levels))
        return novel_fraction(tuple(self.hist), self.seen, self.max_order)

    def _emit(self, raw: float) -> float:
        i = self.i
        self.i += 1
        out = 0.0 if (i < self.rest or (self.last_high >= 0 and i - self.last_high <= self.rest)) else raw
        if raw >= self.threshold:
            self.last_high = i
        return out

    def update(self, x: float) -> float:
        if self.pending is not None:
            self.pending.append(x)
            if len(self.pending) < self.warm:
                self.i += 1
                return 0.0
            lo, hi = min(self.pending), max(self.pending)
            span = hi - lo if hi > lo else max(abs(hi), 1.0)
            self.lo = lo - self.margin * span
            self.span = span * (1 + 2 * self.margin)
            replay, self.pending = self.pending, None
            self.i = 0
            out = 0.0
            for v in replay:
                out = self._emit(self._raw(v))
            return out
        return self._emit(self._raw(x))


@dataclass
class NabParams:
    """Method parameters of the `ensemble` detector (chosen on the dev corpus, not per file)."""

    lev_window: int = 50
    seasonal_days: int = 7
    rank_warm: int = 50
    cn_levels: int = 8
    cn_warm: int = 300
    cn_margin: float = 0.25
    cn_order: int = 3
    cn_rest: int = 150
    cn_threshold: float = 0.75
    cn_weight: float = 0.9
    cn_gate: float = 0.4
    cn_gate_rows: int = 10
    cn_gate_on: str = "joint"
    joint: bool = True
    discord_m: int = 30
    discord_history: int = 10_000


class SeasonalLagResidual:
    """|x - median of the values exactly 1..`days` days earlier| (same time of day).

    Rows per day come from the median spacing of the first `spacing_rows` timestamps seen
    (causal); with no timestamps or a spacing of a day or more, `update` returns None and the
    caller falls back to a non-seasonal statistic.
    """

    def __init__(self, days: int = 7, spacing_rows: int = 50) -> None:
        self.days = days
        self.spacing_rows = spacing_rows
        self.times: list[float] = []
        self.rows_per_day: int | None = None
        self.buf: deque[float] = deque()

    def update(self, x: float, t: float | None) -> float | None:
        if t is not None and self.rows_per_day is None:
            self.times.append(t)
            if len(self.times) > self.spacing_rows:
                step = float(np.median(np.diff(self.times)))
                self.rows_per_day = round(86400.0 / step) if step > 0 else 0
                self.times = []
                if self.rows_per_day >= 2:
                    self.buf = deque(self.buf, maxlen=self.rows_per_day * self.days)
        d = self.rows_per_day
        if d is not None and d < 2:
            return None
        res: float | None = None
        if d is not None:
            n = len(self.buf)
            lags = [self.buf[n - j * d] for j in range(1, self.days + 1) if n - j * d >= 0]
            res = abs(x - statistics.median(lags)) if lags else 0.0
        self.buf.append(x)
        return res


class LeftDiscord:
    """Left matrix profile: distance from the last `m` values to the nearest earlier window.

    The current window x[i-m+1..i] is compared (Euclidean, values not normalised, so both the
    shape and the level count) with every earlier window that does not overlap it, among the
    last `history` windows. A large distance means this stretch of the series resembles nothing
    seen before: a time-series discord, found causally. Returns None until `m` earlier windows
    exist: the first distances compare a window with only a few others (for a periodic signal,
    often the opposite phase) and would set a maximum no real discord could beat. Cost per row:
    O(history × m), one matrix-vector product.
    """

    def __init__(self, m: int = 30, history: int = 10_000) -> None:
        self.m = m
        self.history = history
        cap = 2 * (history + 2 * m) + 16
        self.buf = np.zeros(cap)  # values, compacted when full (amortised O(1) per row)
        self.sq = np.zeros(cap)  # sum of squares of the window ending at each row (once full)
        self.n = 0  # rows in buf
        self.offset: float | None = None  # first value: subtracted so squares stay small

    def update(self, x: float) -> float | None:
        if self.offset is None:
            self.offset = x
        if self.n == len(self.buf):
            keep = self.history + 2 * self.m
            self.buf[:keep] = self.buf[self.n - keep:self.n].copy()
            self.sq[:keep] = self.sq[self.n - keep:self.n].copy()
            self.n = keep
        m, n = self.m, self.n
        buf = self.buf
        buf[n] = x - self.offset
        self.n = n = n + 1
        if n < m:
            return None
        cur = buf[n - m:n]
        with np.errstate(over="ignore", invalid="ignore"):
            self.sq[n - 1] = float(cur @ cur)
        last = n - 1 - m  # the newest earlier window that does not overlap ends here
        first = max(m - 1, last - self.history + 1)
        if last - first + 1 < min(m, self.history):
            return None
        starts = np.lib.stride_tricks.sliding_window_view(buf[first - m + 1:last + 1], m)
        with np.errstate(over="ignore", invalid="ignore"):
            d2 = self.sq[first:last + 1] + self.sq[n - 1] - 2.0 * (starts @ cur)
            nearest = float(d2.min())
        if not math.isfinite(nearest):  # values near float's limit overflow the squares
            return None
        return math.sqrt(max(nearest, 0.0))


class RecordContextEnsemble:
    """The default NAB detector: rank surprises of statistics, max with gated context novelty.

    Statistics, each through `RankSurprise`: the seasonal residual |x - median of the same time
    on the previous 7 days| (`SeasonalLagResidual`; without timestamps or before the spacing is
    known: |x - median of the previous `lev_window` values|), x (new highs) and -x (new lows).
    With `joint` (default), a fourth: the rank surprise of the sum of those three surprises (a
    row where the residual and the level are unusual together, though none is a record alone).
    With `discord_m` > 0 (default 30), a fifth: the left matrix profile (`LeftDiscord`: the
    stretch of the last `discord_m` rows is unlike any earlier stretch). The context component
    is `WarmContextNovelty` × `cn_weight`, counted only when the joint surprise
    (`cn_gate_on="joint"`, the default; `"residual"`: the residual's, as before) reached
    `cn_gate` within the last `cn_gate_rows` rows: a novel context with ordinary values is
    mostly noise. Score = max of the components.
    """

    def __init__(self, params: NabParams | None = None) -> None:
        p = params or NabParams()
        self.p = p
        self.med = RollingMedian(p.lev_window)
        self.seas = SeasonalLagResidual(p.seasonal_days)
        self.r_lev = RankSurprise(p.rank_warm)
        self.r_hi = RankSurprise(p.rank_warm)
        self.r_lo = RankSurprise(p.rank_warm)
        self.r_joint = RankSurprise(p.rank_warm)
        self.n = 0
        self.cn = WarmContextNovelty(p.cn_levels, p.cn_warm, p.cn_margin, p.cn_order, p.cn_rest, p.cn_threshold)
        self.recent_gate: deque[float] = deque(maxlen=max(1, p.cn_gate_rows))
        self.discord = LeftDiscord(p.discord_m, p.discord_history) if p.discord_m > 0 else None
        self.r_discord = RankSurprise(p.rank_warm)

    def update(self, x: float, t: float | None = None) -> float:
        if not math.isfinite(x):
            return 1.0  # a non-finite value is anomalous itself; it never enters the state
        m = self.med.median()
        lev = abs(x - m) if m is not None else 0.0
        self.med.push(x)
        if self.p.seasonal_days > 0:
            seas = self.seas.update(x, t)
            if seas is not None:
                lev = seas
        s_lev = self.r_lev.update(lev)
        s_hi = self.r_hi.update(x)
        s_lo = self.r_lo.update(-x)
        s = max(s_lev, s_hi, s_lo)
        s_joint = 0.0
        if self.p.joint:
            self.n += 1
            if self.n > self.p.rank_warm:  # the components' own warm-up rows (all 0) stay out
                s_joint = self.r_joint.update(s_lev + s_hi + s_lo)
                s = max(s, s_joint)
        if self.discord is not None:
            d = self.discord.update(x)
            if d is not None:
                s = max(s, self.r_discord.update(d))
        self.recent_gate.append(s_joint if self.p.cn_gate_on == "joint" and self.p.joint else s_lev)
        c = self.cn.update(x) * self.p.cn_weight
        if max(self.recent_gate) < self.p.cn_gate:
            # A novel context counts only while the statistics are unusual too: the gate value
            # 0.4 is rank surprise 0.8 * 1/2, i.e. within the top sqrt(n) of its own history.
            c = 0.0
        return min(1.0, max(s, c))

    def score(self, values: Sequence[float] | FloatArray,
              times: Sequence[float] | FloatArray | None = None) -> FloatArray:
        """Score a causal chunk; `times` are epoch seconds of the rows (optional)."""
        out = np.empty(len(values), dtype=np.float64)
        upd = self.update
        if times is None:
            for i, v in enumerate(values):
                out[i] = upd(float(v))
        else:
            for i, (v, t) in enumerate(zip(values, times, strict=True)):
                out[i] = upd(float(v), float(t))
        return out

DETECTORS: dict[str, Callable[[], Ensemble | RecordContextEnsemble]] = {
    "ensemble": lambda: RecordContextEnsemble(),
    "likelihood": lambda: Ensemble(),
    "context": lambda: Ensemble(EnsembleParams(use_ew=False)),
    "residual": lambda: Ensemble(EnsembleParams(use_cn=False)),
    # Raw EW residual tail score, no likelihood, no suppression: for fault scoring.
    "zscore": lambda: Ensemble(EnsembleParams(use_cn=False, likelihood=False, rest=0, rest_threshold=2.0)),
}
