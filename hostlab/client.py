"""The test's side of a test host (loopback chroot, nspawn container or qemu guest):
its own key pair, known_hosts and an empty ssh_config, so tests never read
``~/.ssh``, and the ConnectOptions and HostSpec that reach the host."""

from __future__ import annotations

import dataclasses
import os
import subprocess
from pathlib import Path

from builder.ship.ssh import SSHConnection, connect
from builder.ship.sshconfig import ConnectOptions, HostSpec


class ClientSide:
    user = "ops"
    port: int
    connect_timeout = 30.0  # a booting VM guest needs longer

    def _open(self, start: bool) -> None:
        """Provision the host, then start it if asked; a failure closes whatever was made."""
        try:
            self._provision()
            if start:
                self.start()
        except BaseException:
            self.close()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def client_files(self, folder: Path) -> None:
        """Make the key pair (``key_path``), ``known_hosts`` (empty) and ``ssh_config`` (empty) in ``folder``."""
        self.key_path = folder / "id_ed25519"
        self.known_hosts = folder / "known_hosts"
        self.ssh_config = folder / "ssh_config"
        subprocess.run(
            [
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                f"{self.user}@debship-test",
                "-f",
                str(self.key_path),
            ],
            check=True,
            stdin=subprocess.DEVNULL,
        )
        self.known_hosts.touch()
        self.ssh_config.touch()

    def add_user(self, root, host_key: str, sudo_password: bool = False) -> None:
        """In ``root`` (a ``rootfs.Root``): the login user with this side's public key, sudo for
        everything (asking for the password ``debship`` when ``sudo_password``), and the host's key."""
        u, p = self.user, root.path
        # "*": no password but not locked (sshd without PAM refuses locked accounts)
        password = f"echo '{u}:debship' | chpasswd" if sudo_password else f"usermod -p '*' {u}"
        root.run(
            [
                "sh",
                "-c",
                f"useradd -m -s /bin/bash {u} && {password} && "
                f"install -d -m 0700 -o {u} -g {u} /home/{u}/.ssh && "
                f"ssh-keygen -q -t ed25519 -N '' -f {host_key}",
            ]
        )
        auth = p / "home" / u / ".ssh" / "authorized_keys"
        auth.write_text(self.public_key)
        auth.chmod(0o600)
        st = auth.parent.stat()
        os.chown(auth, st.st_uid, st.st_gid)
        rule = "ALL=(ALL:ALL) ALL" if sudo_password else "ALL=(ALL:ALL) NOPASSWD: ALL"
        sudoers = p / "etc" / "sudoers.d" / u
        sudoers.write_text(f"{u} {rule}\n")
        sudoers.chmod(0o440)

    @property
    def public_key(self) -> str:
        return Path(f"{self.key_path}.pub").read_text()

    @property
    def spec(self) -> HostSpec:
        return HostSpec("127.0.0.1", self.user, self.port)

    def options(self, **overrides) -> ConnectOptions:
        """ConnectOptions for this host: its key, its known_hosts, no agent, no ~/.ssh/config."""
        base = ConnectOptions(
            connect_timeout=self.connect_timeout,
            known_hosts=self.known_hosts,
            ssh_config=self.ssh_config,
            identity_file=self.key_path,
            use_agent=False,
        )
        return dataclasses.replace(base, **overrides)

    def connect(self, **overrides) -> SSHConnection:
        return connect(self.spec, self.options(**overrides))

    @property
    def address(self) -> str:
        """What ``ship --host`` takes."""
        return f"{self.user}@127.0.0.1:{self.port}"

    def ship_args(self) -> list[str]:
        """The `ship` options that log in to this host with its key and its known_hosts only."""
        return ["-i", str(self.key_path), "--known-hosts", str(self.known_hosts), "--ssh-config", str(self.ssh_config)]
