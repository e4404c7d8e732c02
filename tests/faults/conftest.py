"""The fault tier: faults produced for real (booted containers here, loopback SSH hosts too)."""

from tests.harness.booted import sample  # noqa: F401  (a fixture)
from tests.harness.fixtures_nspawn import booted_host, make_booted_hosts, pytest_terminal_summary  # noqa: F401
