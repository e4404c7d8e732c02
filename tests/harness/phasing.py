"""apt's phasing bucket, computed here independently of apt, to say which hosts a phased
version should reach (apt 2.6, apt-pkg/upgrade.cc ``IsIgnoredPhasedUpdate``).

apt seeds ``std::seed_seq`` with the bytes of ``"<source package>-<source version>-<machine id>"``,
seeds ``std::minstd_rand`` with it and draws ``std::uniform_int_distribution<unsigned>(0, 100)``
(libstdc++'s rejection-and-division method); the host takes the version when the draw is
``<= Phased-Update-Percentage``.  The draw is one of 101 values, so at 0 % a host whose draw
is 0 still takes it.  The tests compare this with what real apt does."""

from __future__ import annotations

M32 = 0xFFFFFFFF
MINSTD_M = 2**31 - 1


def _seed_seq(values: list[int], n: int) -> list[int]:
    """``std::seed_seq(values).generate()`` of ``n`` words (the standard's algorithm)."""
    out = [0x8B8B8B8B] * n
    s = len(values)
    t = 11 if n >= 623 else 7 if n >= 68 else 5 if n >= 39 else 3 if n >= 7 else (n - 1) // 2
    p = (n - t) // 2
    q = p + t
    m = max(s + 1, n)

    def tf(x: int) -> int:
        return (x ^ (x >> 27)) & M32

    for k in range(m):
        r1 = (1664525 * tf(out[k % n] ^ out[(k + p) % n] ^ out[(k - 1) % n])) & M32
        r2 = (r1 + (s if k == 0 else (k % n + values[k - 1] if k <= s else k % n))) & M32
        out[(k + p) % n] = (out[(k + p) % n] + r1) & M32
        out[(k + q) % n] = (out[(k + q) % n] + r2) & M32
        out[k % n] = r2
    for k in range(m, m + n):
        r3 = (1566083941 * tf((out[k % n] + out[(k + p) % n] + out[(k - 1) % n]) & M32)) & M32
        r4 = (r3 - k % n) & M32
        out[(k + p) % n] ^= r3
        out[(k + q) % n] ^= r4
        out[k % n] = r4
    return out


def draw(source: str, version: str, machine_id: str) -> int:
    """The host's draw, 0..100, for ``source`` at ``version``."""
    seed = [b & M32 for b in f"{source}-{version}-{machine_id}".encode()]
    state = _seed_seq(seed, 4)[3] % MINSTD_M or 1  # minstd_rand.seed(seed_seq): k = 1 word, after 3
    urngmin, urngrange, uerange = 1, MINSTD_M - 2, 101
    scaling = urngrange // uerange
    past = uerange * scaling
    while True:
        state = state * 48271 % MINSTD_M
        ret = state - urngmin
        if ret < past:
            return ret // scaling


def takes(source: str, version: str, machine_id: str, percent: int) -> bool:
    """Whether apt on this machine takes a version phased at ``percent``."""
    return percent >= 100 or draw(source, version, machine_id) <= percent


def machine_id(i: int, salt: str = "debship-phasing") -> str:
    """A fixed machine id for test host ``i`` (what systemd writes: 32 hex digits)."""
    import hashlib

    return hashlib.md5(f"{salt}-{i}".encode()).hexdigest()


def run_as_machine(root, argv: list[str], env: dict | None = None, check: bool = False):
    """Run ``argv`` in the loopback root as a machine of its own rather than a chroot: in a PID
    namespace whose PID 1 has the root as its ``/`` (as in a container), so that apt's
    ``ischroot`` check, which turns phasing off in a chroot, sees a machine."""
    import subprocess

    script = 'mount -t proc proc "$0/proc" && mount --rbind /dev "$0/dev" && exec chroot "$0" "$@"'
    full_env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": "/root"}
    full_env.update(env or {})
    return subprocess.run(
        ["unshare", "--mount", "--pid", "--fork", "sh", "-c", script, str(root.path), *argv],
        check=check,
        env=full_env,
        text=True,
        capture_output=True,
        stdin=subprocess.DEVNULL,
    )
