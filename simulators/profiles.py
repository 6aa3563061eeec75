"""Deterministic load profiles and meters for every GridWatch simulator.

Everything here is a pure function of (seed, time): two runs with the same seed produce the
same values at the same timestamps, whatever order or rate they are sampled in. Stable API
(the Modbus, IEC-104 and MQTT simulators all import it)::

    p = Profile.create("residential", seed=7, peak_kw=12.0)
    p.power_kw(ts)          # signed active power, + import (consumption), - export (generation)
    p.reactive_kvar(ts)     # signed reactive power (+ inductive / import)
    p.power_factor(ts)      # |P| / S, 1.0 when idle
    p.energy_kwh(t0, t1)    # exact integral of power_kw over [t0, t1] (import minus export)
    p.quota_kw(ts)          # the purchased hourly volume (mining), else peak_kw

    m = Meter(p, seed=7, nominal_v=230.0)
    m.sample(ts) -> dict[str, float]      # keys: METER_KEYS

Shapes: `residential` (morning and evening peaks, later weekends, winter heavier),
`commercial` (business hours on weekdays), `industrial` (three shifts, lighter weekends),
`mining` (flat and high, never above the hourly quota it bought), `solar` (a clear-sky bell
by day of year and latitude with day-to-day cloudiness; negative power = export, a small
night-time own consumption). Local time for the shapes is UTC + `utc_offset_h` (default +5,
Kazakhstan).

Power is piecewise linear between knots on a fixed epoch-aligned grid (`STEP_S` = 60 s), so
energy counters are the exact integral of the power the meter reports, independent of how
often the meter is read: E(t2) - E(t1) == p.energy_kwh(t1, t2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

__all__ = [
    "METER_KEYS",
    "PROFILE_KINDS",
    "STEP_S",
    "TARIFFS",
    "Meter",
    "Profile",
    "system_frequency",
    "tariff_at",
    "unit_noise",
]

STEP_S = 60
"""Grid of the piecewise-linear power curve, in seconds (aligned to the Unix epoch)."""

PROFILE_KINDS = ("residential", "commercial", "industrial", "mining", "solar")

TARIFFS = (1, 2, 3)
"""Tariff zones: 1 day, 2 night (23:00-07:00 local), 3 peak (08:00-11:00 and 18:00-22:00)."""

_MASK = (1 << 64) - 1


def _mix(*parts: int) -> int:
    """splitmix64 over a sequence of integers: a fast, well-spread deterministic hash."""
    h = 0x9E3779B97F4A7C15
    for p in parts:
        h = (h ^ (p & _MASK)) & _MASK
        h = (h + 0x9E3779B97F4A7C15) & _MASK
        z = h
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
        h = z ^ (z >> 31)
    return h


def unit_noise(*parts: int) -> float:
    """A deterministic uniform number in [-1, 1) for the given integers."""
    return (_mix(*parts) >> 11) * (2.0 / (1 << 53)) - 1.0


def _unit01(*parts: int) -> float:
    return (_mix(*parts) >> 11) * (1.0 / (1 << 53))


def _smooth_noise(seed: int, salt: int, t: float, period: float) -> float:
    """Value noise in [-1, 1]: random knots every `period` seconds, cosine-interpolated."""
    x = t / period
    k = math.floor(x)
    f = x - k
    a = unit_noise(seed, salt, k)
    b = unit_noise(seed, salt, k + 1)
    w = (1 - math.cos(math.pi * f)) / 2
    return a + (b - a) * w


def _epoch_s(ts: datetime) -> float:
    if ts.tzinfo is None:
        raise ValueError("profile timestamps must be timezone-aware")
    return ts.timestamp()


def _gauss_bump(h: float, centre: float, width: float) -> float:
    d = (h - centre + 12) % 24 - 12
    return math.exp(-0.5 * (d / width) ** 2)


def tariff_at(ts: datetime, utc_offset_h: float = 5.0) -> int:
    """The tariff zone (1 day, 2 night, 3 peak) in force at `ts` (local hours)."""
    h = ((_epoch_s(ts) / 3600.0) + utc_offset_h) % 24
    return _tariff_hour(h)


def _tariff_hour(h: float) -> int:
    if h >= 23 or h < 7:
        return 2
    if 8 <= h < 11 or 18 <= h < 22:
        return 3
    return 1


def system_frequency(ts: datetime, seed: int = 0) -> float:
    """Grid frequency in Hz, shared by every meter of one seed: 50 Hz +- a few 10 mHz."""
    t = _epoch_s(ts)
    df = 0.025 * _smooth_noise(seed, 901, t, 300.0) + 0.01 * _smooth_noise(seed, 902, t, 20.0)
    return 50.0 + max(-0.2, min(0.2, df))


@dataclass(frozen=True)
class _KindParams:
    noise: float  # relative short-term noise
    slow_noise: float  # relative noise with a 15-minute correlation
    pf: tuple[float, float]  # power factor range (random per seed)


_PARAMS: dict[str, _KindParams] = {
    "residential": _KindParams(0.10, 0.12, (0.92, 0.97)),
    "commercial": _KindParams(0.04, 0.06, (0.88, 0.95)),
    "industrial": _KindParams(0.03, 0.05, (0.84, 0.92)),
    "mining": _KindParams(0.006, 0.008, (0.95, 0.985)),
    "solar": _KindParams(0.03, 0.0, (0.98, 1.0)),
}


@dataclass(frozen=True)
class Profile:
    """A deterministic active/reactive power curve of one consumer or generator.

    Build with `Profile.create`. `peak_kw` is the typical maximum demand (for `solar`: the
    installed capacity; for `mining`: the maximum hourly volume bought, in kW). The result is
    immutable and cheap; methods are pure functions of time.
    """

    kind: str
    seed: int
    peak_kw: float
    utc_offset_h: float = 5.0
    latitude: float = 47.0
    quota_skip: float = 0.05
    _pf_base: float = field(default=0.95, repr=False)
    _phase: float = field(default=0.0, repr=False)

    @classmethod
    def create(
        cls,
        kind: str,
        *,
        seed: int,
        peak_kw: float,
        utc_offset_h: float = 5.0,
        latitude: float = 47.0,
        quota_skip: float = 0.05,
    ) -> Profile:
        """A profile of `kind` (one of PROFILE_KINDS) for `seed`.

        `quota_skip` (mining) is the share of hours in which the miner bought nothing.
        """
        if kind not in _PARAMS:
            raise ValueError(f"unknown profile kind {kind!r} (known: {', '.join(PROFILE_KINDS)})")
        if peak_kw <= 0:
            raise ValueError("peak_kw must be positive")
        lo, hi = _PARAMS[kind].pf
        pf = lo + (hi - lo) * _unit01(seed, 11)
        phase = 0.6 * unit_noise(seed, 12)  # hours: households do not all wake at once
        return cls(kind=kind, seed=seed, peak_kw=float(peak_kw), utc_offset_h=utc_offset_h,
                   latitude=latitude, quota_skip=quota_skip, _pf_base=pf, _phase=phase)

    # ------------------------------------------------------------------ shapes (0..1)
    def _local(self, t: float) -> tuple[float, int, int]:
        """(local hour of day, weekday 0=Mon, day of year) for epoch seconds t."""
        lt = t + self.utc_offset_h * 3600.0
        days = math.floor(lt / 86400.0)
        hour = (lt - days * 86400.0) / 3600.0
        weekday = (days + 3) % 7  # 1970-01-01 was a Thursday
        doy = int((lt / 86400.0) % 365.2425)
        return hour, weekday, doy

    def _season(self, doy: int) -> float:
        """+1 in mid-winter (mid January), -1 in mid-summer."""
        return math.cos(2 * math.pi * (doy - 15) / 365.2425)

    def _shape(self, t: float) -> float:
        hour, wd, doy = self._local(t)
        h = hour + self._phase
        season = self._season(doy)
        weekend = wd >= 5
        kind = self.kind
        if kind == "residential":
            base = 0.25 + 0.05 * season
            morning = (0.30 if not weekend else 0.22) * _gauss_bump(h, 7.5 if not weekend else 9.5, 1.2)
            midday = (0.10 if not weekend else 0.25) * _gauss_bump(h, 13.0, 2.5)
            evening = (0.60 + 0.15 * season) * _gauss_bump(h, 20.0, 1.8)
            night = -0.08 * _gauss_bump(h, 3.5, 1.5)
            return max(0.05, base + morning + midday + evening + night)
        if kind == "commercial":
            open_ = 1 / (1 + math.exp(-(h - 8.0) * 3)) * 1 / (1 + math.exp((h - 19.0) * 3))
            level = 0.85 if not weekend else (0.35 if wd == 5 else 0.2)
            cooling = 0.12 * max(0.0, -season) * _gauss_bump(h, 15.0, 3.0)
            heating = 0.06 * max(0.0, season)
            return 0.18 + level * open_ * (0.92 + cooling + heating) - 0.03 * _gauss_bump(h, 13.0, 0.7)
        if kind == "industrial":
            level = 0.88 if not weekend else 0.58
            shift_dips = sum(0.10 * _gauss_bump(h, c, 0.25) for c in (0.0, 8.0, 16.0))
            lunch = 0.05 * _gauss_bump(h, 12.5, 0.4)
            night = 0.06 * _gauss_bump(h, 3.0, 2.5)
            return max(0.2, level + 0.04 * season - shift_dips - lunch - night)
        if kind == "solar":
            return self._solar(t)
        raise AssertionError(kind)  # mining handled in _knot

    def _solar(self, t: float) -> float:
        """Generation as a share of installed capacity (>= 0)."""
        hour, _, doy = self._local(t)
        # Solar time ~ local clock: UTC+5's meridian is 75E, close to Kazakhstan's plants.
        solar_h = hour
        decl = math.radians(23.44) * math.sin(2 * math.pi * (284 + doy) / 365.0)
        lat = math.radians(self.latitude)
        hour_angle = math.radians(15.0 * (solar_h - 12.5))
        sin_alt = math.sin(lat) * math.sin(decl) + math.cos(lat) * math.cos(decl) * math.cos(hour_angle)
        if sin_alt <= 0:
            return 0.0
        clear: float = sin_alt**1.15
        day = math.floor((t + self.utc_offset_h * 3600.0) / 86400.0)
        cloudiness = _unit01(self.seed, 31, day) ** 2  # most days fairly clear
        passing = 0.5 + 0.5 * _smooth_noise(self.seed, 32, t, 900.0)
        return clear * (1.0 - 0.75 * cloudiness * passing)

    # ------------------------------------------------------------------ mining quota
    def quota_kw(self, ts: datetime) -> float:
        """Hourly purchased volume as average kW (kWh per hour); `peak_kw` for other kinds."""
        return self._quota_hour(math.floor(_epoch_s(ts) / 3600.0))

    def _quota_hour(self, hour_index: int) -> float:
        if self.kind != "mining":
            return self.peak_kw
        if _unit01(self.seed, 41, hour_index) < self.quota_skip:
            return 0.0
        return self.peak_kw * (0.75 + 0.25 * _unit01(self.seed, 42, hour_index))

    # ------------------------------------------------------------------ knots
    def _knot(self, k: int) -> tuple[float, float]:
        """(P kW, Q kvar) at grid point k (epoch seconds k * STEP_S)."""
        t = float(k * STEP_S)
        prm = _PARAMS[self.kind]
        noise = 1.0 + prm.noise * unit_noise(self.seed, 21, k)
        if prm.slow_noise:
            noise += prm.slow_noise * _smooth_noise(self.seed, 22, t, 900.0)
        if self.kind == "mining":
            # the minimum of the neighbouring knots' quotas: power never exceeds the quota of
            # the hour it is consumed in, not even while ramping across the hour boundary.
            q = min(self._quota_hour(math.floor((t + d) / 3600.0)) for d in (-STEP_S, 0, STEP_S))
            p = min(q * 0.965 * noise, q * 0.995)
        elif self.kind == "solar":
            gen = self.peak_kw * self._solar(t) * noise
            own = 0.01 * self.peak_kw * (1 + 0.3 * unit_noise(self.seed, 23, k))
            p = own - gen if gen > 0 else own
        else:
            p = self.peak_kw * self._shape(t) * noise
        pf = self._pf_base + 0.01 * _smooth_noise(self.seed, 24, t, 3600.0)
        pf = min(0.999, max(0.5, pf))
        if self.kind == "solar" and p < 0:
            q_kvar = p * 0.05 * unit_noise(self.seed, 25, k // 60)  # near unity, either sign
        else:
            q_kvar = abs(p) * math.tan(math.acos(pf))
        return p, q_kvar

    def _interp(self, t: float) -> tuple[float, float]:
        k = math.floor(t / STEP_S)
        f = (t - k * STEP_S) / STEP_S
        p0, q0 = self._knot(k)
        if f == 0.0:
            return p0, q0
        p1, q1 = self._knot(k + 1)
        return p0 + (p1 - p0) * f, q0 + (q1 - q0) * f

    # ------------------------------------------------------------------ public
    def power_kw(self, ts: datetime) -> float:
        """Signed active power in kW at `ts` (+ consumption / import, - generation / export)."""
        return self._interp(_epoch_s(ts))[0]

    def reactive_kvar(self, ts: datetime) -> float:
        """Signed reactive power in kvar at `ts` (+ inductive / import)."""
        return self._interp(_epoch_s(ts))[1]

    def power_factor(self, ts: datetime) -> float:
        """|P| / S at `ts`; 1.0 when both are zero."""
        p, q = self._interp(_epoch_s(ts))
        s = math.hypot(p, q)
        return abs(p) / s if s > 0 else 1.0

    def energy_kwh(self, t0: datetime, t1: datetime) -> float:
        """Exact integral of `power_kw` over [t0, t1] in kWh (import minus export)."""
        acc = _Integrator(self)
        return acc.integrate(_epoch_s(t0), _epoch_s(t1)).net_active


# ---------------------------------------------------------------------------- integration
def _pos_part(a: float, b: float, dt: float) -> float:
    """Integral over dt of max(0, x) where x goes linearly from a to b."""
    if a >= 0 and b >= 0:
        return (a + b) * 0.5 * dt
    if a <= 0 and b <= 0:
        return 0.0
    hi = max(a, b)
    return hi * hi / (2 * abs(a - b)) * dt


@dataclass
class _Totals:
    """Energy accumulated over an interval: kWh / kvarh, per direction and per tariff."""

    imp_p: float = 0.0
    exp_p: float = 0.0
    imp_q: float = 0.0
    exp_q: float = 0.0
    imp_p_t: dict[int, float] = field(default_factory=lambda: dict.fromkeys(TARIFFS, 0.0))
    exp_p_t: dict[int, float] = field(default_factory=lambda: dict.fromkeys(TARIFFS, 0.0))

    @property
    def net_active(self) -> float:
        return self.imp_p - self.exp_p


class _Integrator:
    def __init__(self, profile: Profile) -> None:
        self.p = profile

    def integrate(self, t0: float, t1: float) -> _Totals:
        out = _Totals()
        if t1 <= t0:
            return out
        prof = self.p
        t = t0
        pa, qa = prof._interp(t)
        while t < t1:
            k = math.floor(t / STEP_S)
            nxt = min((k + 1) * STEP_S, t1)
            if nxt == (k + 1) * STEP_S:
                pb, qb = prof._knot(k + 1)
            else:
                pb, qb = prof._interp(nxt)
            dt_h = (nxt - t) / 3600.0
            ip = _pos_part(pa, pb, dt_h)
            ep = _pos_part(-pa, -pb, dt_h)
            out.imp_p += ip
            out.exp_p += ep
            out.imp_q += _pos_part(qa, qb, dt_h)
            out.exp_q += _pos_part(-qa, -qb, dt_h)
            tariff = _tariff_hour(((t / 3600.0) + prof.utc_offset_h) % 24)
            out.imp_p_t[tariff] += ip
            out.exp_p_t[tariff] += ep
            t, pa, qa = nxt, pb, qb
        return out


# ---------------------------------------------------------------------------- meter
PHASES = ("l1", "l2", "l3")

METER_KEYS: tuple[str, ...] = (
    *(f"voltage_{ph}" for ph in PHASES),
    *(f"current_{ph}" for ph in PHASES),
    *(f"active_power_{ph}" for ph in PHASES),
    *(f"reactive_power_{ph}" for ph in PHASES),
    *(f"power_factor_{ph}" for ph in PHASES),
    "active_power_total",
    "reactive_power_total",
    "apparent_power_total",
    "power_factor",
    "frequency",
    "energy_import_active",
    "energy_export_active",
    "energy_import_reactive",
    "energy_export_reactive",
    *(f"energy_import_active_t{t}" for t in TARIFFS),
    *(f"energy_export_active_t{t}" for t in TARIFFS),
)
"""Keys of `Meter.sample()`. Units: V, A, kW, kvar, kVA, Hz, kWh, kvarh; pf unitless."""


class Meter:
    """A three-phase meter driven by a profile; energy registers integrate its power exactly.

    Counters start at a seed-dependent reading (a meter already in service) at the first
    `sample()` and only ever grow: sampling an earlier time than the last one returns the
    counters unchanged (instantaneous values are still those of `ts`). Voltage stays near
    `nominal_v` (phase to neutral) with a daily swing against system load, a per-phase
    unbalance and noise, roughly within +-4 %.
    """

    def __init__(self, profile: Profile, *, seed: int | None = None, nominal_v: float = 230.0,
                 frequency_seed: int = 0) -> None:
        self.profile = profile
        self.seed = profile.seed if seed is None else seed
        self.nominal_v = nominal_v
        self.frequency_seed = frequency_seed
        w = [1.0 + 0.12 * unit_noise(self.seed, 51, i) for i in range(3)]
        total = sum(w)
        self.phase_share = tuple(x / total for x in w)
        self.phase_v_offset = tuple(0.008 * unit_noise(self.seed, 52, i) for i in range(3))
        scale = max(1.0, profile.peak_kw) * 2000.0  # several thousand hours of service
        self._start_import = round(scale * _unit01(self.seed, 53), 2)
        self._start_export = round(scale * 0.3 * _unit01(self.seed, 54), 2) if profile.kind == "solar" else 0.0
        self._start_q = round(scale * 0.4 * _unit01(self.seed, 55), 2)
        self._last_t: float | None = None
        self.totals = _Totals()
        self.totals.imp_p = self._start_import
        self.totals.exp_p = self._start_export
        self.totals.imp_q = self._start_q
        # the starting import reading is spread over the tariffs (60 / 25 / 15 %)
        for tar, share in zip(TARIFFS, (0.6, 0.25, 0.15), strict=True):
            self.totals.imp_p_t[tar] = round(self._start_import * share, 2)
            self.totals.exp_p_t[tar] = round(self._start_export * share, 2)
        self._integrator = _Integrator(profile)

    def voltage(self, ts: datetime, phase: int) -> float:
        """Phase-to-neutral voltage of phase 0..2 at `ts`."""
        t = _epoch_s(ts)
        hour, _, _ = self.profile._local(t)
        # the grid sags a little at the evening peak and rises at night
        daily = -0.015 * _gauss_bump(hour, 19.5, 2.0) + 0.012 * _gauss_bump(hour, 3.0, 2.5)
        feeder = 0.01 * _smooth_noise(self.seed, 56, t, 1800.0)
        fast = 0.003 * _smooth_noise(self.seed, 57 + phase, t, 30.0)
        rel = daily + feeder + fast + self.phase_v_offset[phase]
        return self.nominal_v * (1.0 + max(-0.09, min(0.09, rel)))

    def advance(self, ts: datetime) -> None:
        """Integrate the energy registers up to `ts` (no-op if `ts` is not later)."""
        t = _epoch_s(ts)
        if self._last_t is None:
            self._last_t = t
            return
        if t <= self._last_t:
            return
        d = self._integrator.integrate(self._last_t, t)
        tot = self.totals
        tot.imp_p += d.imp_p
        tot.exp_p += d.exp_p
        tot.imp_q += d.imp_q
        tot.exp_q += d.exp_q
        for tar in TARIFFS:
            tot.imp_p_t[tar] += d.imp_p_t[tar]
            tot.exp_p_t[tar] += d.exp_p_t[tar]
        self._last_t = t

    def sample(self, ts: datetime) -> dict[str, float]:
        """Every value of the meter at `ts` (see METER_KEYS), energy integrated up to `ts`."""
        self.advance(ts)
        t = _epoch_s(ts)
        p, q = self.profile._interp(t)
        out: dict[str, float] = {}
        s_total = math.hypot(p, q)
        for i, ph in enumerate(PHASES):
            v = self.voltage(ts, i)
            pi = p * self.phase_share[i]
            qi = q * self.phase_share[i]
            si = math.hypot(pi, qi)
            out[f"voltage_{ph}"] = v
            out[f"current_{ph}"] = si * 1000.0 / v
            out[f"active_power_{ph}"] = pi
            out[f"reactive_power_{ph}"] = qi
            out[f"power_factor_{ph}"] = abs(pi) / si if si > 0 else 1.0
        out["active_power_total"] = p
        out["reactive_power_total"] = q
        out["apparent_power_total"] = s_total
        out["power_factor"] = abs(p) / s_total if s_total > 0 else 1.0
        out["frequency"] = system_frequency(ts, self.frequency_seed)
        tot = self.totals
        out["energy_import_active"] = tot.imp_p
        out["energy_export_active"] = tot.exp_p
        out["energy_import_reactive"] = tot.imp_q
        out["energy_export_reactive"] = tot.exp_q
        for tar in TARIFFS:
            out[f"energy_import_active_t{tar}"] = tot.imp_p_t[tar]
            out[f"energy_export_active_t{tar}"] = tot.exp_p_t[tar]
        return out


def hour_floor(ts: datetime) -> datetime:
    """`ts` truncated to the hour (aware UTC)."""
    ts = ts.astimezone(UTC)
    return ts.replace(minute=0, second=0, microsecond=0)


def hourly_energy_kwh(profile: Profile, day: datetime) -> list[float]:
    """The 24 hourly energies (kWh, import minus export) of the UTC day starting at `day`."""
    d0 = hour_floor(day).replace(hour=0)
    return [profile.energy_kwh(d0 + timedelta(hours=h), d0 + timedelta(hours=h + 1)) for h in range(24)]
