"""The sample bundle's scripts, run for real: agent.py serving on a free
loopback port, healthcheck.py against it, startup.py against a temp root.

No package is installed here, so the version the scripts report is whatever
dpkg-query says about fleet-agent on this machine ("unknown" when absent).
"""

from __future__ import annotations

import configparser
import json
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts"
CONFIGS = REPO / "configs"
UNITS = REPO / "units"


def expected_version() -> str:
    proc = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "fleet-agent"], capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 and proc.stdout.strip() else "unknown"


def write_config(path: Path, port: int, state_file: Path) -> Path:
    path.write_text(f"[agent]\nport = {port}\nlog_requests = yes\nstate_file = {state_file}\n")
    return path


class Agent:
    """agent.py in a subprocess; ``port`` is read from its "listening on" line."""

    def __init__(self, config: Path):
        self.proc = subprocess.Popen(
            [sys.executable, str(SCRIPTS / "agent.py"), "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self.port = int(self.wait_for(r"listening on 127\.0\.0\.1:(\d+)").group(1))

    def wait_for(self, pattern: str, timeout: float = 10) -> re.Match:
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stderr, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not sel.select(timeout=max(deadline - time.monotonic(), 0)):
                break
            line = self.proc.stderr.readline()
            if not line:
                break
            self.lines.append(line)
            if m := re.search(pattern, line):
                return m
        raise AssertionError(f"no {pattern!r} from agent.py; stderr so far: {''.join(self.lines)}")

    def get(self, path: str) -> tuple[int, dict]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=10)
            if not self.proc.stderr.closed:
                self.lines.append(self.proc.stderr.read())
            return rc
        finally:
            self.proc.stdout.close()
            self.proc.stderr.close()


@pytest.fixture
def agent(tmp_path):
    state = tmp_path / "last-startup.json"
    state.write_text(json.dumps({"name": "fleet-agent", "version": "1.0.0", "boot_id": "b"}))
    a = Agent(write_config(tmp_path / "agent.conf", 0, state))
    yield a
    a.stop()


# --- agent.py ---------------------------------------------------------------


def test_healthz(agent):
    status, body = agent.get("/healthz")
    assert status == 200
    assert body["status"] == "ok" and body["name"] == "fleet-agent"
    assert body["version"] == expected_version()
    assert body["pid"] == agent.proc.pid
    assert body["startup"] == {"name": "fleet-agent", "version": "1.0.0", "boot_id": "b"}
    assert isinstance(body["uptime_seconds"], int)


def test_other_paths_are_404(agent):
    for path in ("/", "/health", "/healthz/x"):
        status, body = agent.get(path)
        assert status == 404 and body["status"] == "not found"
    assert agent.get("/healthz?verbose=1")[0] == 200


def test_requests_logged_and_sigterm_exits_cleanly(agent):
    agent.get("/healthz")
    agent.wait_for(r'"GET /healthz HTTP/1\.1" 200')
    assert agent.stop() == 0
    assert "fleet-agent: stopped" in "".join(agent.lines)


def test_missing_config_means_defaults_and_missing_state_is_null(tmp_path):
    conf = write_config(tmp_path / "agent.conf", 0, tmp_path / "absent.json")
    a = Agent(conf)
    try:
        assert a.get("/healthz")[1]["startup"] is None
    finally:
        a.stop()
    # No file at all: defaults (port 8787), said on stderr; only checked when 8787 is free here.
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.path.insert(0, sys.argv[1]); import agent; print(agent.load_settings(sys.argv[2]))",
            str(SCRIPTS),
            str(tmp_path / "none.conf"),
        ],
        capture_output=True,
        text=True,
    )
    assert "'port': 8787" in proc.stdout and "none.conf not found; using defaults" in proc.stderr


@pytest.mark.parametrize(
    "text,message",
    [
        ("[agent]\nport = eighty\n", "port is a number"),
        ("[agent]\nport = 70000\n", "out of range"),
        ("[agent]\nlog_requests = maybe\n", "log_requests is yes or no"),
        ("port = 1\n", "not valid INI"),
    ],
)
def test_bad_config_exits_2_naming_the_file(tmp_path, text, message):
    conf = tmp_path / "agent.conf"
    conf.write_text(text)
    proc = subprocess.run(
        [sys.executable, str(SCRIPTS / "agent.py"), "--config", str(conf)], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 2
    assert str(conf) in proc.stderr and message in proc.stderr


def test_port_in_use_exits_1(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        conf = write_config(tmp_path / "agent.conf", port, tmp_path / "s.json")
        env = {**os.environ, "FLEET_AGENT_CONFIG": str(conf)}  # the env var works like --config
        proc = subprocess.run(
            [sys.executable, str(SCRIPTS / "agent.py")], capture_output=True, text=True, timeout=30, env=env
        )
    assert proc.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in proc.stderr and str(conf) in proc.stderr


# --- healthcheck.py ------------------------------------------------------------


def healthcheck(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPTS / "healthcheck.py"), *args], capture_output=True, text=True, timeout=60
    )


def test_healthcheck_ok_prints_json(agent):
    proc = healthcheck("--port", str(agent.port))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["status"] == "ok"
    assert healthcheck("--port", str(agent.port), "--expect-version", expected_version()).returncode == 0


def test_healthcheck_reads_port_from_config(agent, tmp_path):
    conf = write_config(tmp_path / "hc.conf", agent.port, tmp_path / "s.json")
    assert healthcheck("--config", str(conf)).returncode == 0


def test_healthcheck_wrong_version_fails(agent):
    proc = healthcheck("--port", str(agent.port), "--expect-version", "99.0", "--wait", "0")
    assert proc.returncode == 1
    assert "expected '99.0'" in proc.stderr
    assert json.loads(proc.stdout)["status"] == "ok"  # still shows what it got


def test_healthcheck_no_agent_fails_after_wait():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = healthcheck("--port", str(port), "--wait", "1")
    assert proc.returncode == 1
    assert f"http://127.0.0.1:{port}/healthz" in proc.stderr


def test_healthcheck_waits_for_a_starting_agent(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = write_config(tmp_path / "agent.conf", port, tmp_path / "s.json")
    check = subprocess.Popen(
        [sys.executable, str(SCRIPTS / "healthcheck.py"), "--port", str(port), "--wait", "15"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.0)
    a = Agent(conf)
    try:
        out, err = check.communicate(timeout=30)
        assert check.returncode == 0, err
    finally:
        a.stop()


# --- startup.py ------------------------------------------------------------------


def run_startup(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "FLEET_AGENT_ROOT": str(root)}
    return subprocess.run(
        [sys.executable, str(SCRIPTS / "startup.py")], capture_output=True, text=True, env=env, timeout=60
    )


@pytest.fixture
def root(tmp_path):
    root = tmp_path / "root"
    (root / "etc/fleet-agent").mkdir(parents=True)
    (root / "etc/fleet-agent/startup.conf").write_text((CONFIGS / "startup.conf").read_text())
    return root


def test_startup_prepares_and_is_idempotent(root):
    first = run_startup(root)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith(f"fleet-agent startup: ok (version {expected_version()}, boot ")
    state_dir, log = root / "var/lib/fleet-agent", root / "var/log/fleet-agent/deploy.log"
    assert (state_dir / "cache").is_dir() and (state_dir / "spool").is_dir()
    state = json.loads((state_dir / "last-startup.json").read_text())
    assert state["name"] == "fleet-agent" and state["version"] == expected_version() and state["boot_id"]
    lines1 = log.read_text().splitlines()
    stamp = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ fleet-agent \S+ startup: "
    assert all(re.match(stamp, line) for line in lines1), lines1
    assert any(f"create {state_dir}: created" in line for line in lines1)
    assert "record" in lines1[-2] and "written" in lines1[-2] and lines1[-1].endswith("done: ok")
    snapshot = sorted(p.relative_to(root) for p in root.rglob("*"))
    state_text = (state_dir / "last-startup.json").read_text()

    second = run_startup(root)
    assert second.returncode == 0, second.stderr
    lines2 = log.read_text().splitlines()
    assert lines2[: len(lines1)] == lines1 and len(lines2) == 2 * len(lines1)  # appended, nothing lost
    assert any(f"create {state_dir}: exists" in line for line in lines2[len(lines1) :])
    assert "unchanged" in lines2[-2]
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == snapshot
    assert (state_dir / "last-startup.json").read_text() == state_text


def test_startup_without_config_uses_defaults(root):
    (root / "etc/fleet-agent/startup.conf").unlink()
    proc = run_startup(root)
    assert proc.returncode == 0, proc.stderr
    assert "startup.conf: not found, using defaults" in (root / "var/log/fleet-agent/deploy.log").read_text()
    assert not (root / "var/lib/fleet-agent/cache").exists()


@pytest.mark.parametrize(
    "text,message",
    [
        ("[startup]\nrotate_log_kib = lots\n", "rotate_log_kib must be a whole number"),
        ("[startup]\nstate_subdirs = ../etc\n", "must be a plain folder name"),
        ("not ini at all\n", "is not valid INI"),
    ],
)
def test_startup_bad_config_fails_clearly(root, text, message):
    (root / "etc/fleet-agent/startup.conf").write_text(text)
    proc = run_startup(root)
    assert proc.returncode == 1
    assert message in proc.stderr and f"see {root}/var/log/fleet-agent/deploy.log" in proc.stderr
    assert "FAILED" in (root / "var/log/fleet-agent/deploy.log").read_text().splitlines()[-1]


def test_startup_rotates_a_big_deploy_log(root):
    (root / "etc/fleet-agent/startup.conf").write_text("[startup]\nrotate_log_kib = 1\n")
    log = root / "var/log/fleet-agent/deploy.log"
    log.parent.mkdir(parents=True)
    log.write_text("x" * 2048 + "\n")
    assert run_startup(root).returncode == 0
    assert (root / "var/log/fleet-agent/deploy.log.1").read_text().startswith("xxx")
    assert "moved to deploy.log.1" in log.read_text()


# --- the bundle's files ------------------------------------------------------------


@pytest.mark.parametrize("name", ["agent.py", "startup.py", "healthcheck.py"])
def test_scripts_are_executable_python3(name):
    path = SCRIPTS / name
    assert os.access(path, os.X_OK)
    assert path.read_text().startswith("#!/usr/bin/python3\n")
    subprocess.run([sys.executable, "-m", "py_compile", str(path)], check=True)


def test_configs_are_commented_ini_with_the_scripts_defaults():
    agent = configparser.ConfigParser(interpolation=None)
    agent.read(CONFIGS / "agent.conf")
    assert agent.getint("agent", "port") == 8787
    startup = configparser.ConfigParser(interpolation=None)
    startup.read(CONFIGS / "startup.conf")
    assert startup.get("startup", "state_subdirs").split() == ["cache", "spool"]
    for conf in CONFIGS.iterdir():
        assert conf.read_text().startswith("# ")


@pytest.mark.parametrize("name", ["fleet-agent.service", "fleet-agent-startup.service"])
def test_units(name):
    text = (UNITS / name).read_text()
    assert re.search(r"^Documentation=\S", text, re.M)
    assert "ExecStart=/usr/bin/python3 /usr/lib/fleet-agent/" in text
    assert "[Install]\nWantedBy=multi-user.target" in text


def test_startup_unit_avoids_the_cloud_final_ordering_cycle():
    """cloud-final.service is After=multi-user.target on Debian: see the comment in the unit."""
    text = (UNITS / "fleet-agent-startup.service").read_text()
    for line in (
        "Type=oneshot",
        "RemainAfterExit=yes",
        "After=network-online.target cloud-final.service",
        "Wants=network-online.target",
        "DefaultDependencies=no",
        "Conflicts=shutdown.target",
    ):
        assert re.search(rf"^{re.escape(line)}$", text, re.M), line
    assert "fleet-agent-startup" not in (UNITS / "fleet-agent.service").read_text()
