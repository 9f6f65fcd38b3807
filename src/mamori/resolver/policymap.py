"""Compiled policy zones mapped into memory, assembled into policy versions.

The control plane compiles each zone once into a file (policy/compiled.py);
every process that evaluates policy (each worker, and the control plane
itself) maps those files read-only with mmap, so the page cache holds one
copy for all. A version names its zones' files; files already mapped are
reused, files no longer named are unmapped. A version that cannot be mapped
(a file missing or damaged) raises ``PolicyMapError`` and the caller keeps
the version it has.
"""

from __future__ import annotations

import contextlib
import mmap
from dataclasses import dataclass
from typing import Any

from mamori.errors import MamoriError
from mamori.policy.compiled import CompiledZone, CompiledZoneError, ZoneOverlay
from mamori.policy.engine import Policy, ZoneSettings


class PolicyMapError(MamoriError):
    """A policy version whose files cannot be mapped (the message names the file)."""


@dataclass(frozen=True)
class ZoneRef:
    """One applied zone of a policy version: its settings, compiled file, overlay.

    *overlay*: ``ZoneOverlay.to_bytes()`` of the changes since the file was
    compiled (an IXFR applied in place), or None.
    """

    settings: ZoneSettings
    path: str
    overlay: bytes | None = None

    def to_wire(self) -> tuple[Any, ...]:
        s = self.settings
        st = (s.name, s.policy, s.log, s.max_policy_ttl, s.recursive_only, s.nsdname_enable,
              s.nsip_enable, tuple(s.groups))  # fmt: skip
        return (st, self.path, self.overlay)

    @classmethod
    def from_wire(cls, t: tuple[Any, ...]) -> ZoneRef:
        st, path, overlay = t
        name, policy, log, ttl, recursive_only, nsdname, nsip, groups = st
        settings = ZoneSettings(
            name, policy, log, ttl, recursive_only, nsdname, nsip, tuple(groups)
        )
        return cls(settings, str(path), overlay)


@dataclass(frozen=True)
class Manifest:
    """A policy version as the control plane sends it: version number and zones in order."""

    version: int
    zones: tuple[ZoneRef, ...]

    def to_wire(self) -> tuple[Any, ...]:
        return (self.version, [z.to_wire() for z in self.zones])

    @classmethod
    def from_wire(cls, t: tuple[Any, ...]) -> Manifest:
        version, zones = t
        return cls(int(version), tuple(ZoneRef.from_wire(z) for z in zones))


class PolicyMapper:
    """Maps files once; builds a ``Policy`` per manifest."""

    def __init__(self) -> None:
        self._maps: dict[str, tuple[mmap.mmap, CompiledZone]] = {}

    def zone(self, path: str) -> CompiledZone:
        """The compiled zone in *path*, mapped (once); PolicyMapError if it cannot be."""
        hit = self._maps.get(path)
        if hit is not None:
            return hit[1]
        try:
            with open(path, "rb") as f:
                mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError) as e:
            raise PolicyMapError(f"{path}: cannot map compiled zone: {e}") from e
        try:
            zone = CompiledZone(mm)
        except CompiledZoneError as e:
            mm.close()
            raise PolicyMapError(f"{path}: {e}") from e
        self._maps[path] = (mm, zone)
        return zone

    def build(self, manifest: Manifest) -> Policy:
        """The policy of *manifest*; mappings it no longer names are released."""
        zones = []
        for ref in manifest.zones:
            z = self.zone(ref.path)
            if ref.overlay is not None:
                try:
                    z = z.with_overlay(ZoneOverlay.from_bytes(ref.overlay))
                except (CompiledZoneError, ValueError) as e:
                    raise PolicyMapError(f"{ref.path}: bad overlay: {e}") from e
            zones.append(z)
        policy = Policy(zones, [ref.settings for ref in manifest.zones], manifest.version)
        self.release({ref.path for ref in manifest.zones})
        return policy

    def release(self, keep: set[str]) -> None:
        """Unmap files not in *keep* (a policy still using one keeps its pages alive:
        the mapping object is only dropped here, closed when the last user goes)."""
        for path in list(self._maps):
            if path not in keep:
                del self._maps[path]

    def close(self) -> None:
        for mm, _zone in self._maps.values():
            with contextlib.suppress(BufferError, ValueError):
                mm.close()
        self._maps.clear()
