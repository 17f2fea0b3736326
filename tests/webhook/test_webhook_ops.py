"""Health, readiness, metrics, logs, settings and the TLS reloader."""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import ssl
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from flask import Flask

from kcp_tmc.certs.generate import generate_dir
from kcp_tmc.policies.jsonlog import JsonFormatter, TextFormatter
from kcp_tmc.policies.reviews import make_review
from kcp_tmc.webhook.config import WebhookConfig, WebhookConfigError, coerce_config
from kcp_tmc.webhook.logs import configure_logging
from kcp_tmc.webhook.review import parse_timeout, route_of
from kcp_tmc.webhook.tls import ReloadingTLS, TLSConfigError
from tests.webhook.webhook_helpers import NAMESPACE, SERVICE, example, post, sync_target


def test_healthz(make_app: Callable[..., Flask]) -> None:
    resp = make_app().test_client().get("/healthz")
    assert resp.status_code == 200
    assert resp.get_json() == {"status": "ok"}


def test_readyz_ok_with_a_fresh_certificate(make_app: Callable[..., Flask], cert_dir: Path) -> None:
    app = make_app(cert_file=str(cert_dir / "tls.crt"), key_file=str(cert_dir / "tls.key"))
    resp = app.test_client().get("/readyz")
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["status"] == "ok"
    assert body["checks"]["policies"] == "ok (9 loaded)"
    assert body["checks"]["certificate"].startswith("ok (expires at ")


def test_readyz_fails_within_the_renewal_window(make_app: Callable[..., Flask], tmp_path: Path) -> None:
    # A 30-day certificate issued 25 days ago has a sixth of its life left: due for renewal.
    issued = datetime.now(UTC) - timedelta(days=25)
    generate_dir(tmp_path, service=SERVICE, namespace=NAMESPACE, serving_days=30, now=issued)
    app = make_app(cert_file=str(tmp_path / "tls.crt"), key_file=str(tmp_path / "tls.key"))
    resp = app.test_client().get("/readyz")
    assert resp.status_code == 503
    body = resp.get_json()
    expiry = (issued + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M")
    assert body["status"] == "fail"
    assert body["checks"]["certificate"].startswith(f"due for renewal: it expires at {expiry}")
    assert body["checks"]["certificate"].endswith("; run 'tmc-certs rotate'")


def test_readyz_fails_when_the_certificate_is_unreadable(
    make_app: Callable[..., Flask], tmp_path: Path
) -> None:
    cert = tmp_path / "tls.crt"
    cert.write_text("not a certificate")
    app = make_app(cert_file=str(cert), key_file=str(tmp_path / "tls.key"))
    resp = app.test_client().get("/readyz")
    assert resp.status_code == 503
    assert resp.get_json()["checks"]["certificate"] == f"{cert}: no valid PEM certificate found"
    cert.unlink()
    resp = app.test_client().get("/readyz")
    assert resp.status_code == 503
    assert resp.get_json()["checks"]["certificate"] == f"cannot read {cert}: No such file or directory"


def test_readyz_fails_without_policies(make_app: Callable[..., Flask]) -> None:
    from kcp_tmc.policies.registry import Registry

    resp = make_app(registry=Registry()).test_client().get("/readyz")
    assert resp.status_code == 503
    assert resp.get_json()["checks"]["policies"] == "no policy is loaded"


def test_metrics_families_and_bounded_labels(make_app: Callable[..., Flask], cert_dir: Path) -> None:
    app = make_app(cert_file=str(cert_dir / "tls.crt"), key_file=str(cert_dir / "tls.key"))
    client = app.test_client()
    post(client, "/validate", example("synctarget-create-invalid.json"))
    post(client, "/mutate", example("synctarget-create.json"))
    review = make_review(sync_target(), uid="x")
    review["request"]["kind"]["kind"] = "Gadget"
    post(client, "/validate", review)
    resp = client.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("text/plain; version=")
    text = resp.get_data(as_text=True)
    for line in (
        'tmc_admission_requests_total{kind="SyncTarget",operation="CREATE",outcome="denied",'
        'webhook="/validate"} 1.0',
        'tmc_admission_requests_total{kind="SyncTarget",operation="CREATE",outcome="allowed",'
        'webhook="/mutate"} 1.0',
        'tmc_admission_requests_total{kind="other",operation="CREATE",outcome="unknown_kind",'
        'webhook="/validate"} 1.0',
        'tmc_admission_duration_seconds_bucket{le="30.0",webhook="/validate"} 2.0',
        'tmc_policy_evaluation_duration_seconds_count{policy="synctarget-validation"} 1.0',
        'tmc_policy_evaluation_duration_seconds_count{policy="synctarget-defaults"} 1.0',
    ):
        assert line in text, line
    expiry = [
        ln for ln in text.splitlines() if ln.startswith("tmc_serving_certificate_expiry_timestamp_seconds ")
    ]
    assert len(expiry) == 1
    assert float(expiry[0].split()[1]) > datetime.now(UTC).timestamp() + 300 * 86400
    assert "Gadget" not in text
    assert "eu-central" not in text  # never an object name


def test_review_log_line_has_the_fields_and_never_the_object(
    make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture
) -> None:
    client = make_app().test_client()
    review = example("synctarget-create-invalid.json")
    review["request"]["object"]["spec"]["secretToken"] = "s3cr3t-value"
    with caplog.at_level(logging.INFO, logger="kcp_tmc.webhook.reviews"):
        post(client, "/validate", review)
    (record,) = [r for r in caplog.records if r.name == "kcp_tmc.webhook.reviews"]
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "review"
    assert line["level"] == "info"
    fields = {k: v for k, v in line.items() if k not in ("time", "level", "logger", "message")}
    duration = fields.pop("durationMs")
    assert isinstance(duration, float)
    assert fields == {
        "uid": "5b3c6ee6-1f0a-4d2b-9d59-5f6c3a9a0004",
        "webhook": "/validate",
        "kind": "SyncTarget",
        "namespace": "",
        "name": "EU_Central",
        "operation": "CREATE",
        "subResource": "",
        "user": "system:serviceaccount:tmc-system:tmc-admin",
        "dryRun": False,
        "decision": "denied",
        "code": 403,
        "denied": ["synctarget-validation"],
        "warned": [],
        "errored": [],
    }
    assert "s3cr3t" not in JsonFormatter().format(record)
    assert "s3cr3t" not in TextFormatter().format(record)


def test_text_format_and_configure_logging() -> None:
    stream = io.StringIO()
    configure_logging("text", stream=stream)
    configure_logging("text", stream=stream)  # idempotent: one handler
    try:
        logging.getLogger("kcp_tmc.webhook.reviews").info(
            "review", extra={"fields": {"uid": "u1", "name": "n"}}
        )
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("kcp_tmc.webhook").exception("failed")
    finally:
        logger = logging.getLogger("kcp_tmc")
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.propagate = True
        logger.setLevel(logging.NOTSET)
    lines = stream.getvalue().splitlines()
    assert lines[0].endswith(" info kcp_tmc.webhook.reviews: review uid=u1 name=n")
    assert lines[1].endswith(" error kcp_tmc.webhook: failed")
    assert "ValueError: boom" in stream.getvalue()


def test_json_formatter_exception() -> None:
    try:
        raise KeyError("k")
    except KeyError:
        import sys

        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "bad %s", ("thing",), sys.exc_info())
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "bad thing"
    assert "KeyError: 'k'" in line["exception"]


# --- settings ---------------------------------------------------------------------------------------


def test_coerce_config_forms() -> None:
    assert coerce_config(None) == WebhookConfig()
    cfg = WebhookConfig(max_body_bytes=10)
    assert coerce_config(cfg) is cfg
    assert coerce_config({"MAX_BODY_BYTES": 5, "log_format": "text"}) == WebhookConfig(
        max_body_bytes=5, log_format="text"
    )


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"max_bodies": 1}, "unknown setting 'max_bodies' (known: engine_config, registry, cert_file"),
        ({"max_body_bytes": 0}, "max_body_bytes must be a positive integer, got 0"),
        ({"default_timeout": 31}, "default_timeout must be more than 0 and at most 30 seconds"),
        ({"deadline_margin": 1.5}, "deadline_margin must be at least 0 and under 1 second, got 1.5"),
        ({"log_format": "xml"}, "log_format must be json or text, got 'xml'"),
        ({"engine_threads": 0}, "engine_threads must be a positive integer, got 0"),
        ({"cert_file": "a"}, "cert_file and key_file go together: give both or neither"),
    ],
)
def test_bad_settings_are_refused(settings: dict[str, object], message: str) -> None:
    with pytest.raises(WebhookConfigError) as err:
        coerce_config(settings)
    assert str(err.value).startswith(message)


def test_config_of_a_wrong_type() -> None:
    with pytest.raises(
        WebhookConfigError, match="config must be a WebhookConfig, a mapping or None, got list"
    ):
        coerce_config([])  # type: ignore[arg-type]


def test_bad_engine_config_file_is_refused(make_app: Callable[..., Flask], tmp_path: Path) -> None:
    from kcp_tmc.policies.config import ConfigError

    path = tmp_path / "e.yaml"
    path.write_text("policies:\n  nope: {}\n")
    with pytest.raises(ConfigError, match=r"e.yaml:2: policies.nope: unknown policy 'nope'"):
        make_app(engine_config=str(path))


@pytest.mark.parametrize(
    ("query", "seconds"),
    [
        ("timeout=10s", 10.0),
        ("a=b&timeout=500ms", 0.5),
        ("timeout=2", None),  # Go's parser needs a unit
        ("timeout=1m", 60.0),
        ("timeout=1m30s", 90.0),
        ("xtimeout=5s&timeout=3s", 3.0),
        ("timeout=5s&xtimeout=1s", 5.0),
        ("timeout=1h", None),
        ("timeout=abc", None),
        ("timeout=-1s", None),
        ("timeout=nans", None),
        ("xtimeout=5s", None),
        ("", None),
    ],
)
def test_parse_timeout(query: str, seconds: float | None) -> None:
    assert parse_timeout(query) == seconds


@pytest.mark.parametrize(
    ("path", "webhook"),
    [
        ("/validate", "/validate"),
        ("/mutate/p", "/mutate/p"),
        ("/validate/", None),
        ("/mutatex", None),
        ("/", None),
    ],
)
def test_route_of(path: str, webhook: str | None) -> None:
    route = route_of(path)
    assert (route.webhook if route else None) == webhook


# --- TLS reloading ----------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_reloading_tls_swaps_only_a_matching_pair(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    for d in (first, second):
        generate_dir(d, service=SERVICE, namespace=NAMESPACE)
    live = tmp_path / "live"
    shutil.copytree(first, live)
    expiries: list[datetime] = []
    clock = Clock()
    tls = ReloadingTLS(str(live / "tls.crt"), str(live / "tls.key"), clock=clock, on_load=expiries.append)
    original = tls.context()
    assert original.minimum_version is ssl.TLSVersion.TLSv1_2
    assert original.options & ssl.OP_NO_COMPRESSION
    assert len(expiries) == 1

    # Nothing changed: same context, even after the interval.
    clock.now = 5
    assert tls.context() is original
    # Only the key replaced (rotation half done): the pair does not match, the old context stays.
    shutil.copy(second / "tls.key", live / "tls.key")
    os.utime(live / "tls.key", ns=(1, 10**18))
    clock.now = 10
    assert tls.context() is original
    assert tls.reloads == 0
    # Not checked again before the interval has passed.
    shutil.copy(second / "tls.crt", live / "tls.crt")
    clock.now = 10.5
    assert tls.context() is original
    clock.now = 11
    swapped = tls.context()
    assert swapped is not original
    assert tls.reloads == 1
    assert len(expiries) == 2
    # A missing file keeps the current context.
    (live / "tls.crt").unlink()
    clock.now = 20
    assert tls.context() is swapped


def test_reloading_tls_refuses_a_bad_pair_at_start(tmp_path: Path, cert_dir: Path) -> None:
    with pytest.raises(
        TLSConfigError, match=r"cannot use .*tls.crt and .*missing.key: No such file or directory"
    ):
        ReloadingTLS(str(cert_dir / "tls.crt"), str(tmp_path / "missing.key"))
    other = tmp_path / "other"
    generate_dir(other, service=SERVICE, namespace=NAMESPACE)
    with pytest.raises(TLSConfigError, match=r"KEY_VALUES_MISMATCH"):
        ReloadingTLS(str(cert_dir / "tls.crt"), str(other / "tls.key"))


# --- command line ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--default-timeout", "40"], "argument --default-timeout: must be at most 30 seconds"),
        (["--default-timeout", "x"], "argument --default-timeout: must be a number of seconds, got 'x'"),
        (["--workers", "0"], "argument --workers: must be at least 1, got 0"),
        (["--workers", "two"], "argument --workers: must be a whole number, got 'two'"),
        (["--keep-alive", "-3"], "argument --keep-alive: must be at least 1, got -3"),
    ],
)
def test_cli_flag_errors(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    from kcp_tmc.webhook.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["--cert-file", "c", "--key-file", "k", *args])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_cli_refuses_a_bad_pair_in_process(
    tmp_path: Path, cert_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from kcp_tmc.webhook.cli import main

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "unchanged")
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    (metrics / "counter_1.db").write_bytes(b"stale")
    code = main(
        [
            "--cert-file",
            str(cert_dir / "tls.crt"),
            "--key-file",
            str(tmp_path / "nope.key"),
            "--metrics-dir",
            str(metrics),
        ]
    )
    assert code == 2
    assert "tmc-webhook: error: cannot use " in capsys.readouterr().err
    assert not (metrics / "counter_1.db").exists()  # stale values of an earlier run are removed
    logger = logging.getLogger("kcp_tmc")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    logger.propagate = True
    logger.setLevel(logging.NOTSET)


def test_cli_refuses_a_missing_kubeconfig(
    tmp_path: Path, cert_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from kcp_tmc.webhook.cli import main

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "unchanged")
    missing = tmp_path / "kubeconfig"
    args = ["--cert-file", str(cert_dir / "tls.crt"), "--key-file", str(cert_dir / "tls.key")]
    code = main([*args, "--kubeconfig", str(missing), "--metrics-dir", str(tmp_path / "m")])
    assert code == 2
    assert f"tmc-webhook: error: --kubeconfig {missing}: no such file" in capsys.readouterr().err
    logger = logging.getLogger("kcp_tmc")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    logger.propagate = True
    logger.setLevel(logging.NOTSET)


# --- worker helpers -----------------------------------------------------------------------------


def test_connection_close_header_asks_gunicorn_to_close() -> None:
    from kcp_tmc.webhook.worker import _honour_connection_close

    class GunicornResponse:
        closed = False

        def force_close(self) -> None:
            self.closed = True

        def start_response(
            self, status: str, headers: list[tuple[str, str]], exc_info: object = None
        ) -> None:
            self.status = status

    def app(environ: dict[str, object], start_response: Callable[..., object]) -> list[bytes]:
        start_response("413 Content Too Large", [("Connection", "close")])
        return [b""]

    wrapped = _honour_connection_close(app, {}.get, 30.0)
    assert wrapped.extensions is None  # a plain WSGI app has no Flask extensions
    resp = GunicornResponse()
    wrapped({}, resp.start_response)
    assert resp.closed
    assert resp.status == "413 Content Too Large"


def test_body_reads_past_the_read_deadline_raise_body_timeout() -> None:
    import gevent

    from kcp_tmc.webhook.review import BodyTimeout
    from kcp_tmc.webhook.worker import _DeadlineInput

    class Slow:
        def __init__(self) -> None:
            self.lines = [b"line\n", b"two\n"]

        def read(self, size: int | None = None) -> bytes:
            gevent.sleep(5)  # a client that sends nothing
            return b"late"

        def readline(self, size: int | None = None) -> bytes:
            return self.lines.pop(0) if self.lines else b""

        def readlines(self, hint: int | None = None) -> list[bytes]:
            return [b"a\n"]

    message = "the request was not received within 0.2 s; send it whole"
    started = time.monotonic()
    with pytest.raises(BodyTimeout, match=message):
        _DeadlineInput(Slow(), time.monotonic() + 0.2, 0.2).read(10)
    assert time.monotonic() - started < 2
    with pytest.raises(BodyTimeout, match="within 1 s"):
        _DeadlineInput(Slow(), time.monotonic() - 1, 1.0).read()  # already past: no wait at all
    fresh = _DeadlineInput(Slow(), time.monotonic() + 10, 10.0)
    assert fresh.readline() == b"line\n"
    assert fresh.readlines() == [b"a\n"]
    assert list(_DeadlineInput(Slow(), time.monotonic() + 10, 10.0)) == [b"line\n", b"two\n"]


def test_buffered_bytes_are_seen() -> None:
    from kcp_tmc.webhook.worker import _buffered

    class Unreader:
        def __init__(self, data: bytes) -> None:
            self.buf = io.BytesIO()
            self.buf.write(data)

    class Parser:
        def __init__(self, data: bytes) -> None:
            self.unreader = Unreader(data)

    class Plain:
        pass

    class Tls:
        def __init__(self, n: int) -> None:
            self.n = n

        def pending(self) -> int:
            return self.n

    assert _buffered(Parser(b"GET"), Plain())
    assert not _buffered(Parser(b""), Plain())
    assert _buffered(Parser(b""), Tls(3))
    assert not _buffered(Parser(b""), Tls(0))


def test_a_failing_metrics_collection_is_a_json_500(
    make_app: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app()
    metrics = app.extensions["kcp_tmc.webhook"].metrics

    def broken() -> bytes:
        raise OSError("disk gone")

    monkeypatch.setattr(metrics, "render", broken)
    resp = app.test_client().get("/metrics")
    assert resp.status_code == 500
    assert resp.get_json()["message"] == "internal error: OSError"
    assert "internal error" in caplog.text
