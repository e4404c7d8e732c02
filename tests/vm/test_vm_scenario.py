"""The whole truth on a real guest: Debian 12 under qemu, booted like a cloud instance
(kernel, systemd, cloud-init from a NoCloud seed, sshd), driven by the real `ship` CLI.

One scenario on one guest, each step checked over SSH (see hostlab/vm.py):

1. qemu starts and `ship` v1 starts at once: ship itself waits for SSH and cloud-init;
2. the units run under systemd, /healthz reports v1, the deploy log shows the postinst;
3. `ship --reboot` (with 1.1.0): the services come back after the boot by themselves;
4. ship v2: the agent is restarted, /healthz reports v2;
5. a v3 whose startup.py fails is rolled back to v2 by ship itself (exit 3);
6. `ship --rollback` twice: 2.0.0 -> 1.1.0 -> 1.0.0, /healthz reports v1;
7. `apt-get purge`: no units, no enable links, no state left.

The reboot step ships 1.1.0 with `--reboot`, so one ship covers an upgrade, a
reboot and the services coming back (`--reboot` on an unchanged host reboots
too; tests/system checks that quickly under nspawn).  Each phase is
timed; the table is printed at the end (run with -s to see it).  Under TCG on 2
cores the whole scenario took 7 to 9.5 minutes (plus about 1.5 minutes to build
the guest image when it is not cached).
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from contextlib import contextmanager
from datetime import datetime, timezone

import pytest

from builder.build import build_deb
from builder.cli import ship
from tests.harness.helpers import _missing, cli_runner, require_tool
from tests.harness.project import REPO, break_startup, copy_sample

pytestmark = [pytest.mark.vm, pytest.mark.root]

NAME = "fleet-agent"
AGENT = "fleet-agent.service"
STARTUP = "fleet-agent-startup.service"
TIMINGS: list[tuple[str, float, str]] = []


def agent_port() -> int:
    m = re.search(r"(?m)^port = (\d+)$", (REPO / "configs" / "agent.conf").read_text())
    assert m, "configs/agent.conf has no 'port = N' line any more"
    return int(m.group(1))


@contextmanager
def phase(name: str, note: str = ""):
    t0 = time.monotonic()
    print(f"\n=== {name}", flush=True)
    yield
    seconds = time.monotonic() - t0
    TIMINGS.append((name, seconds, note))
    print(f"=== {name}: {seconds:.1f} s", flush=True)


# --- fixtures ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def debs(tmp_path_factory):
    """1.0.0, 1.1.0 and 2.0.0 of the sample (a changed config each time), and a 3.0.0 whose startup.py fails."""
    base = tmp_path_factory.mktemp("vm-debs")
    project = copy_sample(base / "project")
    out = {}
    for v in ("1.0.0", "1.1.0", "2.0.0"):
        conf = project / "configs" / "agent.conf"
        conf.write_text(conf.read_text() + f"\n# shipped with {v}\n")
        out[v] = build_deb(project, base / v, version=v).path
    break_startup(project)
    out["3.0.0-bad"] = build_deb(project, base / "3.0.0", version="3.0.0").path
    return out


@pytest.fixture(scope="module")
def image():
    if os.geteuid() != 0:
        _missing("root (the guest image is built with mmdebstrap and mkfs.ext4 -d)")
    for tool in ("qemu-system-x86_64", "qemu-img", "cloud-localds", "mmdebstrap", "mkfs.ext4", "ssh-keygen"):
        require_tool(tool)
    from hostlab.rootfs import cache_dir
    from hostlab.vm import cached_image, image_key

    cached = (cache_dir() / "vm" / image_key() / "image.json").is_file()
    with phase("image", "cached" if cached else "built with mmdebstrap"):
        img = cached_image(log=print)
    return img


@pytest.fixture(scope="module")
def guest(image, tmp_path_factory):
    """A guest whose qemu has just started: nothing waited for."""
    from hostlab.vm import VMGuest

    out = sys.stdout  # the harness logs from a thread, also while CliRunner has replaced sys.stdout
    vm = VMGuest(image, workdir=tmp_path_factory.mktemp("vm"), log=lambda s: print(s, file=out, flush=True))
    yield vm
    vm.close()


@pytest.fixture(scope="module", autouse=True)
def _print_timings():
    yield
    if TIMINGS:
        print("\n\nVM scenario timings")
        for name, seconds, note in TIMINGS:
            print(f"  {name:<44} {seconds:7.1f} s  {note}")
        TIMINGS.clear()


# --- helpers ----------------------------------------------------------------------------
class Shipped:
    def __init__(self, result, t0: float):
        self.result, self.t0, self.seconds = result, t0, time.monotonic() - t0
        self.exit_code = result.exit_code
        lines = [json.loads(l) for l in result.output.splitlines() if l.startswith("{")]
        self.events = [e for e in lines if e["step"] != "summary" and e["status"] != "start"]
        summaries = [e for e in lines if e["step"] == "summary"]
        self.summary = summaries[0] if summaries else {}

    def event(self, step: str, nth: int = 0) -> dict:
        found = [e for e in self.events if e["step"] == step]
        assert len(found) > nth, f"no {step!r} event #{nth}: {self.text}"
        return found[nth]

    @property
    def steps(self) -> list[str]:
        return [e["step"] for e in self.events]

    @property
    def text(self) -> str:
        rows = [
            f"  {e['step']:<8} {e['status']:<4} {e['elapsed']:7.1f}s  {str(e['detail'])[:300]}" for e in self.events
        ]
        try:
            stderr = self.result.stderr
        except ValueError:  # click < 8.2 without mix_stderr=False: stderr is in the output
            stderr = ""
        return "\n".join(rows + [f"  summary: {json.dumps(self.summary)}", stderr.strip()])


def run_ship(vm, *args: str) -> Shipped:
    argv = [*args, "--host", vm.address, *vm.ship_args(), "--connect-timeout", "600", "--boot-timeout", "600", "--json"]
    runner = cli_runner()
    t0 = time.monotonic()
    result = runner.invoke(ship, argv, env={"SSH_AUTH_SOCK": ""})
    shipped = Shipped(result, t0)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    print(shipped.text, flush=True)
    return shipped


def sh(vm, command: str, sudo: bool = False) -> str:
    r = vm.run(["sh", "-c", command], sudo=sudo, timeout=300)
    assert r.ok, f"in the guest, `{command}` failed (exit {r.exit_code}): {r.stdout}{r.stderr}"
    return r.stdout


def healthz(vm) -> dict:
    return json.loads(sh(vm, f"curl -sf --max-time 10 http://127.0.0.1:{agent_port()}/healthz"))


def unit(vm, name: str) -> dict:
    out = sh(
        vm,
        f"systemctl show -p ActiveState -p SubState -p UnitFileState -p MainPID -p NRestarts "
        f"-p ActiveEnterTimestampMonotonic {name}",
    )
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def installed(vm) -> str:
    r = vm.run(["dpkg-query", "-W", "-f=${db:Status-Abbrev}${Version}", NAME])
    return r.stdout.strip() if r.ok else ""


def deploy_log(vm) -> str:
    return sh(vm, f"cat /var/log/{NAME}/deploy.log", sudo=True)


# --- the scenario -----------------------------------------------------------------------
def test_vm_scenario(guest, debs):
    vm = guest
    try:
        _scenario(vm, debs)
    except BaseException:
        print(f"\n--- guest console (tail) ---\n{vm.console_log()[-6000:]}", flush=True)
        raise


def _scenario(vm, debs):
    port = agent_port()

    # 1. qemu has just started: ship at once, ship waits for SSH and cloud-init itself.
    with phase("1 boot + ship 1.0.0 (first install)"):
        r = run_ship(vm, str(debs["1.0.0"]))
    assert r.exit_code == 0, r.text
    assert r.summary["outcome"] == "installed" and r.summary["after"] == "1.0.0", r.text
    boot, connect = r.event("boot"), r.event("connect")
    TIMINGS.append(("   boot to sshd banner (qemu start)", vm.ssh_after or 0.0, vm.accel_reason))
    TIMINGS.append(("   ship: SSH login", connect["elapsed"], "ship started with qemu"))
    TIMINGS.append(("   ship: cloud-init done", boot["elapsed"], boot["detail"][:60]))
    for step in ("install", "verify", "health"):
        TIMINGS.append((f"   ship: {step} done", r.event(step)["elapsed"], ""))
    assert boot["status"] == "ok", boot  # cloud-init: status done, no errors
    assert r.event("verify")["detail"] == f"active: {AGENT}", r.text

    # ship waited for cloud-init: dpkg ran after cloud-init's last stage had finished.
    finished = float(
        sh(
            vm,
            'python3 -c \'import json; print(json.load(open("/run/cloud-init/status.json"))'
            '["v1"]["modules-final"]["finished"])\'',
        )
    )
    log = deploy_log(vm)
    begin = re.search(r"(?m)^(\S+) fleet-agent 1\.0\.0 postinst configure: begin$", log)
    assert begin, log
    began = datetime.strptime(begin.group(1), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()
    assert began >= int(finished), f"postinst began {began}, cloud-init finished {finished}"

    # 2. Real systemd runs the units; the agent answers with v1; the deploy log shows the postinst.
    with phase("2 checks over SSH (systemd, /healthz, deploy log)"):
        assert sh(vm, "ps -o comm= -p 1").strip() == "systemd"
        assert sh(vm, "systemctl is-system-running || true").strip() in ("running", "degraded")
        agent = unit(vm, AGENT)
        assert agent["ActiveState"] == "active" and agent["SubState"] == "running", agent
        assert int(agent["MainPID"]) > 0 and agent["NRestarts"] == "0", agent
        assert agent["UnitFileState"] == "enabled", agent
        assert unit(vm, STARTUP)["UnitFileState"] == "enabled"  # enabled, started at the next boot
        health = healthz(vm)
        assert health["status"] == "ok" and health["version"] == "1.0.0", health
        assert health["startup"]["version"] == "1.0.0", health  # startup.py ran from the postinst
        for line in (
            "postinst configure: begin",
            f"postinst configure: enable {AGENT}: enabled",
            f"postinst configure: enable {STARTUP}: enabled",
            "postinst configure: startup: ok",
            f"postinst configure: start {AGENT}: ok",
            "postinst configure: done",
            "ship: install 1.0.0 (not installed); now 1.0.0",
        ):
            assert line in log, f"{line!r} not in the deploy log:\n{log}"
        assert sh(vm, f"ss -Hltn 'sport = :{port}'").strip(), f"nothing listens on {port}"
        boot_before = vm.boot_id()

    # 3. ship --reboot: after the boot the services are back, started by systemd alone.
    with phase("3 ship 1.1.0 --reboot"):
        r = run_ship(vm, str(debs["1.1.0"]), "--reboot")
    assert r.exit_code == 0, r.text
    assert r.summary["outcome"] == "installed" and r.summary["after"] == "1.1.0", r.text
    steps = r.steps
    assert "reboot" in steps and r.event("reboot")["status"] == "ok", r.text
    after = steps[steps.index("reboot") + 1 :]
    assert after[:2] == ["verify", "health"], steps
    assert r.event("verify", 1)["status"] == "ok" and r.event("health", 1)["status"] == "ok", r.text
    asked = r.t0 + r.event("record")["elapsed"]  # ship's reboot step began: `systemctl reboot`
    done = r.t0 + r.event("reboot")["elapsed"]  # ship saw the new boot id and cloud-init done
    assert len(vm.boots) == 2, vm.boots
    kernel = vm.boots[1].started
    TIMINGS.append(("   reboot: whole step (ship)", done - asked, "systemctl reboot .. cloud-init done"))
    TIMINGS.append(("   reboot: shutdown", kernel - asked, "until the kernel's banner on the console"))
    TIMINGS.append(("   reboot: kernel to sshd banner", vm.boots[1].ssh_after or -1, ""))
    TIMINGS.append(("   reboot: kernel to ship done waiting", done - kernel, "SSH + new boot id + cloud-init"))
    with phase("3 checks over SSH after the reboot"):
        boot_after = vm.boot_id()
        assert boot_after != boot_before
        agent = unit(vm, AGENT)
        assert agent["ActiveState"] == "active" and agent["NRestarts"] == "0", agent
        startup = unit(vm, STARTUP)
        assert startup["ActiveState"] == "active" and startup["SubState"] == "exited", startup  # ran at boot
        health = healthz(vm)
        assert health["version"] == "1.1.0", health
        assert health["startup"]["boot_id"] == boot_after, health  # the boot unit recorded this boot
        boots = sh(vm, "journalctl --list-boots --no-pager | wc -l", sudo=True).strip()
        assert int(boots) >= 2, boots
        pid_before_upgrade = int(agent["MainPID"])

    # 4. ship v2: the upgrade restarts the agent, which then reports v2.
    with phase("4 ship 2.0.0 (upgrade)"):
        r = run_ship(vm, str(debs["2.0.0"]))
    assert r.exit_code == 0, r.text
    assert r.event("decide")["detail"] == "upgrade 1.1.0 -> 2.0.0", r.text
    with phase("4 checks over SSH"):
        agent = unit(vm, AGENT)
        assert agent["ActiveState"] == "active" and int(agent["MainPID"]) != pid_before_upgrade, agent
        assert vm.boot_id() == boot_after  # restarted by the postinst, not by a reboot
        assert healthz(vm)["version"] == "2.0.0"
        assert "fleet-agent 2.0.0 postinst configure 1.1.0: restart fleet-agent.service: ok" in deploy_log(vm)
        assert "# shipped with 2.0.0" in sh(vm, f"cat /etc/{NAME}/agent.conf")

    # 5. A v3 whose startup.py fails: ship rolls the host back to v2 by itself (exit 3).
    with phase("5 ship 3.0.0 (startup fails) -> rolled back"):
        r = run_ship(vm, str(debs["3.0.0-bad"]))
    assert r.exit_code == 3, r.text
    assert r.summary["outcome"] == "rolled-back" and r.summary["after"] == "2.0.0", r.text
    assert "startup failed on purpose" in r.summary["detail"], r.text  # the deploy log's tail says why
    with phase("5 checks over SSH"):
        assert installed(vm) == "ii 2.0.0"
        agent = unit(vm, AGENT)
        assert agent["ActiveState"] == "active", agent
        assert healthz(vm)["version"] == "2.0.0"
        assert "failed on purpose" not in sh(vm, f"cat /usr/lib/{NAME}/startup.py")
        assert "rolled back to 2.0.0" in deploy_log(vm)

    # 6. ship --rollback, twice: back through the history to v1.
    with phase("6 ship --rollback (2.0.0 -> 1.1.0)"):
        r = run_ship(vm, str(debs["2.0.0"]), "--rollback")
    assert r.exit_code == 0 and r.summary["after"] == "1.1.0", r.text
    assert healthz(vm)["version"] == "1.1.0"
    with phase("6 ship --rollback (1.1.0 -> 1.0.0)"):
        r = run_ship(vm, str(debs["2.0.0"]), "--rollback")
    assert r.exit_code == 0 and r.summary["after"] == "1.0.0", r.text
    assert "rolled back 1.1.0 -> 1.0.0" in r.summary["detail"], r.text
    with phase("6 checks over SSH"):
        assert installed(vm) == "ii 1.0.0"
        assert healthz(vm)["version"] == "1.0.0"
        assert unit(vm, AGENT)["ActiveState"] == "active"
        assert "# shipped with 1.0.0" in sh(vm, f"cat /etc/{NAME}/agent.conf")
        kept = sh(vm, f"ls /var/lib/debship/{NAME}/").split()
        assert {f"{NAME}_{v}_all.deb" for v in ("1.0.0", "1.1.0", "2.0.0", "3.0.0")} <= set(kept), kept

    # 7. purge: nothing of the package is left.
    with phase("7 apt-get purge + checks"):
        r = vm.run(
            ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "purge", "-y", "-q", NAME], sudo=True, timeout=600
        )
        assert r.ok, r.stdout + r.stderr
        assert installed(vm) == ""
        left = sh(
            vm,
            f"find /usr/lib/systemd/system /etc/systemd/system /var/lib/systemd/deb-systemd-helper-enabled "
            f"/var/lib/systemd/deb-systemd-helper-masked -name '{NAME}*' 2>/dev/null || true",
            sudo=True,
        )
        assert left.strip() == "", f"units or enable links left:\n{left}"
        paths = [
            f"/var/lib/{NAME}",
            f"/var/log/{NAME}",
            f"/var/lib/debship/{NAME}",
            f"/etc/{NAME}",
            f"/usr/lib/{NAME}",
            f"/usr/share/debship/{NAME}.json",
            f"/etc/apt/sources.list.d/debship-{NAME}.list",
        ]
        still = sh(vm, "for p in " + " ".join(paths) + '; do [ ! -e "$p" ] || echo "$p"; done', sudo=True)
        assert still.strip() == "", f"left after purge:\n{still}"
        units = sh(vm, f"systemctl list-units --all --no-legend '{NAME}*'")
        assert units.strip() == "", units
        assert sh(vm, f"ss -Hltn 'sport = :{port}'").strip() == ""
        assert sh(vm, "systemctl is-system-running || true").strip() in ("running", "degraded")
