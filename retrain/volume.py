"""The served repository's volume on Kubernetes: every release a folder, ``current`` a link to the live one.

    <volume>/
      current -> releases/20261205T030012Z     the release new pods serve
      releases/20261205T030012Z/              a built model repository (golden.json inside)
      releases/20261204T030009Z/              the one before: a rollback flips the link back to it
      work/                                   the build's cache (reused night after night), history, refused/

The chart's pods mount the volume with ``subPath: current``. A subPath mount is a bind mount that resolves
the link when the container starts, so a pod keeps the release it started with, and a changed link reaches
only the pods started after it: the CronJob flips the link, then rolls the Deployment
(``retrain/cluster.py``). Flipping is atomic (a new link renamed over the old one), so a pod never sees a
half-written release or no link at all.

    python -m retrain.volume adopt /mnt/volume model_repository   # the first release, from a build
    python -m retrain.volume list /mnt/volume
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path

from runtime.errors import ShoprankError

CURRENT = "current"
RELEASES = "releases"
WORK = "work"


class VolumeError(ShoprankError, ValueError):
    """The volume is not laid out as a release volume; the message names the path and the problem."""


def release_id(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")


class ReleaseVolume:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.releases = self.root / RELEASES
        self.link = self.root / CURRENT
        self.work = self.root / WORK

    def live(self) -> str:
        """The release ``current`` names."""
        if not self.link.is_symlink():
            raise VolumeError(
                f"{self.link}: no release link; adopt a built repository first "
                f"(python -m retrain.volume adopt {self.root} REPO)"
            )
        target = Path(os.readlink(self.link))
        if target.parent != Path(RELEASES) or not (self.releases / target.name).is_dir():
            raise VolumeError(f"{self.link} -> {target}: not a folder under {RELEASES}/")
        return target.name

    def live_or_none(self) -> str | None:
        """The live release, or None on a volume with no link yet."""
        return self.live() if self.link.is_symlink() else None

    def path(self, release: str) -> Path:
        folder = self.releases / release
        if not folder.is_dir():
            raise VolumeError(f"{folder}: no such release (releases: {', '.join(self.names()) or 'none'})")
        return folder

    def names(self) -> list[str]:
        """Every release on the volume, oldest first (ids sort by time)."""
        return sorted(p.name for p in self.releases.iterdir() if p.is_dir()) if self.releases.is_dir() else []

    def add(self, repository: Path, release: str | None = None) -> str:
        """Move a built repository in as a new release (not live yet); returns its id (the time, by default)."""
        if release is None:
            release = base = release_id()
            n = 1
            while (self.releases / release).exists():  # two releases within one second
                n += 1
                release = f"{base}-{n}"
        dest = self.releases / release
        if dest.exists():
            raise VolumeError(f"{dest}: that release exists already")
        self.releases.mkdir(parents=True, exist_ok=True)
        shutil.move(str(repository), dest)
        return release

    def flip(self, release: str) -> str | None:
        """Point ``current`` at ``release`` (atomically); returns the release it named before, if any."""
        self.path(release)
        before = self.live_or_none()
        tmp = self.root / f".{CURRENT}.{os.getpid()}"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(Path(RELEASES) / release)  # relative: the same link wherever the volume is mounted
        os.replace(tmp, self.link)
        return before

    def prune(self, keep: int, protect: set[str] | frozenset[str] = frozenset()) -> list[str]:
        """Delete all but the newest ``keep`` releases; never the live one nor ``protect``. Returns the deleted."""
        keep = max(keep, 1)
        live = self.live_or_none()
        releases = self.names()
        doomed = [r for r in releases[: max(len(releases) - keep, 0)] if r != live and r not in protect]
        for r in doomed:
            shutil.rmtree(self.releases / r)
        return doomed


def adopt(root: Path, repository: Path) -> str:
    """The volume's first (or a hand-built) release: a copy of ``repository``, made live."""
    if not (repository / "golden.json").is_file():
        raise VolumeError(f"{repository}: not a built model repository (no golden.json)")
    vol = ReleaseVolume(root)
    staging = vol.root / f".adopt.{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(repository, staging, symlinks=True)
    release = vol.add(staging)
    vol.flip(release)
    return release


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m retrain.volume", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    ad = sub.add_parser("adopt", help="copy a built repository in as a release and make it live")
    ad.add_argument("volume", type=Path)
    ad.add_argument("repository", type=Path)
    ls = sub.add_parser("list", help="the releases, the live one marked")
    ls.add_argument("volume", type=Path)
    args = p.parse_args(argv)
    try:
        if args.command == "adopt":
            print(f"live: {adopt(args.volume, args.repository)}")
            return 0
        vol = ReleaseVolume(args.volume)
        live = vol.live_or_none()
        for r in vol.names():
            print(f"{'*' if r == live else ' '} {r}")
        return 0
    except VolumeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
