"""A signed apt repository for tests: throwaway GnuPG keys and the repository folder served
over HTTP on 127.0.0.1 (fixtures ``keys`` and ``server``; import them into a test module)."""

from __future__ import annotations

import functools
import http.server
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness.helpers import require_tool


@dataclass(frozen=True)
class Keys:
    home: Path
    main: str
    other: str


def gen_key(uid: str) -> str:
    subprocess.run(
        ["gpg", "--batch", "--passphrase", "", "--quick-gen-key", uid, "ed25519", "sign", "never"],
        check=True,
        capture_output=True,
    )
    out = subprocess.run(
        ["gpg", "--batch", "--with-colons", "--list-keys", uid], check=True, capture_output=True, text=True
    ).stdout
    return next(line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:"))


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """A throwaway GNUPGHOME with two unprotected ed25519 keys: the archive's and another one."""
    require_tool("gpg")
    home = tmp_path_factory.mktemp("gnupg")
    home.chmod(0o700)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GNUPGHOME", str(home))
        yield Keys(home, gen_key("debship archive <archive@example.com>"), gen_key("other <other@example.com>"))
        subprocess.run(["gpgconf", "--kill", "gpg-agent"], check=False, capture_output=True)


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # the test records paths itself
        pass

    def do_GET(self):
        self.server.requested.append(self.path)
        override = self.server.overrides.get(self.path)
        if override is None:
            return super().do_GET()
        self.send_response(200)
        self.send_header("Content-Length", str(len(override)))
        self.end_headers()
        self.wfile.write(override)


@pytest.fixture
def server(tmp_path):
    """The repository folder served over HTTP on a free port of 127.0.0.1."""
    repo = tmp_path / "repo"
    repo.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(repo)))
    httpd.requested, httpd.overrides, httpd.repo = [], {}, repo
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def export_key(key: str, dest: Path) -> Path:
    """The public key ``key`` of the current GNUPGHOME, binary, as ``signed-by`` takes it."""
    dest.write_bytes(subprocess.run(["gpg", "--batch", "--export", key], check=True, capture_output=True).stdout)
    return dest
