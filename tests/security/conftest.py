"""The security tier: loopback SSH hosts (tests/conftest.py) with a local user, signing keys and a
repository served on 127.0.0.1 (tests/harness/aptrepo.py)."""

from tests.harness.aptrepo import keys, server  # noqa: F401  (fixtures)
