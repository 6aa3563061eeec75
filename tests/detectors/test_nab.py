"""The NAB scorer against hand-computed cases, causality of the stream detectors, and the
evaluate command on a tiny synthetic corpus."""

from __future__ import annotations

import csv
import json
import math
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from collector.cli import main
from detectors import nab
from detectors.evaluate import evaluate_nab, run_stream
from detectors.online import DETECTORS


def test_sigmoid_sample_values() -> None:
    assert nab.sigmoid(-1) == pytest.approx(0.98661, abs=1e-5)
    assert nab.sigmoid(-0.5) == pytest.approx(0.84828, abs=1e-5)
    assert nab.sigmoid(0) == 0
    assert nab.sigmoid(1) == pytest.approx(-0.98661, abs=1e-5)
    assert nab.sigmoid(3.01) == -1


def test_probationary_period() -> None:
    assert nab.probationary_rows(20) == 3
    assert nab.probationary_rows(4000) == 600
    assert nab.probationary_rows(100_000) == 750


def _file(n: int, windows: list[tuple[int, int]], key: str = "c/f.csv") -> nab.NabFile:
    return nab.NabFile(key=key, timestamps=[str(i) for i in range(n)], values=np.zeros(n), windows=windows)


def test_row_weights_hand_computed() -> None:
    w, win = nab.row_weights(20, [(10, 14)], nab.PROFILES["standard"])
    assert w[5] == pytest.approx(-0.11)  # before any window: full penalty
    assert w[10] == pytest.approx(1.0)  # left edge
    assert w[12] == pytest.approx(math.tanh(1.5) / math.tanh(2.5))  # y = -3/5
    assert w[14] == pytest.approx(math.tanh(0.5) / math.tanh(2.5))  # y = -1/5
    assert w[16] == pytest.approx(-0.11 * math.tanh(1.25))  # y = (16-14)/(5-1)
    assert w[19] == pytest.approx(-0.11 * math.tanh(2.5 * 5 / 4))
    assert list(win[9:16]) == [-1, 0, 0, 0, 0, 0, -1]


def test_corpus_score_hand_computed() -> None:
    f = _file(20, [(10, 14)])
    s = np.zeros(20)
    s[1] = 1.0  # probationary: ignored
    s[12] = 0.9  # TP, y = -0.6
    s[16] = 0.8  # FP just after the window
    s[5] = 0.7  # FP before the window (full penalty)
    res = nab.score_corpus([f], {f.key: s}, nab.PROFILES["standard"])
    tp = math.tanh(1.5) / math.tanh(2.5)
    assert res.threshold == 0.9
    assert res.raw == pytest.approx(tp)
    assert res.null == -1 and res.perfect == 1
    assert res.normalized == pytest.approx(100 * (tp + 1) / 2)
    # the next candidates are worse: 0.8 adds -0.11 tanh(1.25), 0.7 adds -0.11
    assert tp - 0.11 * math.tanh(1.25) < res.raw


def test_only_earliest_detection_in_window_counts_and_fp_rows_each_count() -> None:
    f = _file(40, [(10, 19)])  # P = 6
    s = np.zeros(40)
    s[10:20] = 1.0  # whole window detected: worth the left edge only
    s[30] = 1.0  # FP at y = 11/9
    s[31] = 1.0  # FP at y = 12/9
    res = nab.score_corpus([f], {f.key: s}, nab.PROFILES["reward_low_FN_rate"])
    expected = 1.0 - 0.11 * math.tanh(2.5 * 11 / 9) - 0.11 * math.tanh(2.5 * 12 / 9)
    assert res.raw == pytest.approx(expected)
    assert res.normalized == pytest.approx(100 * (expected + 2) / (1 + 2))
    assert res.tp == 1 and res.fp == 2 and res.fn == 0


def test_no_detection_beats_bad_detections_and_ties_take_highest_threshold() -> None:
    big = _file(400, [(200, 219)])
    s = np.full(400, 0.5)  # the null detector: everything detected (many FPs) or nothing
    res = nab.score_corpus([big], {big.key: s}, nab.PROFILES["standard"])
    assert res.threshold == 1.1 and res.normalized == 0 and res.fn == 1
    f = _file(20, [(10, 14)])
    s2 = np.zeros(20)
    s2[10] = 0.6
    s2[11] = 0.6
    res2 = nab.score_corpus([f], {f.key: s2}, nab.PROFILES["standard"])
    assert res2.threshold == 0.6 and res2.normalized == pytest.approx(100)


def test_threshold_is_shared_across_files_and_missed_windows_cost_a_fn() -> None:
    a = _file(20, [(10, 14)], "c/a.csv")
    b = _file(20, [(4, 8)], "c/b.csv")
    sa = np.zeros(20)
    sa[10] = 0.9
    sb = np.zeros(20)
    sb[15] = 0.95  # FP in b after its window: y = 7/4 -> -0.11 tanh(4.375)
    res = nab.score_corpus([a, b], {a.key: sa, b.key: sb}, nab.PROFILES["reward_low_FP_rate"])
    # theta 0.9: TP(a)=1, FN(b)=-1, FP(b)=-0.22*tanh(4.375)
    raw = 1 - 1 - 0.22 * math.tanh(4.375)
    assert res.threshold == 0.9 and res.raw == pytest.approx(raw)
    assert res.per_file["c/a.csv"] == pytest.approx(1.0)
    assert res.per_file["c/b.csv"] == pytest.approx(-1 - 0.22 * math.tanh(4.375))
    assert res.normalized == pytest.approx(100 * (raw + 2) / 4)


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_stream_detectors_are_causal(name: str) -> None:
    rng = np.random.default_rng(3)
    x = np.sin(np.arange(3000) / 20) + rng.normal(0, 0.1, 3000)
    t = 1.7e9 + np.arange(3000) * 300.0  # 5-minute rows: the seasonal lag is 288 rows
    full = run_stream(DETECTORS[name], x, times=t)
    y = x.copy()
    y[1800:] = rng.normal(5, 3, 1200)  # change the future drastically
    t2 = t.copy()
    t2[1800:] += 7.0  # and its timestamps
    changed = run_stream(DETECTORS[name], y, times=t2)
    np.testing.assert_array_equal(full[:1800], changed[:1800])
    assert not np.array_equal(full[1800:], changed[1800:])
    # chunking does not matter either
    np.testing.assert_array_equal(full, run_stream(DETECTORS[name], x, chunk=7, times=t))
    assert np.all((full >= 0) & (full <= 1))


def _tiny_corpus(tmp: Path) -> tuple[Path, Path]:
    data = tmp / "data"
    (data / "synthetic").mkdir(parents=True)
    rng = np.random.default_rng(5)
    t0 = datetime(2024, 1, 1)
    windows: dict[str, list[list[str]]] = {}
    for k, spike_at in enumerate((1500, None)):
        n = 2000
        v = 10 + np.sin(np.arange(n) * 2 * np.pi / 100) + rng.normal(0, 0.05, n)
        key = f"synthetic/s{k}.csv"
        if spike_at is not None:
            v[spike_at:spike_at + 5] += 8
            windows[key] = [[(t0 + timedelta(minutes=5 * (spike_at - 50))).strftime("%Y-%m-%d %H:%M:%S.%f"),
                             (t0 + timedelta(minutes=5 * (spike_at + 50))).strftime("%Y-%m-%d %H:%M:%S.%f")]]
        else:
            windows[key] = []
        with (data / key).open("w") as fh:
            fh.write("timestamp,value\n")
            for i in range(n):
                fh.write(f"{(t0 + timedelta(minutes=5 * i)):%Y-%m-%d %H:%M:%S},{v[i]:.4f}\n")
    wfile = tmp / "windows.json"
    wfile.write_text(json.dumps(windows))
    return data, wfile


def test_evaluate_tiny_corpus_and_emit(tmp_path: Path) -> None:
    data, wfile = _tiny_corpus(tmp_path)
    emit = tmp_path / "out"
    rep = evaluate_nab(data, wfile, emit=emit)
    assert rep.files == 2 and rep.windows == 1
    assert rep.results["standard"].normalized > 50  # a clear spike is found
    rows = list(csv.DictReader((emit / "synthetic/s0.csv").open()))
    assert len(rows) == 2000 and list(rows[0]) == ["timestamp", "value", "anomaly_score"]
    assert all(0 <= float(r["anomaly_score"]) <= 1 for r in rows)
    # the emitted scores reproduce the reported score
    files = nab.load_corpus(data, wfile)
    emitted = {f.key: np.array([float(r["anomaly_score"]) for r in csv.DictReader((emit / f.key).open())])
               for f in files}
    again = nab.score_all(files, emitted)
    assert again["standard"].normalized == pytest.approx(rep.results["standard"].normalized)


def test_cli_evaluate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, wfile = _tiny_corpus(tmp_path)
    rc = main(["detectors", "evaluate", "--data", str(data), "--windows", str(wfile), "--json",
               "--detector", "residual"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["profiles"]) == {"standard", "reward_low_FP_rate", "reward_low_FN_rate"}
    assert main(["detectors", "evaluate", "--data", str(tmp_path / "missing"), "--windows", str(wfile)]) == 2
    assert main(["detectors", "evaluate", "--data", str(data), "--windows", str(wfile), "--detector", "nope"]) == 2


def test_bad_timestamps_name_the_file_row_and_window(tmp_path: Path) -> None:
    data = tmp_path / "data" / "c"
    data.mkdir(parents=True)
    (data / "a.csv").write_text("timestamp,value\n2024-01-01 00:00:00,1\n\n2024-01-01 00:05,2\n")
    with pytest.raises(ValueError, match=r"a\.csv:4: field timestamp: unparseable timestamp '2024-01-01 00:05'"):
        nab.load_corpus(tmp_path / "data", None)
    (data / "a.csv").write_text("timestamp,value\n2024-01-01 00:00:00,1\n")
    win = tmp_path / "w.json"
    win.write_text('{"c/a.csv": [["2024-01-01 00:00:00.000000", "yesterday"]]}')
    with pytest.raises(ValueError, match=r"w\.json: c/a\.csv\[0\]: unparseable timestamp 'yesterday'"):
        nab.load_corpus(tmp_path / "data", win)
