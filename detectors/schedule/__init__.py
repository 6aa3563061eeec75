"""Daily-schedule execution control: plans against metered actuals, hour by hour.

Public surface: `ScheduleConfig` (the `[schedule]` section), `build()` -> `ScheduleService`,
`parse_csv` / `parse_json` (plan imports), `PlanImportError`.
"""

from detectors.schedule.config import ScheduleConfig
from detectors.schedule.plans import PlanImport, PlanImportError, parse_csv, parse_json

__all__ = ["PlanImport", "PlanImportError", "ScheduleConfig", "parse_csv", "parse_json"]
