from __future__ import annotations

import pytest

from detectors.schedule.config import ScheduleConfig
from tests.detectors.schedule.helpers import make_config


@pytest.fixture
def config() -> ScheduleConfig:
    return make_config()
