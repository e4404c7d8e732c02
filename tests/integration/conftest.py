"""The integration tier: loopback SSH hosts (tests/conftest.py) and the sample's .debs to ship to them."""

from tests.harness.applying import apply_debs  # noqa: F401  (a fixture)
from tests.harness.aptrepo import keys, server  # noqa: F401  (fixtures)
from tests.harness.shipping import debs  # noqa: F401  (a fixture)
