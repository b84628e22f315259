"""``prune --apply``'s backup: copies of the project files it rewrites and hard links of every file the
removed distributions' ``RECORD`` lists (in the environment's prefix, so a rollback needs no network
and costs no copy), restored on failure, discarded on success.
"""

from __future__ import annotations

import csv
import os
import shutil
import tempfile
from pathlib import Path

from provision.prune.installed import InstalledEnv


def record_files(env: InstalledEnv, key: str) -> list[Path]:
    dist = env.dists[key]
    return record_paths(dist.metadata_dir, dist.location)


def record_paths(metadata_dir: str, location: str) -> list[Path]:
    """Every file the ``RECORD`` in ``metadata_dir`` lists, as absolute paths."""
    record = Path(metadata_dir) / "RECORD"
    if not metadata_dir or not record.is_file():
        return []
    base = Path(location)
    out = []
    with open(record, newline="", encoding="utf-8") as fh:
        for row in csv.reader(fh):
            if row and row[0]:
                out.append(Path(os.path.normpath(base / row[0])))
    return out


class Backup:
    """Copies of project files and hard links of distribution files; :meth:`restore` puts them back."""

    def __init__(self, prefix: str) -> None:
        base = Path(prefix) if os.access(prefix, os.W_OK) else Path(tempfile.gettempdir())
        self.root = Path(tempfile.mkdtemp(prefix=".gpuprov-prune-backup-", dir=base))
        self.files: list[tuple[Path, Path]] = []
        self.absent: list[Path] = []

    def save(self, path: Path) -> None:
        """An installed file (hard link: free, and an uninstall only unlinks the original)."""
        if not path.is_file():
            return  # RECORD lists .pyc files that were never written, and directories
        dest = self.root / str(len(self.files))
        try:
            os.link(path, dest)
        except OSError:
            shutil.copy2(path, dest)
        self.files.append((path, dest))

    def save_text(self, path: Path) -> None:
        """A file that is rewritten in place (a hard link would change with it): copy."""
        if not path.exists():
            self.absent.append(path)
            return
        dest = self.root / str(len(self.files))
        shutil.copy2(path, dest)
        self.files.append((path, dest))

    def note_created(self, path: Path) -> None:
        """A file a step wrote where none was saved: :meth:`restore` deletes it."""
        if path not in {original for original, _ in self.files} and path not in self.absent:
            self.absent.append(path)

    def restore(self) -> None:
        for original, saved in self.files:
            if original.exists() and os.path.samefile(original, saved):
                continue  # still the very file we linked: untouched
            original.parent.mkdir(parents=True, exist_ok=True)
            tmp = original.with_name(original.name + ".gpuprov-restore")
            shutil.copy2(saved, tmp)
            os.replace(tmp, original)
        for path in self.absent:
            if path.is_file():
                path.unlink()

    def discard(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
