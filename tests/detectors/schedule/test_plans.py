from __future__ import annotations

from datetime import date

import pytest

from detectors.schedule.config import ScheduleConfig
from detectors.schedule.plans import PlanImportError, parse_csv, parse_json
from tests.detectors.schedule.helpers import make_config

DAY = "2026-12-02"


def long_csv(subject: str = "GEN-N", n: int = 24, value: float = 10.0, day: str = DAY) -> str:
    rows = ["day,subject,hour,value,unit"]
    rows += [f"{day},{subject},{h},{value},MWh" for h in range(1, n + 1)]
    return "\n".join(rows) + "\n"


def test_long_csv_parses(config: ScheduleConfig) -> None:
    imp = parse_csv(long_csv(), config, "plan.csv")
    assert len(imp.plans) == 1
    p = imp.plans[0]
    assert (p.day, p.subject, p.unit, len(p.values_mwh)) == (date(2026, 12, 2), "GEN-N", "MWh", 24)


def test_wide_csv_parses(config: ScheduleConfig) -> None:
    header = "day,subject,unit," + ",".join(f"h{h}" for h in range(1, 25))
    text = header + "\n" + f"{DAY},LOAD-S,MW," + ",".join(str(5 + h) for h in range(24)) + "\n"
    imp = parse_csv(text, config)
    assert imp.plans[0].values_mwh[0] == 5.0 and imp.plans[0].values_mwh[-1] == 28.0


def test_unknown_subject_names_line_and_column(config: ScheduleConfig) -> None:
    text = long_csv() + f"{DAY},NOBODY,1,3.0,MWh\n"
    with pytest.raises(PlanImportError) as ei:
        parse_csv(text, config, "plan.csv")
    issue = ei.value.issues[0]
    assert (issue.line, issue.column) == (26, "subject")
    assert "unknown subject 'NOBODY'" in str(ei.value) and "plan.csv: line 26, column subject" in str(ei.value)


def test_wrong_number_of_hours(config: ScheduleConfig) -> None:
    with pytest.raises(PlanImportError, match=r"23 of 24 hours given, missing hour\(s\) 24"):
        parse_csv(long_csv(n=23), config)
    with pytest.raises(PlanImportError, match="hour 25 does not exist"):
        parse_csv(long_csv(n=25), config)


def test_dst_day_needs_its_own_number_of_hours() -> None:
    cfg = make_config(timezone="Europe/Berlin")
    assert len(parse_csv(long_csv(n=25, day="2026-10-25"), cfg).plans[0].values_mwh) == 25
    with pytest.raises(PlanImportError, match="has 24 hourly values, the day has 23 hours"):
        parse_json({"plans": [{"day": "2026-03-29", "subject": "GEN-N", "values": [1.0] * 24}]}, cfg)


def test_negative_value_refused_with_line(config: ScheduleConfig) -> None:
    text = long_csv().replace(f"{DAY},GEN-N,7,10.0", f"{DAY},GEN-N,7,-1.5")
    with pytest.raises(PlanImportError) as ei:
        parse_csv(text, config)
    assert ei.value.issues[0].line == 8 and ei.value.issues[0].column == "value"
    assert "negative value -1.5 not allowed for subject 'GEN-N'" in str(ei.value)
    ok = make_config(subjects=[{"name": "GEN-N", "zone": "North", "kind": "generator", "allow_negative": True}])
    assert parse_csv(text, ok).plans[0].values_mwh[6] == -1.5


def test_bad_numbers_and_duplicates_all_reported(config: ScheduleConfig) -> None:
    text = long_csv().replace(f"{DAY},GEN-N,3,10.0", f"{DAY},GEN-N,3,abc") + f"{DAY},GEN-N,5,1.0,MWh\n"
    with pytest.raises(PlanImportError) as ei:
        parse_csv(text, config)
    msgs = [str(i) for i in ei.value.issues]
    assert any("line 4, column value: not a number: 'abc'" in m for m in msgs)


def test_json_errors_name_the_path(config: ScheduleConfig) -> None:
    doc = {"plans": [{"day": DAY, "subject": "GEN-N", "values": [1.0] * 24},
                     {"day": DAY, "subject": "LOAD-S", "values": [1.0] * 23 + ["x"]}]}
    with pytest.raises(PlanImportError) as ei:
        parse_json(doc, config)
    assert ei.value.issues[0].column == "plans[1].values[23]"
    with pytest.raises(PlanImportError, match="expected an object with a list 'plans'"):
        parse_json([], config)


def test_empty_and_headerless(config: ScheduleConfig) -> None:
    with pytest.raises(PlanImportError, match="empty file"):
        parse_csv("", config)
    with pytest.raises(PlanImportError, match="header lacks the column 'subject'"):
        parse_csv("day,hour,value\n", config)
