"""The one writer of result files: every file gstc writes whole goes through here.

- `replace(path)`: write a temporary file in the same folder, fsync it, rename it over
  `path`, fsync the folder. A reader, or a writer killed at any moment, sees the old
  file or the new one, never half of one; after the call returns, a power cut keeps the
  new one. `write_bytes` and `write_text` are its one-call forms; checkpoints stream
  into it (`with replace(path) as fh: torch.save(state, fh)`).
- `create(path, data)`: the same, but only when `path` does not exist yet, atomically
  (a hard link, which fails when the target exists, on NFS too): how a lock is claimed.

Appending a line to a JSONL file (`gstc.jsonio.append_jsonl`) is the one other way
results grow: one write and an fsync per line. Result paths themselves belong to
`gstc.paths`; this module only knows how to write safely.
"""

from __future__ import annotations

import errno
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator


def fsync_dir(folder: str | os.PathLike[str]) -> None:
    """Make a rename or a new name in `folder` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on a folder; the rename itself is atomic anyway
        pass
    finally:
        os.close(fd)


def _temporary(target: Path) -> tuple[int, Path]:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    return fd, Path(tmp)


@contextmanager
def replace(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """A binary file to write; on a clean exit it atomically and durably replaces `path`."""
    target = Path(path)
    fd, tmp = _temporary(target)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with replace(path) as fh:
        fh.write(data)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


# Where a file system has no hard links, `create` falls back to O_CREAT | O_EXCL.
_NO_LINKS = (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK, errno.ENOSYS)


def create(path: str | os.PathLike[str], data: bytes) -> bool:
    """Write `path` with `data` unless it exists, atomically: True when this call made it.

    `data` goes to an fsynced temporary file, which is then hard-linked to `path`, so a
    reader never sees a half-written file. Without hard links: open(O_CREAT | O_EXCL),
    then write (a reader may then see the file empty for a moment).
    """
    target = Path(path)
    fd, tmp = _temporary(target)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, target)
            fsync_dir(target.parent)
            return True
        except FileExistsError:
            return False
        except OSError as exc:
            if exc.errno not in _NO_LINKS:
                raise
    finally:
        tmp.unlink(missing_ok=True)
    try:
        fd = os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    fsync_dir(target.parent)
    return True
