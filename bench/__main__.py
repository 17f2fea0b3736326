"""``python -m bench``: run every benchmark module of this folder, one after the other.

A module listed in :data:`MODULES` that is not there (yet) is skipped with a note; each one
exposes ``main() -> int``.  Each runs in a process of its own, so that what one module leaves
allocated (TLS contexts, caches) never counts in the next one's RSS.
"""

from __future__ import annotations

import importlib
import subprocess
import sys

#: The benchmark modules, in the order they run.
MODULES = (
    "bench.webhook",
    "bench.reconciler",
    "bench.quota",
    "bench.quota_cycle",
    "bench.virtual_workspace",
    "bench.fakeapi",
)


def main() -> int:
    status = 0
    for name in MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            print(f"{name}: not present, skipped", file=sys.stderr)
            continue
        del module
        print(f"\n##### {name}", flush=True)
        status = max(status, subprocess.run([sys.executable, "-m", name], check=False).returncode)
    return status


if __name__ == "__main__":
    sys.exit(main())
