from __future__ import annotations

from detectors.schedule.config import ScheduleConfig


def make_config(**over: object) -> ScheduleConfig:
    raw: dict[str, object] = {
        "timezone": "Asia/Almaty",
        "tolerance_pct": 5.0,
        "tolerance_mwh": 0.05,
        "subjects": [
            {"name": "GEN-N", "zone": "North", "kind": "generator",
             "points": [{"point": "gen.ea_export", "sign": 1, "unit": "kWh"}]},
            {"name": "LOAD-S", "zone": "South", "kind": "consumer",
             "points": [{"point": "load.ea_import", "sign": -1, "unit": "kWh", "loss_factor": 0.02}]},
            {"name": "MINER-N", "zone": "North", "kind": "miner",
             "points": [{"point": "miner.ea_import", "sign": -1, "unit": "kWh"}]},
            {"name": "PLANT-W", "zone": "West", "kind": "generator",
             "points": [{"point": "plantw.p", "sign": 1, "kind": "power", "unit": "kW"}]},
        ],
    }
    raw.update(over)
    return ScheduleConfig.model_validate(raw)

