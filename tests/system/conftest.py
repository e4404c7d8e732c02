"""The system tier: booted systemd-nspawn containers (see hostlab/nspawn.py)."""
from tests.harness.fixtures_nspawn import booted_host, make_booted_hosts, pytest_terminal_summary  # noqa: F401
