"""``python -m bench``: run every benchmark module of this folder, one after the other.

A module listed in :data:`MODULES` that is not there (yet) is skipped with a note; each one
exposes ``main() -> int``.
"""

from __future__ import annotations

import importlib
import sys

#: The benchmark modules, in the order they run.
MODULES = ("bench.webhook", "bench.reconciler")


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
        print(f"\n##### {name}", flush=True)
        status = max(status, int(module.main() or 0))
    return status


if __name__ == "__main__":
    sys.exit(main())
