"""A host given as a file (``--from FILE``): a gpuprov snapshot (``doctor --save``) or what ``nvidia-smi -q``
(text) or ``nvidia-smi -q -x`` (XML) printed there, told apart by what the file holds, not by its name."""

from __future__ import annotations

from pathlib import Path

from provision import smireading
from provision.errors import SnapshotError
from provision.snapshot import Snapshot, read_file_text


def load(path: str | Path) -> Snapshot:
    """The snapshot in ``path``, or the one an nvidia-smi reading there gives. One-line :class:`SnapshotError`
    when it is neither."""
    p = Path(path)
    text = read_file_text(p)
    if not text.lstrip().startswith("{") and smireading.detect(text) is not None:
        try:
            return smireading.read(text, source=p.name).snapshot
        except SnapshotError as exc:
            raise SnapshotError(f"{p}: {exc}") from None
    return Snapshot.from_json(text, p)
