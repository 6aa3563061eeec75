"""`gridwatch check-config FILE`: every error as `file: key.path: reason` (exit 2) or a summary."""

from __future__ import annotations

import argparse
from collections import defaultdict
from typing import Any

from collector.runtime import load_or_report
from core.config import GridWatchConfig


def register(sub: Any) -> None:
    """Add the `check-config` command."""
    p: argparse.ArgumentParser = sub.add_parser("check-config", help="validate a configuration file")
    p.add_argument("file", nargs="?", help="configuration file (TOML)")
    p.add_argument("-c", "--config", dest="config", help="configuration file (alternative to FILE)")
    p.set_defaults(handler=run)


def summary(cfg: GridWatchConfig) -> str:
    """What will be collected: sources, devices and points per kind."""
    per_kind: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for s in cfg.sources:
        k = per_kind[s.kind]
        k[0] += 1
        k[1] += len(s.devices)
        k[2] += len(s.points)
    lines = [f"{cfg.file}: OK"]
    for kind in sorted(per_kind):
        src, dev, pts = per_kind[kind]
        lines.append(f"  {kind}: {src} source(s), {dev} device(s), {pts} point(s)")
    if not per_kind:
        lines.append("  no sources configured")
    total = sum(v[2] for v in per_kind.values())
    lines.append(f"  total: {len(cfg.sources)} source(s), {total} point(s)")
    extra = ", ".join(sorted(cfg.sections)) or "none"
    lines.append(f"  storage: {(cfg.storage.dsn and 'dsn') or f'embedded in {cfg.storage.embedded_dir}'};"
                 f" api: {cfg.api.host}:{cfg.api.port} ({'on' if cfg.api.enabled else 'off'}); sections: {extra}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Validate and print errors (2) or the summary (0)."""
    path = args.file or args.config
    if not path:
        print("check-config: give the configuration file (gridwatch check-config FILE)")
        return 2
    cfg = load_or_report(path)
    if cfg is None:
        return 2
    print(summary(cfg))
    return 0
