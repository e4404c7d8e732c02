"""pytest fixtures for booted test hosts (see ``nspawn.py``): systemd really runs.

Wire them in with ``from tests.harness.fixtures_nspawn import booted_host, make_booted_hosts``
in a conftest.py (or a test module); add ``pytest_terminal_summary`` there too
to print each host's boot timings at the end of the run.  The fixtures skip
the test when not root or when a tool is missing, and fail instead when
DEBSHIP_REQUIRE_ALL=1.  A host boots a Debian 12 (bookworm) root unless asked
for another suite: ``make_booted_hosts(1, suite="trixie")``, or
``suite_booted_host``, one container for a whole module, parametrized with the
suite (``indirect=True``).
"""

from __future__ import annotations

import contextlib
import os
import time

import pytest

from tests.harness.helpers import _missing, require_tool

# One row per host the fixtures made: test id, boot-to-SSH of each boot, reboots, seconds alive.
TIMINGS: list[dict] = []


def require_nspawn_host() -> None:
    """Skip (or fail under DEBSHIP_REQUIRE_ALL=1) unless a container can be booted here."""
    if os.geteuid() != 0:
        _missing("root (booted hosts mount overlays and run systemd-nspawn)")
    for tool in ("mmdebstrap", "systemd-nspawn", "nsenter", "unshare", "ssh-keygen"):
        require_tool(tool)


@contextlib.contextmanager
def booted_host_factory(workdir, test_id: str):
    """``make(n, cloud=False, suite="bookworm", **NspawnHost options)`` -> n booted hosts of a cached
    root of ``suite``, all powered off when the block ends (``cloud``: a root with cloud-init, for
    ``user_data=``); each host's boot timings are recorded under ``test_id``."""
    require_nspawn_host()
    from hostlab.nspawn import BOOT_PACKAGES, CLOUD_PACKAGES, NspawnHost
    from hostlab.rootfs import SUITE, Root, cached_root

    made: list[tuple[NspawnHost, float]] = []
    with contextlib.ExitStack() as stack:

        def make(n: int = 1, cloud: bool = False, suite: str = SUITE, **kw) -> list[NspawnHost]:
            lower = cached_root(CLOUD_PACKAGES if cloud else BOOT_PACKAGES, suite=suite)
            hosts = []
            for _ in range(n):
                t0 = time.monotonic()
                root = stack.enter_context(Root(lower, workdir=workdir))
                host = stack.enter_context(NspawnHost(root, workdir=workdir, **kw))
                made.append((host, t0))
                hosts.append(host)
            return hosts

        try:
            yield make
        finally:
            for host, t0 in made:
                TIMINGS.append(
                    {
                        "test": test_id,
                        "machine": host.machine,
                        "boot_to_ssh": [b.ssh_after for b in host.boots],
                        "reboots": host.reboots,
                        "alive": round(time.monotonic() - t0, 1),
                    }
                )


@pytest.fixture
def make_booted_hosts(request, tmp_path):
    """A factory: ``make_booted_hosts(n, cloud=False, suite="bookworm", **NspawnHost options)`` -> n booted
    hosts, all powered off after the test (``cloud``: a root with cloud-init, for ``user_data=``)."""
    with booted_host_factory(tmp_path, request.node.nodeid) as make:
        yield make


@pytest.fixture(scope="module")
def suite_booted_host(request, tmp_path_factory):
    """One booted container of the Debian suite ``request.param`` (parametrize it with ``indirect=True``),
    shared by the module's tests: they run in file order on the state the previous one left."""
    with booted_host_factory(tmp_path_factory.mktemp(f"booted-{request.param}"), request.node.nodeid) as make:
        yield make(1, suite=request.param)[0]


@pytest.fixture
def booted_host(make_booted_hosts):
    """One booted container (systemd as PID 1, sshd on its own loopback port, user ``ops``), fresh for each test."""
    return make_booted_hosts(1)[0]


def pytest_terminal_summary(terminalreporter):
    """Boot timings of every booted host, after the run (import this hook into a conftest.py)."""
    if not TIMINGS:
        return
    tr = terminalreporter
    tr.section("booted hosts (systemd-nspawn)")
    for t in TIMINGS:
        boots = ", ".join("-" if s is None else f"{s:.1f}s" for s in t["boot_to_ssh"])
        tr.write_line(f"{t['test']}: boot to SSH {boots}; reboots {t['reboots']}; host alive {t['alive']:.1f}s")
    firsts = [t["boot_to_ssh"][0] for t in TIMINGS if t["boot_to_ssh"] and t["boot_to_ssh"][0] is not None]
    if firsts:
        tr.write_line(f"first boot to SSH: min {min(firsts):.1f}s, max {max(firsts):.1f}s over {len(firsts)} host(s)")
