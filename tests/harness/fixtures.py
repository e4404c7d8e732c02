"""pytest fixtures for loopback SSH test hosts (see ``sshhost.py``).

Wire them in with ``from tests.harness.fixtures import ssh_host, make_ssh_hosts``
in a conftest.py (or a test module).  They skip the test when not root or when
mmdebstrap is missing, and fail instead when DEBSHIP_REQUIRE_ALL=1.

A host is a root of Debian 12 (bookworm) unless asked for another suite:
``make_ssh_hosts(1, suite="trixie")``, or ``suite_ssh_host``, one host for a whole
module, parametrized with the suite (``indirect=True``).
"""

from __future__ import annotations

import contextlib
import os

import pytest

from tests.harness.helpers import _missing, require_tool


def require_root_host() -> None:
    """Skip (or fail under DEBSHIP_REQUIRE_ALL=1) unless a test host can be made here."""
    if os.geteuid() != 0:
        _missing("root (test hosts mount overlays, chroot and unshare)")
    for tool in ("mmdebstrap", "unshare", "ssh-keygen"):
        require_tool(tool)


@contextlib.contextmanager
def ssh_host_factory(workdir):
    """``make(n, suite=..., **SSHHost options)`` -> n running hosts of a cached root of ``suite``
    (default bookworm), all removed when the block ends."""
    require_root_host()
    from hostlab.rootfs import SUITE, Root, cached_root
    from hostlab.sshhost import SSHHost

    with contextlib.ExitStack() as stack:

        def make(n: int = 1, suite: str = SUITE, **kw) -> list[SSHHost]:
            lower = cached_root(suite=suite)
            hosts = []
            for _ in range(n):
                root = stack.enter_context(Root(lower, workdir=workdir))
                hosts.append(stack.enter_context(SSHHost(root, workdir=workdir, **kw)))
            return hosts

        yield make


@pytest.fixture
def make_ssh_hosts(tmp_path):
    """A factory: ``make_ssh_hosts(n, suite="bookworm", **SSHHost options)`` -> n running hosts, all
    removed after the test."""
    with ssh_host_factory(tmp_path) as make:
        yield make


@pytest.fixture(scope="module")
def suite_ssh_host(request, tmp_path_factory):
    """One loopback host of the Debian suite ``request.param`` (parametrize it with ``indirect=True``),
    shared by the module's tests: they run in file order on the state the previous one left."""
    with ssh_host_factory(tmp_path_factory.mktemp(f"host-{request.param}")) as make:
        yield make(1, suite=request.param)[0]


@pytest.fixture
def ssh_host(make_ssh_hosts):
    """One running loopback SSH host (user ``ops``, passwordless sudo), fresh for each test."""
    return make_ssh_hosts(1)[0]
