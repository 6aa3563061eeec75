"""`python -m tests.collector.run_fake ARGS`: the gridwatch CLI with the test-only fake kind."""

import sys

from collector.cli import main
from tests.collector import fakes

fakes.install()
sys.exit(main(sys.argv[1:]))
