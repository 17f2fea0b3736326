"""Atomic, durable file replacement."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from kcp_tmc.certs import CertsError
from kcp_tmc.certs.files import CertPaths, atomic_write, directory_lock


def test_atomic_write_creates_and_replaces_with_mode(tmp_path: Path) -> None:
    target = tmp_path / "tls.key"
    atomic_write(target, b"one", mode=0o600)
    assert target.read_bytes() == b"one"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    atomic_write(target, b"two", mode=0o600)
    assert target.read_bytes() == b"two"
    atomic_write(tmp_path / "tls.crt", b"pub")
    assert stat.S_IMODE((tmp_path / "tls.crt").stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tls.crt", "tls.key"]


def test_atomic_write_replaces_the_inode(tmp_path: Path) -> None:
    """A reader holding the old file open keeps reading the old content."""
    target = tmp_path / "ca.crt"
    atomic_write(target, b"old")
    with target.open("rb") as reader:
        atomic_write(target, b"new")
        assert reader.read() == b"old"
    assert target.read_bytes() == b"new"


def test_failed_write_leaves_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "tls.crt"
    atomic_write(target, b"old")

    def broken_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(CertsError) as info:
        atomic_write(target, b"new")
    assert str(info.value) == f"cannot write {target}: No space left on device"
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["tls.crt"]


def test_write_into_a_missing_directory(tmp_path: Path) -> None:
    target = tmp_path / "absent" / "tls.crt"
    with pytest.raises(CertsError) as info:
        atomic_write(target, b"x")
    assert str(info.value) == f"cannot write {target}: No such file or directory"
    with pytest.raises(CertsError) as info, directory_lock(tmp_path / "absent"):
        pass
    assert str(info.value) == f"cannot open {tmp_path / 'absent'}: No such file or directory"


def test_interrupted_write_removes_the_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "tls.crt"

    def interrupted(fd: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, b"new")
    assert list(tmp_path.iterdir()) == []


def test_concurrent_readers_never_see_partial_content(tmp_path: Path) -> None:
    target = tmp_path / "tls.crt"
    contents = [bytes([65 + i]) * 200_000 for i in range(5)]
    atomic_write(target, contents[0])
    seen: set[bytes] = set()
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            seen.add(target.read_bytes())

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for _ in range(10):
            for data in contents:
                atomic_write(target, data)
    finally:
        stop.set()
        thread.join()
    assert seen <= set(contents)


def test_directory_lock_excludes_a_second_writer(tmp_path: Path) -> None:
    order: list[str] = []
    with directory_lock(tmp_path):
        thread = threading.Thread(target=lambda: _locked(tmp_path, order))
        thread.start()
        thread.join(0.1)
        order.append("first done")
    thread.join()
    assert order == ["first done", "second"]
    assert list(tmp_path.iterdir()) == []


def _locked(path: Path, order: list[str]) -> None:
    with directory_lock(path):
        order.append("second")


def test_cert_paths_of(tmp_path: Path) -> None:
    paths = CertPaths.of(tmp_path)
    assert paths.all() == (
        tmp_path / "ca.key",
        tmp_path / "ca.crt",
        tmp_path / "tls.key",
        tmp_path / "tls.crt",
    )
