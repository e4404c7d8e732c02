"""The system tier: booted systemd-nspawn containers (see hostlab/nspawn.py)."""

from tests.harness.aptrepo import keys, server  # noqa: F401  (fixtures)
from tests.harness.booted import sample  # noqa: F401  (a fixture)
from tests.harness.fixtures_nspawn import (  # noqa: F401
    booted_host,
    make_booted_hosts,
    pytest_terminal_summary,
    suite_booted_host,
)
