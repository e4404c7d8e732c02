"""The apt preference that keeps a host at the version debship installed last.

An ``apt_preferences(5)`` entry pinning the package's installed version at
priority 1001: apt's candidate is then that version, so ``apt-get upgrade``,
``dist-upgrade`` and unattended-upgrades leave it where it is even though the
store (or the published repository) lists newer versions, and ``apt-cache policy``
shows the pin.  An explicit ``apt-get install name=version`` (or a .deb path),
which is how debship installs, is not held back by it; debship then rewrites the
pin to the version it installed.  Pure text in and out; ``actions`` writes it.
"""

from __future__ import annotations

PRIORITY = 1001  # above 1000: apt keeps (or restores) this version even over a newer one


def pin_text(name: str, version: str, path: str) -> str:
    return (
        f"Explanation: written by debship: {name} stays at the version debship installed last, through\n"
        f"Explanation: apt-get upgrade and unattended-upgrades; debship's next ship, rollback or apply moves it.\n"
        f"Explanation: to release it by hand: rm {path}\n"
        f"Package: {name}\n"
        f"Pin: version {version}\n"
        f"Pin-Priority: {PRIORITY}\n"
    )


def parse_pin(text: str) -> str | None:
    """The version a debship pin file holds (None: no file, or not a pin debship wrote)."""
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line and not line.startswith(" "))
    pin = fields.get("Pin", "").split()
    if len(pin) == 2 and pin[0] == "version" and fields.get("Pin-Priority", "").strip() == str(PRIORITY):
        return pin[1]
    return None


def refused_text(name: str, versions: list[str], path: str) -> str:
    """The preference that keeps apt from ever choosing ``versions`` of ``name`` (priority -1)."""
    head = (
        f"Explanation: written by debship apply --follow: {name} failed its checks at these versions and was\n"
        f"Explanation: rolled back; apt-get upgrade and debship apply --follow skip them. To allow them: rm {path}\n"
    )
    stanzas = [f"Package: {name}\nPin: version {v}\nPin-Priority: -1\n" for v in dict.fromkeys(versions)]
    return head + "\n".join(stanzas)


def parse_refused(text: str) -> list[str]:
    """The versions a refused-versions preference names."""
    return [
        line.split()[2] for line in text.splitlines() if line.startswith("Pin: version ") and len(line.split()) == 3
    ]
