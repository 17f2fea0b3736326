"""What a process tree holds, read from ``/proc``: resident memory, open descriptors, threads.

The reliability tests watch a real ``tmc-webhook`` (a gunicorn master and its workers) while they
abuse it; these are the figures they compare before and after.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def children(pid: int) -> list[int]:
    """The direct children of ``pid`` (gunicorn's workers for its master), empty when it is gone."""
    out: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return out
    for task in tasks:
        try:
            out.extend(int(p) for p in (task / "children").read_text().split())
        except OSError:
            continue
    return sorted(set(out))


def _status_field(pid: int, name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    raise KeyError(name)


@dataclass(frozen=True)
class Usage:
    """Resident memory (bytes), open file descriptors and threads, summed over a process tree."""

    rss: int
    fds: int
    threads: int

    @property
    def rss_mib(self) -> float:
        return self.rss / (1024 * 1024)

    def __str__(self) -> str:
        return f"rss={self.rss_mib:.1f}MiB fds={self.fds} threads={self.threads}"


def usage(pid: int) -> Usage:
    """:class:`Usage` of ``pid`` and its children (processes that exit meanwhile are skipped)."""
    rss = fds = threads = 0
    for each in [pid, *children(pid)]:
        try:
            rss += _status_field(each, "VmRSS") * 1024
            threads += _status_field(each, "Threads")
            fds += len(os.listdir(f"/proc/{each}/fd"))
        except (OSError, KeyError):
            continue
    return Usage(rss, fds, threads)
