"""Benchmark of the admission webhook against its peers (``make bench``; not a test).

Each server runs over TLS with keep-alive, pinned to core 0 (``taskset -c 0``); ``h2load --h1``
drives it from core 1 with a realistic SyncTarget review (``examples/reviews/synctarget-create.json``,
about 2 KB compact).  Servers, side by side in the same run:

(a) ``tmc-webhook`` with the built-in policies (``POST /validate``);
(b) the same server with every policy disabled: parse, envelope check, constant allow (our ceiling);
(c) kopf's ``WebhookServer`` with one ``@kopf.on.validate`` handler running the same SyncTarget check;
(d) nginx answering a constant JSON body (the machine's limit).

Points: closed loop at 1, 10 and 50 connections; open loop at 500, 1,000 and 2,000 reviews/s offered
over 50 connections; and 500 reviews/s while 200 idle keep-alive and 50 slow-loris connections are
held open.  Per point: req/s, p50 and p99 (from h2load's per-request log on a RAM disk) and CPU
time per review (utime + stime of the server's process tree from ``/proc``, over the measured run).
Every run is bounded (``-D`` seconds); the whole benchmark takes about four minutes.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REVIEW = ROOT / "examples" / "reviews" / "synctarget-create.json"
SERVER_CORE, LOAD_CORE = "0", "1"
DURATION = int(os.environ.get("BENCH_SECONDS", "5"))
#: Seconds of each measured run spent opening connections before h2load starts counting.
MEASURED_WARM_UP = 1.0
WARMUP = 1
CLOSED = (1, 10, 50)
OPEN = (500, 1000, 2000)
OPEN_CONNECTIONS = 50
IDLE, LORIS, IDLE_RATE = 200, 50, 500
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Point:
    """One measurement."""

    rps: float = 0.0
    p50: float = float("nan")
    p99: float = float("nan")
    cpu_ms: float = float("nan")
    ok: int = 0
    failed: int = 0
    note: str = ""
    #: Every answered request's latency (ms), sorted: so that rounds can be pooled.
    latencies: list[float] = field(default_factory=list, repr=False)


@dataclass
class Target:
    """A server under test."""

    key: str
    title: str
    path: str
    cmd: list[str]
    pid: int = 0
    proc: subprocess.Popen[bytes] | None = None
    points: dict[str, Point] = field(default_factory=dict)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --- tools ---------------------------------------------------------------------------------------


def ensure_tool(binary: str, packages: list[str]) -> str | None:
    """The path of ``binary``, installing the first Debian package that provides it when missing."""
    found = shutil.which(binary) or (f"/usr/sbin/{binary}" if os.path.exists(f"/usr/sbin/{binary}") else None)
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return None
    for package in packages:
        log(f"installing {package} for {binary} ...")
        run = subprocess.run(
            ["apt-get", "install", "-y", "-q", package],
            capture_output=True,
            timeout=300,
            check=False,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
        if run.returncode == 0:
            break
    return shutil.which(binary) or (f"/usr/sbin/{binary}" if os.path.exists(f"/usr/sbin/{binary}") else None)


def require_h2load() -> str | None:
    """The path of h2load (installed when missing and possible); says why not when it cannot be had."""
    h2 = ensure_tool("h2load", ["nghttp2-client"])
    if h2 is None:
        log("h2load is missing and cannot be installed (apt-get install nghttp2-client): no benchmark")
    return h2


def ram_dir() -> Path:
    """Where h2load's per-request logs go: a RAM disk when there is one, so that they cost no I/O."""
    return Path("/dev/shm") if os.path.isdir("/dev/shm") else Path(tempfile.gettempdir())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- servers -------------------------------------------------------------------------------------


NGINX_CONF = """
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {{
            client_body_buffer_size 64k;
            default_type application/json;
            return 200 '{body}';
        }}
    }}
}}
"""


def targets(tmp: Path, certs: Path, nginx: str | None, kopf_ok: bool) -> list[Target]:
    cert, key = str(certs / "tls.crt"), str(certs / "tls.key")
    webhook = [
        sys.executable,
        "-m",
        "kcp_tmc.webhook.cli",
        "--workers",
        "1",
        "--cert-file",
        cert,
        "--key-file",
        key,
    ]
    allow_cfg = tmp / "allow.yaml"
    from kcp_tmc.policies.plugins import default_registry

    allow_cfg.write_text("disabled: [" + ", ".join(sorted(p.name for p in default_registry())) + "]\n")
    out = []
    port = free_port()
    out.append(
        Target(
            "a",
            "tmc-webhook",
            f"https://127.0.0.1:{port}/validate?timeout=10s",
            [*webhook, "--bind", f"127.0.0.1:{port}"],
        )
    )
    port = free_port()
    out.append(
        Target(
            "b",
            "constant allow",
            f"https://127.0.0.1:{port}/validate?timeout=10s",
            [*webhook, "--bind", f"127.0.0.1:{port}", "--config", str(allow_cfg)],
        )
    )
    if kopf_ok:
        port = free_port()
        out.append(
            Target(
                "c",
                "kopf",
                f"https://127.0.0.1:{port}/check_sync_target",
                [
                    sys.executable,
                    "-m",
                    "bench.kopf_server",
                    "--port",
                    str(port),
                    "--cert-file",
                    cert,
                    "--key-file",
                    key,
                ],
            )
        )
    if nginx:
        port = free_port()
        body = json.dumps(
            {
                "apiVersion": "admission.k8s.io/v1",
                "kind": "AdmissionReview",
                "response": {"uid": "5b3c6ee6-1f0a-4d2b-9d59-5f6c3a9a0001", "allowed": True},
            }
        )
        conf = tmp / "nginx.conf"
        conf.write_text(NGINX_CONF.format(tmp=tmp, port=port, cert=cert, key=key, body=body))
        out.append(
            Target("d", "nginx", f"https://127.0.0.1:{port}/", [nginx, "-c", str(conf), "-p", str(tmp)])
        )
    return out


@contextlib.contextmanager
def running(target: Target, tmp: Path) -> Iterator[Target]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    logf = (tmp / f"server-{target.key}.log").open("wb")
    proc = subprocess.Popen(
        ["taskset", "-c", SERVER_CORE, *target.cmd],
        stdout=logf,
        stderr=logf,
        env=env,
        cwd=str(ROOT),
        start_new_session=True,
    )
    target.proc, target.pid = proc, proc.pid
    try:
        deadline = time.monotonic() + 30
        port = int(target.path.split(":")[2].split("/")[0])
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"{target.title} exited: {(tmp / f'server-{target.key}.log').read_text()[-2000:]}"
                )
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            time.sleep(0.2)
        time.sleep(1.0)
        yield target
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        logf.close()


def tree_cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` and all its descendants, in seconds."""
    parents: dict[int, int] = {}
    times: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        parents[int(entry)] = int(fields[1])
        times[int(entry)] = int(fields[11]) + int(fields[12])
    wanted, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        for child, ppid in parents.items():
            if ppid == parent and child not in wanted:
                wanted.add(child)
                frontier.append(child)
    return sum(times.get(p, 0) for p in wanted) / CLK_TCK


# --- load ----------------------------------------------------------------------------------------


def h2load(
    h2: str,
    url: str,
    body: Path,
    conns: int,
    seconds: int,
    rps_per_client: float | None,
    logfile: Path | None,
    warm_up: float = 0.0,
) -> str:
    cmd = [
        "taskset",
        "-c",
        LOAD_CORE,
        h2,
        "--h1",
        "-t",
        "1",
        "-c",
        str(conns),
        "-D",
        str(seconds),
        "-d",
        str(body),
        "-H",
        "Content-Type: application/json",
    ]
    if rps_per_client:
        cmd += ["--rps", f"{rps_per_client:g}"]
    if warm_up:
        # The connections' TLS handshakes happen here, outside the measured period: the
        # apiserver keeps its connections, so steady-state reviews are what we measure.
        cmd += [f"--warm-up-time={warm_up:g}s"]
    if logfile is not None:
        cmd += ["--log-file", str(logfile)]
    cmd.append(url)
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=False)
    return run.stdout + run.stderr


def measure(h2: str, target: Target, body: Path, ram: Path, conns: int, rps_total: float | None) -> Point:
    per_client = rps_total / conns if rps_total else None
    h2load(h2, target.path, body, conns, WARMUP, per_client, None)  # warm-up, not measured
    logfile = ram / f"h2load-{target.key}.log"
    with contextlib.suppress(FileNotFoundError):
        logfile.unlink()
    # CPU is counted from the end of the in-run warm-up, like the requests h2load reports.
    cpu_start: list[float] = []
    timer = threading.Timer(MEASURED_WARM_UP, lambda: cpu_start.append(tree_cpu_seconds(target.pid)))
    timer.start()
    out = h2load(h2, target.path, body, conns, DURATION, per_client, logfile, warm_up=MEASURED_WARM_UP)
    timer.join()
    cpu = tree_cpu_seconds(target.pid) - cpu_start[0]
    point = Point()
    for line in out.splitlines():
        text = line.strip()
        if text.startswith("requests:"):
            parts = text.replace(",", "").split()
            point.ok = int(parts[parts.index("succeeded") - 1])
            point.failed = int(parts[parts.index("failed") - 1]) + int(parts[parts.index("errored") - 1])
    lat = []
    with contextlib.suppress(FileNotFoundError), logfile.open() as f:
        for row in f:
            cols = row.split()
            if len(cols) >= 3 and cols[1] == "200":
                lat.append(int(cols[2]) / 1000.0)
    with contextlib.suppress(FileNotFoundError):
        logfile.unlink()
    lat.sort()
    point.latencies = lat
    if lat:
        point.p50 = lat[len(lat) // 2]
        point.p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    point.rps = point.ok / DURATION
    point.cpu_ms = cpu * 1000 / point.ok if point.ok else float("nan")
    return point


class Crowd:
    """200 idle keep-alive TLS connections and 50 slow-loris ones, held open (bounded in time)."""

    def __init__(self, port: int, seconds: float) -> None:
        self.port = port
        self.seconds = seconds
        self.idle: list[ssl.SSLSocket] = []
        self.loris: list[ssl.SSLSocket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._trickle, daemon=True)
        # One context for all 250 connections: each context loads the CA store, about 0.8 MiB that
        # the allocator does not give back, which once counted in the next benchmark's RSS.
        self._context = ssl.create_default_context()
        self._context.check_hostname = False
        self._context.verify_mode = ssl.CERT_NONE

    def _connect(self) -> ssl.SSLSocket:
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        return self._context.wrap_socket(raw)

    def __enter__(self) -> Crowd:
        for _ in range(IDLE):
            self.idle.append(self._connect())
        for _ in range(LORIS):
            conn = self._connect()
            conn.sendall(b"POST /validate HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            self.loris.append(conn)
        self._thread.start()
        return self

    def _trickle(self) -> None:
        deadline = time.monotonic() + self.seconds
        while not self._stop.wait(0.5) and time.monotonic() < deadline:
            for conn in self.loris:
                with contextlib.suppress(OSError):
                    conn.send(b"X")

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        for conn in self.idle + self.loris:
            with contextlib.suppress(OSError):
                conn.close()


# --- report --------------------------------------------------------------------------------------


def fmt(p: Point | None) -> str:
    if p is None:
        return "-"
    text = f"{p.rps:7.0f} {p.p50:6.2f} {p.p99:7.2f} {p.cpu_ms:5.3f}"
    if p.failed:
        text += f" ({p.failed} failed)"
    return text


def report(ts: list[Target], extra: str) -> str:
    names = [
        "closed c=1",
        "closed c=10",
        "closed c=50",
        "open 500/s",
        "open 1000/s",
        "open 2000/s",
        f"idle+loris {IDLE_RATE}/s",
    ]
    width = 34
    lines = ["", "Admission webhook benchmark: req/s  p50 ms  p99 ms  CPU ms/review (server on 1 core)", ""]
    lines.append("point".ljust(16) + "".join(f"({t.key}) {t.title}".ljust(width) for t in ts))
    lines.append("-" * (16 + width * len(ts)))
    for name in names:
        lines.append(name.ljust(16) + "".join(fmt(t.points.get(name)).ljust(width) for t in ts))
    by = {t.key: t for t in ts}
    lines.append("")
    lines.append("Targets for (a) tmc-webhook:")

    def check(label: str, ok: bool | None, detail: str) -> None:
        verdict = "n/a " if ok is None else ("PASS" if ok else "MISS")
        lines.append(f"  {verdict}  {label}: {detail}")

    a = by.get("a")
    for c in (10, 50):
        name = f"closed c={c}"
        pa = a.points.get(name) if a else None
        for key, factor, label in (("c", 2.0, "kopf"), ("b", 0.8, "constant allow (b)")):
            other = by.get(key)
            po = other.points.get(name) if other else None
            if pa and po and po.rps:
                ratio = pa.rps / po.rps
                check(
                    f"c={c} throughput >= {factor:g}x {label}",
                    ratio >= factor,
                    f"{pa.rps:.0f} / {po.rps:.0f} = {ratio:.2f}x",
                )
            else:
                check(f"c={c} throughput >= {factor:g}x {label}", None, "not measured")
    # Throughput on a shared machine follows the background load; CPU per review does not much.
    # The capacity one core would have at that CPU cost gives the same ratios, less noisy.
    pa = a.points.get("closed c=10") if a else None
    for key, factor, label in (("c", 2.0, "kopf"), ("b", 0.8, "constant allow (b)")):
        other = by.get(key)
        po = other.points.get("closed c=10") if other else None
        if pa and po and pa.cpu_ms and po.cpu_ms:
            ratio = po.cpu_ms / pa.cpu_ms
            lines.append(
                f"  info  capacity from CPU/review vs {label}: {1000 / pa.cpu_ms:.0f} / "
                f"{1000 / po.cpu_ms:.0f} per core-second = {ratio:.2f}x (target {factor:g}x)"
            )
    check(
        "CPU per review <= 0.45 ms (c=10)",
        pa.cpu_ms <= 0.45 if pa else None,
        f"{pa.cpu_ms:.3f} ms" if pa else "not measured",
    )
    pa = a.points.get("open 1000/s") if a else None
    check("open loop p99 < 5 ms at 1000/s", pa.p99 < 5 if pa else None, f"{pa.p99:.2f} ms" if pa else "n/a")
    pa = a.points.get(f"idle+loris {IDLE_RATE}/s") if a else None
    check(
        f"p99 < 10 ms at {IDLE_RATE}/s with {IDLE} idle + {LORIS} slow-loris connections",
        (pa.p99 < 10 and not pa.failed) if pa else None,
        f"{pa.p99:.2f} ms" if pa else "n/a",
    )
    if extra:
        lines += ["", extra]
    return "\n".join(lines)


def main() -> int:
    h2 = require_h2load()
    if h2 is None:
        return 1
    nginx = ensure_tool("nginx", ["nginx-light", "nginx"])
    try:
        import kopf  # noqa: F401

        kopf_ok = True
    except ImportError:
        log("kopf is not installed (pip install '.[bench]'): peer (c) left out")
        kopf_ok = False
    if nginx is None:
        log("nginx is missing and cannot be installed: peer (d) left out")
    from kcp_tmc.certs.generate import generate_dir

    ram = ram_dir()
    with tempfile.TemporaryDirectory(prefix="tmc-bench-") as tmpdir:
        tmp = Path(tmpdir)
        certs = tmp / "certs"
        generate_dir(
            certs, service="tmc-webhook", namespace="tmc-system", dns=["localhost"], ips=["127.0.0.1"]
        )
        body = tmp / "review.json"
        body.write_text(json.dumps(json.loads(REVIEW.read_text()), separators=(",", ":")))
        log(f"review body: {body.stat().st_size} bytes; {DURATION} s per point")
        ts = targets(tmp, certs, nginx, kopf_ok)
        # All servers run at once (an idle one costs nothing) and each point is measured for
        # every server in turn: on a shared machine, the side-by-side figures of one point are
        # then taken under the same background load.
        with contextlib.ExitStack() as stack:
            live = []
            for target in ts:
                try:
                    live.append(stack.enter_context(running(target, tmp)))
                except Exception as exc:  # one broken peer must not lose the others' figures
                    log(f"({target.key}) {target.title} did not start: {exc}")
            points: list[tuple[str, int, float | None, bool]] = [
                *((f"closed c={c}", c, None, False) for c in CLOSED),
                *((f"open {r}/s", OPEN_CONNECTIONS, float(r), False) for r in OPEN),
                (f"idle+loris {IDLE_RATE}/s", OPEN_CONNECTIONS, float(IDLE_RATE), True),
            ]
            for name, conns, rate, crowd in points:
                for target in live:
                    try:
                        if crowd:
                            port = int(target.path.split(":")[2].split("/")[0])
                            with Crowd(port, DURATION + WARMUP + 30):
                                p = measure(h2, target, body, ram, conns, rate)
                        else:
                            p = measure(h2, target, body, ram, conns, rate)
                    except Exception as exc:
                        log(f"   {name} ({target.key}) failed: {exc}")
                        continue
                    target.points[name] = p
                    log(f"   {name:18} ({target.key}) {target.title:15} {fmt(p)}")
        extra = (
            f"Load: h2load --h1 on core {LOAD_CORE}; open loop = {OPEN_CONNECTIONS} connections at a fixed "
            "rate each; CPU = utime+stime of the server's process tree over the measured run / reviews."
        )
        print(report(ts, extra))
    return 0


if __name__ == "__main__":
    sys.exit(main())
