"""Pausing Python's cyclic garbage collector around large, short-lived allocations.

A cycle parses a list of every object (json.loads creates no reference cycles) and drops it when the
cycle ends; reference counting frees all of it.  With the cyclic collector running, those tens of
thousands of containers survive the young generations while the cycle runs, get promoted, and trigger
full collections whose cost grows with the heap: the cycle's CPU time then grows faster than the object
count (a 10,000-object list took three times longer to parse).  Pausing the collector for the cycle
keeps the cost linear; cyclic garbage made meanwhile is collected once it is running again.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["paused_gc"]

_lock = threading.Lock()
_state = {"pausers": 0, "restore": False}


@contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic collector for the block; nested and concurrent pauses are counted."""
    with _lock:
        if _state["pausers"] == 0:
            _state["restore"] = gc.isenabled()
            gc.disable()
        _state["pausers"] += 1
    try:
        yield
    finally:
        with _lock:
            _state["pausers"] -= 1
            if _state["pausers"] == 0 and _state["restore"]:
                gc.enable()
