"""Who and where: the SSH configuration, below both the connector (``ssh``) and host-key
checking (``hostkeys``).

``HostSpec`` is a host as the user wrote it, ``ConnectOptions`` how to reach it, and
``resolve()`` follows ``~/.ssh/config`` (HostName, User, Port, IdentityFile, ProxyJump) into
a ``Hop``: where to connect, as whom, with which keys, through which jump hosts.
"""

from __future__ import annotations

import getpass
import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

from builder.errors import RemoteError, UsageError

HOST_KEY_POLICIES = ("accept-new", "strict", "pin")
_SPEC_RE = re.compile(r"\[(?P<v6>[^\]]+)\](?::(?P<p6>\d+))?|(?P<host>[\w.-]+)(?::(?P<port>\d+))?")


@dataclass(frozen=True)
class HostSpec:
    """Where to connect, as the user wrote it: ``[user@]host[:port]``, ``[::1]:2222``."""

    host: str
    user: str | None = None
    port: int | None = None

    @classmethod
    def parse(cls, text: str) -> HostSpec:
        user, at, rest = text.strip().rpartition("@")
        bad = UsageError(f"host {text!r}: not a host; write [user@]host[:port], e.g. ops@10.0.0.5:2222 or [::1]:2222")
        if (at and not re.fullmatch(r"[\w.$-]+", user)) or not rest:
            raise bad
        bare_v6 = rest.count(":") >= 2 and "[" not in rest
        m = None if bare_v6 else _SPEC_RE.fullmatch(rest)
        if not (bare_v6 or m):
            raise bad
        host, port = (m["v6"] or m["host"], m["p6"] or m["port"]) if m else (rest, None)
        try:
            if ":" in host:
                ipaddress.IPv6Address(host)
            if port is not None and not 0 < int(port) < 65536:
                raise ValueError(port)
        except ValueError:
            raise bad from None
        return cls(host, user or None, int(port) if port else None)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host and self.port else self.host
        return (f"{self.user}@" if self.user else "") + host + (f":{self.port}" if self.port else "")


@dataclass(frozen=True)
class ConnectOptions:
    connect_timeout: float = 180.0
    host_keys: str = "accept-new"  # | "strict" | "pin"
    pinned_key: str | None = None  # "ssh-ed25519 AAAA..." or "SHA256:..."
    known_hosts: Path | None = None  # default ~/.ssh/known_hosts
    ssh_config: Path | None = None  # default ~/.ssh/config
    identity_file: Path | None = None
    use_agent: bool = True


@dataclass(frozen=True)
class Hop:
    """One SSH server on the way (a jump host or the target), after ~/.ssh/config."""

    label: str
    hostname: str
    port: int
    user: str
    keys: tuple[Path, ...]
    jumps: tuple[Hop, ...] = ()

    @property
    def key_name(self) -> str:  # its name in known_hosts, as OpenSSH writes it
        return self.hostname if self.port == 22 else f"[{self.hostname}]:{self.port}"


def resolve(spec: HostSpec, opts: ConnectOptions, with_jumps: bool = True) -> Hop:
    """HostSpec + ssh config -> where to connect, as whom, with which keys, through which jump hosts."""
    import paramiko  # here: a HostSpec or a local connection needs no paramiko

    path = opts.ssh_config or Path("~/.ssh/config").expanduser()
    try:
        cfg = paramiko.SSHConfig.from_path(str(path)).lookup(spec.host) if path.is_file() else {}
    except (OSError, paramiko.SSHException, ValueError) as e:
        raise RemoteError(f"host {spec}: cannot read ssh config {path}: {e}; fix or remove that file") from e
    jump = cfg.get("proxyjump", "none") if with_jumps else "none"
    if "proxycommand" in cfg and jump == "none":
        raise RemoteError(f"host {spec}: ProxyCommand in {path} is not supported; use ProxyJump")
    keys = [opts.identity_file] if opts.identity_file else []
    keys += [Path(p).expanduser() for p in cfg.get("identityfile", []) if Path(p).expanduser().is_file()]
    jumps = () if jump.lower() == "none" else tuple(resolve(HostSpec.parse(j), opts, False) for j in jump.split(","))
    return Hop(
        str(spec),
        cfg.get("hostname", spec.host),
        int(spec.port or cfg.get("port", 22)),
        spec.user or cfg.get("user") or getpass.getuser(),
        tuple(keys),
        jumps,
    )


def check_options(opts: ConnectOptions, name: str) -> None:
    if opts.host_keys not in HOST_KEY_POLICIES:
        raise RemoteError(f"host {name}: host_keys={opts.host_keys!r}; use one of {', '.join(HOST_KEY_POLICIES)}")
    pin = opts.pinned_key or ""
    if opts.host_keys == "pin" and not (pin.startswith("SHA256:") or len(pin.split()) >= 2):
        raise RemoteError(
            f"host {name}: host_keys='pin' needs pinned_key as 'ssh-ed25519 AAAA...' or 'SHA256:...' "
            "(ssh-keygen -lf the host's /etc/ssh/ssh_host_ed25519_key.pub)"
        )
