"""Generate the dashboards' JSON (`gridwatch dashboards build`) and compare with the committed files.

`render()` returns {file name: JSON text}; the text is deterministic (sorted keys, fixed
indentation) so the committed files can be checked for drift (`check()`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from grafanalib._gen import DashboardEncoder

from dashboards import common
from dashboards.definitions import ALL

BUILD_DIR = Path(__file__).resolve().parent / "build"


def dashboards_json() -> dict[str, dict[str, Any]]:
    """{file stem: dashboard as plain JSON data}. Rebuilds the query registry."""
    common.QUERIES.clear()
    out: dict[str, dict[str, Any]] = {}
    for stem, fn in ALL.items():
        data = json.loads(json.dumps(fn().to_json_data(), cls=DashboardEncoder))
        out[stem] = data
    return out


def render() -> dict[str, str]:
    """{file name: JSON text} of every dashboard."""
    return {f"{stem}.json": json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
            for stem, data in dashboards_json().items()}


def write(out_dir: Path = BUILD_DIR) -> list[Path]:
    """Write every dashboard into `out_dir`; remove stale *.json there. Returns the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = render()
    for old in out_dir.glob("*.json"):
        if old.name not in files:
            old.unlink()
    written = []
    for name, text in files.items():
        path = out_dir / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def check(out_dir: Path = BUILD_DIR) -> list[str]:
    """File names whose committed JSON differs from a fresh build (missing or extra included)."""
    files = render()
    diffs = [n for n, text in files.items()
             if not (out_dir / n).exists() or (out_dir / n).read_text(encoding="utf-8") != text]
    diffs += [p.name for p in out_dir.glob("*.json") if p.name not in files]
    return sorted(diffs)
