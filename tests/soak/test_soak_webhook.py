"""Soak of a real ``tmc-webhook``: mixed review load for a long time, resources sampled as it runs.

``make soak`` runs it for 30 minutes.  Every minute it prints the server's resident memory, open
file descriptors and threads (master and workers together) and the requests answered so far.
After the first 5 minutes (warm-up: caches, allocator arenas, the connection pool filling) none
of the three may trend upwards by more than 10%: a least-squares line through the later samples
may rise by at most a tenth of their mean over the whole window.  No request may fail.

Environment: ``TMC_SOAK_SECONDS`` (default 1800), ``TMC_SOAK_SAMPLE_SECONDS`` (default 60),
``TMC_SOAK_WARMUP_SECONDS`` (default 300).  A short run: ``TMC_SOAK_SECONDS=120
TMC_SOAK_SAMPLE_SECONDS=10 TMC_SOAK_WARMUP_SECONDS=30 make soak``.
"""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

import pytest

from kcp_tmc.certs.generate import generate_dir
from tests.procstats import Usage, usage
from tests.soak.soakkit import bad_input_loop, rise, seconds
from tests.webhook.load import Load
from tests.webhook.webhook_helpers import NAMESPACE, SERVICE, start_server, stop_server

# The suite's 120 s per-test timeout does not fit a soak: its own duration plus start and stop.
pytestmark = [pytest.mark.soak, pytest.mark.timeout(seconds("TMC_SOAK_SECONDS", 1800) + 300)]


def test_webhook_soak(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    duration = seconds("TMC_SOAK_SECONDS", 1800)
    every = seconds("TMC_SOAK_SAMPLE_SECONDS", 60)
    warmup = seconds("TMC_SOAK_WARMUP_SECONDS", 300)
    assert duration > warmup + 2 * every, "the run must hold at least three samples after the warm-up"
    certs = tmp_path / "certs"
    generate_dir(certs, service=SERVICE, namespace=NAMESPACE, dns=["localhost"], ips=["127.0.0.1"])
    server = start_server(tmp_path, certs, "--workers", "2", "--log-level", "warning")
    stop = threading.Event()
    bad_errors: list[str] = []
    samples: list[tuple[float, Usage, int]] = []
    bad = threading.Thread(target=bad_input_loop, args=(server, stop, bad_errors, duration + 60), daemon=True)
    try:
        # Keep-alive connections renewed every 50 requests, a small pause: a steady load, not a flood.
        with Load(
            server.port, server.context, threads=3, duration=duration + 60, reconnect_every=50, pause=0.002
        ) as load:
            bad.start()
            started = time.monotonic()
            while (elapsed := time.monotonic() - started) < duration:
                time.sleep(min(every, max(0.0, duration - elapsed)))
                now = time.monotonic() - started
                current = usage(server.proc.pid)
                answered = len(load.shots)
                samples.append((now, current, answered))
                with capsys.disabled():
                    print(f"[soak] t={now:7.1f}s {current} requests={answered} failed={len(load.failures())}")
            stop.set()
        bad.join(30)
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            stop_server(server)
    assert load.failures() == [], load.failures()[:5]
    assert bad_errors == [], bad_errors[:5]
    later = [(t, u) for t, u, _ in samples if t >= warmup]
    assert len(later) >= 3
    report = []
    for name in ("rss", "fds", "threads"):
        series = [(t, float(getattr(u, name))) for t, u in later]
        mean = sum(v for _, v in series) / len(series)
        trend = rise(series)
        scale, unit = (1024 * 1024, " MiB") if name == "rss" else (1, "")
        report.append(
            f"{name}: mean {mean / scale:.1f}{unit}, trend {trend / scale:+.1f}{unit} ({trend / mean:+.1%})"
        )
        assert trend <= 0.10 * mean, report
    rate = (samples[-1][2] - samples[0][2]) / (samples[-1][0] - samples[0][0])
    with capsys.disabled():
        print(f"[soak] after the warm-up: {'; '.join(report)}; {rate:.0f} requests/s")
