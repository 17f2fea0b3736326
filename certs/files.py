"""File names in a certificate directory and crash-safe, atomic replacement of files.

Every file is replaced with the classic sequence: write a temporary file in the
same directory, ``fsync`` it, ``os.replace`` it over the target, then ``fsync``
the directory.  A reader therefore sees either the complete old file or the
complete new one, never a torn or empty file, even across a power loss.

Private keys are created with mode ``0600`` from the start (the temporary file
is opened with that mode), so a key is never readable by others, not even for
a moment.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from kcp_tmc.certs.errors import CertsError

CA_CRT = "ca.crt"
CA_KEY = "ca.key"
TLS_CRT = "tls.crt"
TLS_KEY = "tls.key"

KEY_MODE = 0o600
CERT_MODE = 0o644


@dataclass(frozen=True)
class CertPaths:
    """The four files of a certificate directory.

    ``ca_crt`` holds the CA bundle (newest CA first), ``ca_key`` the key of the
    newest CA, ``tls_crt``/``tls_key`` the serving pair.
    """

    directory: Path
    ca_crt: Path
    ca_key: Path
    tls_crt: Path
    tls_key: Path

    @classmethod
    def of(cls, directory: str | os.PathLike[str]) -> CertPaths:
        """The standard file names inside ``directory``."""
        d = Path(directory)
        return cls(d, d / CA_CRT, d / CA_KEY, d / TLS_CRT, d / TLS_KEY)

    def all(self) -> tuple[Path, Path, Path, Path]:
        """All four paths, in the order in which a full generation writes them."""
        return (self.ca_key, self.ca_crt, self.tls_key, self.tls_crt)


def atomic_write(path: str | os.PathLike[str], data: bytes, *, mode: int = CERT_MODE) -> None:
    """Replace ``path`` with ``data`` atomically and durably, leaving it with permission ``mode``.

    The temporary file lives next to ``path`` (``os.replace`` is only atomic
    within one file system) and is removed if anything fails, so a failed write
    leaves the old file exactly as it was.  OS errors (a read-only or full file
    system) become :class:`CertsError` ``cannot write <path>: <reason>``.
    """
    target = Path(path)
    directory = target.parent
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise CertsError(f"cannot write {target}: {exc.strerror or exc}") from None
    try:
        # mkstemp creates the file 0600; widen it only for public material.
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as tmp:
            tmp.write(data)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, target)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        if isinstance(exc, OSError):
            raise CertsError(f"cannot write {target}: {exc.strerror or exc}") from None
        raise
    fsync_directory(directory)


def fsync_directory(directory: str | os.PathLike[str]) -> None:
    """Make a rename inside ``directory`` durable (a no-op where directories cannot be opened)."""
    try:
        dir_fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@contextlib.contextmanager
def directory_lock(directory: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``directory`` itself, so two writers never interleave.

    The lock is on the directory's own file descriptor, so no lock file is left
    behind; readers are not blocked (they rely on atomic replacement).
    """
    try:
        dir_fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError as exc:
        raise CertsError(f"cannot open {directory}: {exc.strerror or exc}") from None
    try:
        fcntl.flock(dir_fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(dir_fd)
