"""pytest fixtures for loopback SSH test hosts (see ``sshhost.py``).

Wire them in with ``from tests.harness.fixtures import ssh_host, make_ssh_hosts``
in a conftest.py (or a test module).  Both skip the test when not root or when
mmdebstrap is missing, and fail instead when DEBSHIP_REQUIRE_ALL=1.
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


@pytest.fixture
def make_ssh_hosts(tmp_path):
    """A factory: ``make_ssh_hosts(n, **SSHHost options)`` -> n running hosts, all removed after the test."""
    require_root_host()
    from hostlab.rootfs import Root, cached_root
    from hostlab.sshhost import SSHHost

    lower = cached_root()
    with contextlib.ExitStack() as stack:

        def make(n: int = 1, **kw) -> list[SSHHost]:
            hosts = []
            for _ in range(n):
                root = stack.enter_context(Root(lower, workdir=tmp_path))
                hosts.append(stack.enter_context(SSHHost(root, workdir=tmp_path, **kw)))
            return hosts

        yield make


@pytest.fixture
def ssh_host(make_ssh_hosts):
    """One running loopback SSH host (user ``ops``, passwordless sudo), fresh for each test."""
    return make_ssh_hosts(1)[0]
