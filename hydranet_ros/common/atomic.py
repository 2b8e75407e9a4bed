"""Outputs that appear at their final name only once complete.

Each output (bag directory, video, report) is built under a hidden temporary
folder next to its final path and renamed into place on ``commit``. A failed or
interrupted run removes the temporary folder, and even a killed one leaves
only a hidden ``.<name>.*.partial`` folder, never something that looks whole.
"""
from __future__ import annotations

import glob
import os
import shutil
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any


class OutputExistsError(FileExistsError):
    """The final path exists and overwriting was not asked for."""


def check_writable(final: Path, overwrite: bool) -> None:
    if final.exists() and not overwrite:
        raise OutputExistsError(f"{final} exists; pass --overwrite to replace it")


class StagedPath:
    """``with StagedPath(final) as tmp: ...write tmp...; staged.commit()``."""

    def __init__(self, final: Path, overwrite: bool = False) -> None:
        self.final = Path(final)
        self.overwrite = overwrite
        self._folder: Path | None = None
        self.path: Path | None = None

    def __enter__(self) -> Path:
        check_writable(self.final, self.overwrite)
        self.final.parent.mkdir(parents=True, exist_ok=True)
        # same parent folder: the final rename stays on one file system and is atomic
        self._folder = Path(tempfile.mkdtemp(prefix=f".{self.final.name}.", suffix=".partial",
                                             dir=self.final.parent))
        # the real name inside: rosbag2 names its storage file after the bag folder
        self.path = self._folder / self.final.name
        return self.path

    def commit(self) -> None:
        assert self._folder is not None and self.path is not None, "commit() outside the with block"
        check_writable(self.final, self.overwrite)
        if self.final.exists() or self.final.is_symlink():
            # move the old output aside first: a crash now leaves either the old or the new one
            os.replace(self.final, self._folder / ".previous")
        os.replace(self.path, self.final)
        self._discard()

    def _discard(self) -> None:
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._discard()


def atomic_write(path: Path, write: Any) -> None:
    """Call ``write(tmp_path)`` then rename onto ``path``: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        # mkstemp (and writers that recreate the file) leave 0600, which other users (an
        # installed package, a launch as another user) cannot read; weights are not secrets
        os.chmod(tmp, 0o644)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def stale_partials(final: Path) -> list[Path]:
    """Hidden ``.<name>.*.partial`` folders that ``StagedPath`` left next to ``final``: only a
    killed run (SIGKILL, power loss) leaves one; a failed or interrupted run removes its own."""
    parent = Path(final).parent
    if not parent.is_dir():
        return []
    pattern = f".{glob.escape(Path(final).name)}.*.partial"
    return sorted(p for p in parent.glob(pattern) if p.is_dir())
