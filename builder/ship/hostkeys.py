"""Who the host is and who we are: host-key checking (OpenSSH's accept-new, strict, a pinned
key), known_hosts, and logging in with keys (agent, ssh_config's IdentityFile, the default
keys).  Used by the connector ``ssh`` (connecting, running, uploading); who and where to
connect is ``sshconfig``'s, below both."""

from __future__ import annotations

import base64
import hashlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import paramiko

from builder.errors import RemoteError
from builder.ship.sshconfig import ConnectOptions, Hop

_KNOWN_HOSTS_LOCK = threading.Lock()
_DEFAULT_KNOWN_HOSTS = Path("~/.ssh/known_hosts")


def _read_known(path: Path) -> paramiko.HostKeys:
    """OpenSSH known_hosts (plain and hashed names); @-marker lines and lines paramiko cannot read are skipped."""
    keys = paramiko.HostKeys()
    lines = path.read_text(errors="replace").splitlines() if path.is_file() else []
    for n, line in enumerate(lines, 1):
        line = line.strip()
        try:
            entry = None if line.startswith(("#", "@")) else paramiko.hostkeys.HostKeyEntry.from_line(line, n)
        except Exception:  # not a key paramiko knows: no key of ours either
            entry = None
        for name in entry.hostnames if entry else ():
            keys.add(name, entry.key.get_name(), entry.key)
    return keys


def prefer_key_types(t: paramiko.Transport, hop: Hop, opts: ConnectOptions) -> None:
    """Ask the server for the key type we already know (as OpenSSH does), so a known host is not 'changed'."""
    if opts.host_keys == "pin":
        known = [] if opts.pinned_key.startswith("SHA256:") else opts.pinned_key.split()[:1]
    else:
        known = list(_read_known(opts.known_hosts or _DEFAULT_KNOWN_HOSTS.expanduser()).lookup(hop.key_name) or {})
    names = [n for k in known for n in (["rsa-sha2-512", "rsa-sha2-256", k] if k == "ssh-rsa" else [k])]
    sec = t.get_security_options()
    first = [n for n in names if n in sec.key_types]
    if first:
        sec.key_types = first + [n for n in sec.key_types if n not in first]


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's SHA256 fingerprint of a key, as ``ssh-keygen -lf`` prints it."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")


def check_host_key(hop: Hop, key: paramiko.PKey, opts: ConnectOptions) -> None:
    name, offered = hop.key_name, f"{key.get_name()} {fingerprint(key)}"
    if opts.host_keys == "pin":
        pin = opts.pinned_key.strip()
        if pin.rstrip("=") == fingerprint(key) or pin.split()[:2] == [key.get_name(), key.get_base64()]:
            return
        raise RemoteError(
            f"host {hop.label}: host key {offered} is not the pinned key {pin[:60]}; check that you "
            "pinned this host's key (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub on it)"
        )
    path = opts.known_hosts or _DEFAULT_KNOWN_HOSTS.expanduser()
    with _KNOWN_HOSTS_LOCK:
        known = _read_known(path).lookup(name)
        if known:
            old = known.get(key.get_name())
            if old is not None and old.asbytes() == key.asbytes():
                return
            was = ", ".join(f"{k.get_name()} {fingerprint(k)}" for k in known.values())
            fix = f"ssh-keygen -R '{name}'" + ("" if opts.known_hosts is None else f" -f '{path}'")
            raise RemoteError(
                f"host {hop.label}: host key CHANGED (now {offered}, {path} has {was}); "
                f"if the host was rebuilt, run: {fix} ; otherwise do not connect"
            )
        if opts.host_keys == "strict":
            raise RemoteError(
                f"host {hop.label}: host key {offered} for {name} is not in {path} (strict); verify "
                f"it and add it, e.g. ssh-keyscan -p {hop.port} {hop.hostname} >> {path}"
            )
        _remember(path, name, key, hop.label)


def _remember(path: Path, name: str, key: paramiko.PKey, label: str) -> None:
    """accept-new: append the key in OpenSSH's format (``[host]:port`` for ports other than 22)."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        sep = "\n" if path.is_file() and path.read_bytes()[-1:] not in (b"", b"\n") else ""
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, f"{sep}{name} {key.get_name()} {key.get_base64()}\n".encode())
        finally:
            os.close(fd)
    except OSError as e:
        raise RemoteError(f"host {label}: cannot record its host key in {path}: {e}; make it writable") from e


def _candidate_keys(hop: Hop, opts: ConnectOptions) -> Iterator[tuple[str, paramiko.PKey]]:
    """Identity files first, then the agent's keys, then ~/.ssh/id_* (only when no identity file is given)."""
    for path in hop.keys:
        yield str(path), _load_key(path, hop.label, strict=True)
    if opts.use_agent:
        try:
            agent_keys = paramiko.Agent().get_keys()
        except paramiko.SSHException:
            agent_keys = ()
        yield from ((f"agent key {fingerprint(k)}", k) for k in agent_keys)
    for path in [] if hop.keys else [Path("~/.ssh", n).expanduser() for n in ("id_ed25519", "id_ecdsa", "id_rsa")]:
        key = _load_key(path, hop.label, strict=False) if path.is_file() else None
        if key is not None:
            yield str(path), key


def _load_key(path: Path, label: str, strict: bool) -> paramiko.PKey | None:
    if strict and not path.is_file():
        raise RemoteError(f"host {label}: identity file {path} not found; check identity_file / IdentityFile")
    for cls in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return cls.from_private_key_file(str(path))
        except paramiko.PasswordRequiredException as e:
            if not strict:
                return None
            raise RemoteError(
                f"host {label}: identity file {path} is encrypted; load it into ssh-agent (ssh-add) "
                "and keep use_agent on"
            ) from e
        except (paramiko.SSHException, OSError, ValueError):
            continue
    if strict:
        raise RemoteError(f"host {label}: identity file {path} is not an ed25519, ecdsa or rsa private key")
    return None


def authenticate(t: paramiko.Transport, hop: Hop, opts: ConnectOptions) -> None:
    """Public keys only, each tried once; a refusal is final (retrying will not fix a wrong key or user)."""
    tried = []
    for desc, key in _candidate_keys(hop, opts):
        try:
            more = t.auth_publickey(hop.user, key)
        except paramiko.BadAuthenticationType as e:
            raise RemoteError(
                f"host {hop.label}: the server does not accept keys (only {e.allowed_types}); "
                "enable PubkeyAuthentication in its sshd_config"
            ) from e
        except paramiko.AuthenticationException:
            tried.append(desc)
            continue
        if more or not t.is_authenticated():
            raise RemoteError(f"host {hop.label}: the server wants more than a key ({more}); use a key-only account")
        return
    raise RemoteError(
        f"host {hop.label}: authentication failed for user '{hop.user}' (tried: "
        f"{', '.join(tried) or 'no keys found'}); check the user name and that the key's .pub is in "
        f"~{hop.user}/.ssh/authorized_keys, or set identity_file"
    )
