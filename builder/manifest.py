"""debship's manifest: what ``ship`` needs to know about a package, kept inside it.

Written by ``build-deb`` to ``Layout(name).manifest`` as JSON, read back by
``ship`` from the .deb it is given and from the host (the version installed
there may be another one, e.g. after a rollback).  A package not built by
debship has no manifest: ``Manifest.empty`` (no units to check, no health).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

# The one default of keep-versions for a package whose manifest lacks it;
# config.DEFAULTS gives the same number to every package debship builds.
KEEP_VERSIONS = 5


@dataclass(frozen=True)
class UnitState:
    """What the maintainer scripts do with one unit, as ship must check it."""

    name: str
    enable: bool
    start: bool
    on_upgrade: str


@dataclass(frozen=True)
class Manifest:
    name: str
    version: str
    startup: str | None = None
    health: str | None = None
    keep_versions: int = KEEP_VERSIONS
    units: tuple[UnitState, ...] = ()

    @classmethod
    def of(
        cls, name: str, version: str, startup: str | None, health: str | None, keep_versions: int, units: Iterable
    ) -> Manifest:
        """From a package's spec and plan (``units``: anything with name/enable/start/on_upgrade)."""
        return cls(
            name,
            version,
            startup,
            health,
            keep_versions,
            tuple(UnitState(u.name, u.enable, u.start, u.on_upgrade) for u in units),
        )

    @classmethod
    def empty(cls, name: str = "", version: str = "") -> Manifest:
        return cls(name, version)

    def to_json(self) -> str:
        data = {
            "name": self.name,
            "version": self.version,
            "startup": self.startup,
            "health": self.health,
            "keep_versions": self.keep_versions,
            "units": [
                {"name": u.name, "enable": u.enable, "start": u.start, "on_upgrade": u.on_upgrade} for u in self.units
            ],
        }
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes, name: str = "", version: str = "") -> Manifest:
        """Parse a manifest; anything unreadable is treated as no manifest at all."""
        try:
            data = json.loads(text)
            units = tuple(
                UnitState(
                    str(u["name"]), bool(u.get("enable")), bool(u.get("start")), str(u.get("on_upgrade", "restart"))
                )
                for u in data.get("units", [])
            )
            return cls(
                str(data.get("name", name)),
                str(data.get("version", version)),
                data.get("startup"),
                data.get("health"),
                int(data.get("keep_versions", KEEP_VERSIONS)),
                units,
            )
        except (ValueError, TypeError, KeyError, AttributeError):
            return cls.empty(name, version)

    def checked_units(self, after_boot: bool = False) -> list[str]:
        """Units ship checks are active: enabled and started (after a boot: every enabled one)."""
        return [u.name for u in self.units if u.enable and (u.start or after_boot)]
