"""``tmc-certs`` through ``main(argv)``: output, exit status, and refusals that leave files alone."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from kcp_tmc.certs import CertPaths, generate_dir, rotate_dir
from kcp_tmc.certs.cli import main
from kcp_tmc.certs.generate import format_time, utcnow
from kcp_tmc.certs.inspect import load_certificates

Snapshot = Callable[[Path], dict[str, tuple[bytes, int]]]
DAY = timedelta(days=1)


def _cn(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def _refused(
    argv: list[str], directory: Path, message: str, capsys: pytest.CaptureFixture[str], snapshot: Snapshot
) -> None:
    before = snapshot(directory) if directory.exists() else None
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert err == f"tmc-certs: error: {message}\n"
    assert out == ""
    assert (snapshot(directory) if directory.exists() else None) == before


def _generate_at(directory: Path, when: datetime, **kwargs: object) -> CertPaths:
    return generate_dir(directory, service="tmc-webhook", namespace="kcp-tmc", now=when, **kwargs)  # type: ignore[arg-type]


# --- generate ------------------------------------------------------------------------------------


def test_generate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "out"
    argv = ["generate", "--service", "tmc-webhook", "--namespace", "kcp-tmc", "--out", str(out_dir)]
    assert (
        main([*argv, "--dns", "a.example", "--dns", "b.example", "--ip", "10.0.0.1", "--serving-days", "90"])
        == 0
    )
    out, err = capsys.readouterr()
    (leaf,) = load_certificates(out_dir / "tls.crt")
    assert out == (
        f"wrote {out_dir / 'ca.crt'}, {out_dir / 'ca.key'}, {out_dir / 'tls.crt'}, {out_dir / 'tls.key'}\n"
        f"serving certificate expires at {format_time(leaf.not_valid_after_utc)}\n"
    )
    assert err == ""
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName)[-2:] == ["a.example", "b.example"]
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["10.0.0.1"]
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc == 90 * DAY + timedelta(minutes=5)


def test_generate_refuses_existing_files_unless_forced(
    cert_dir: CertPaths, capsys: pytest.CaptureFixture[str], snapshot: Snapshot
) -> None:
    argv = ["generate", "--service", "s", "--namespace", "n", "--out", str(cert_dir.directory)]
    _refused(
        argv,
        cert_dir.directory,
        f"{cert_dir.directory} already holds ca.key, ca.crt, tls.key, tls.crt; "
        "use 'tmc-certs rotate' to renew, or --force to replace the CA and serving certificate",
        capsys,
        snapshot,
    )
    before = cert_dir.ca_crt.read_bytes()
    assert main([*argv, "--force"]) == 0
    assert cert_dir.ca_crt.read_bytes() != before


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--service", "Web"], 'invalid service name "Web": a lowercase RFC 1123 label must consist of '
         "lower case alphanumeric characters or '-', and must start and end with an alphanumeric character "
         "(e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"),
        (["--namespace", "a.b"], 'invalid namespace "a.b": must not contain dots'),
        (["--ip", "localhost"], 'invalid IP address "localhost": must be an IPv4 or IPv6 address'),
        (["--ca-days", "0"], "invalid CA validity 0 days: must be at least 1 day"),
        (["--serving-days", "0"], "invalid serving certificate validity 0 days: must be at least 1 day"),
    ],
)  # fmt: skip
def test_generate_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], snapshot: Snapshot, extra: list[str], message: str
) -> None:
    out_dir = tmp_path / "out"
    argv = ["generate", "--service", "s", "--namespace", "n", "--out", str(out_dir), *extra]
    _refused(argv, out_dir, message, capsys, snapshot)
    assert not out_dir.exists()


def test_generate_into_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str], snapshot: Snapshot) -> None:
    target = tmp_path / "f"
    target.write_text("x")
    argv = ["generate", "--service", "s", "--namespace", "n", "--out", str(target)]
    _refused(argv, tmp_path, f"{target}: not a directory", capsys, snapshot)


def test_generate_in_an_unwritable_place(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], snapshot: Snapshot
) -> None:
    blocker = tmp_path / "f"
    blocker.write_text("x")
    argv = ["generate", "--service", "s", "--namespace", "n", "--out", str(blocker / "sub")]
    _refused(argv, tmp_path, f"cannot create {blocker / 'sub'}: Not a directory", capsys, snapshot)


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", "--namespace", "n", "--out", "x"]) == 2
    err = capsys.readouterr().err
    assert err.endswith("tmc-certs generate: error: the following arguments are required: --service\n")
    assert main([]) == 2
    assert capsys.readouterr().err.endswith(
        "tmc-certs: error: the following arguments are required: COMMAND\n"
    )
    assert main(["--help"]) == 0
    assert "ca-bundle" in capsys.readouterr().out


# --- rotate --------------------------------------------------------------------------------------


def test_rotate_nothing_due(
    cert_dir: CertPaths, capsys: pytest.CaptureFixture[str], snapshot: Snapshot
) -> None:
    fresh = _generate_at(cert_dir.directory.parent / "fresh", utcnow())
    before = snapshot(fresh.directory)
    assert main(["rotate", str(fresh.directory)]) == 0
    assert capsys.readouterr().out == "nothing due\n"
    assert snapshot(fresh.directory) == before


def test_rotate_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    paths = _generate_at(tmp_path, utcnow())
    assert main(["rotate", "--force", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    (leaf,) = load_certificates(paths.tls_crt)
    (ca,) = load_certificates(paths.ca_crt)
    assert out == (
        f"renewed serving certificate (forced): signed by {_cn(ca)}, "
        f"expires at {format_time(leaf.not_valid_after_utc)}\n"
    )


def test_rotate_ca_roll_tells_to_inject(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    paths = _generate_at(tmp_path, utcnow() - 2500 * DAY)
    (old_ca,) = load_certificates(paths.ca_crt)
    assert main(["rotate", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    new_ca = load_certificates(paths.ca_crt)[0]
    assert lines[0] == (
        f"rolled CA: {_cn(new_ca)} added to ca.crt before {_cn(old_ca)}, "
        f"which expires at {format_time(old_ca.not_valid_after_utc)}"
    )
    assert lines[1].startswith(f"renewed serving certificate (due): signed by {_cn(old_ca)}, ")
    assert lines[2] == "the CA bundle changed: run 'tmc-certs inject' to update caBundle"
    assert len(lines) == 3


def test_rotate_expired_ca(tmp_path: Path, capsys: pytest.CaptureFixture[str], snapshot: Snapshot) -> None:
    paths = _generate_at(tmp_path, utcnow() - 20 * DAY, ca_days=10, serving_days=5)
    (ca,) = load_certificates(paths.ca_crt)
    _refused(
        ["rotate", "--force", str(tmp_path)],
        tmp_path,
        f"the CA in {paths.ca_crt} expired at {format_time(ca.not_valid_after_utc)}; "
        "a rotation cannot restore trust: run 'tmc-certs generate --force' and inject the new caBundle",
        capsys,
        snapshot,
    )


def test_rotate_mismatched_pair(
    cert_dir: CertPaths, capsys: pytest.CaptureFixture[str], snapshot: Snapshot
) -> None:
    cert_dir.tls_key.write_bytes(cert_dir.ca_key.read_bytes())
    _refused(
        ["rotate", "--force", str(cert_dir.directory)],
        cert_dir.directory,
        f"{cert_dir.tls_key} does not match {cert_dir.tls_crt}: their public keys differ",
        capsys,
        snapshot,
    )


def test_rotate_unreadable_file(
    cert_dir: CertPaths, capsys: pytest.CaptureFixture[str], snapshot: Snapshot
) -> None:
    cert_dir.ca_crt.write_bytes(b"-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n")
    _refused(
        ["rotate", str(cert_dir.directory)],
        cert_dir.directory,
        f"{cert_dir.ca_crt}: no valid PEM certificate found",
        capsys,
        snapshot,
    )


# --- ca-bundle -----------------------------------------------------------------------------------


def test_ca_bundle(cert_dir: CertPaths, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ca-bundle", str(cert_dir.directory)]) == 0
    out = capsys.readouterr().out
    assert out.endswith("\n") and "\n" not in out[:-1]
    assert base64.b64decode(out) == cert_dir.ca_crt.read_bytes()


def test_ca_bundle_holds_both_cas_during_a_roll(
    cert_dir: CertPaths, t0: datetime, capsys: pytest.CaptureFixture[str]
) -> None:
    rotate_dir(cert_dir.directory, now=t0 + 2500 * DAY)
    assert main(["ca-bundle", str(cert_dir.directory)]) == 0
    decoded = base64.b64decode(capsys.readouterr().out)
    assert decoded.count(b"BEGIN CERTIFICATE") == 2
    assert decoded == cert_dir.ca_crt.read_bytes()


def test_ca_bundle_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], snapshot: Snapshot) -> None:
    _refused(
        ["ca-bundle", str(tmp_path)],
        tmp_path,
        f"cannot read {tmp_path / 'ca.crt'}: No such file or directory",
        capsys,
        snapshot,
    )
    (tmp_path / "ca.crt").write_text("hello")
    _refused(
        ["ca-bundle", str(tmp_path)],
        tmp_path,
        f"{tmp_path / 'ca.crt'}: no valid PEM certificate found",
        capsys,
        snapshot,
    )


# --- check ---------------------------------------------------------------------------------------


def test_check_fresh(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    paths = _generate_at(tmp_path, utcnow())
    assert main(["check", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    (ca,) = load_certificates(paths.ca_crt)
    (leaf,) = load_certificates(paths.tls_crt)
    assert lines[0].startswith(f"ca.crt     {_cn(ca):<40} expires {format_time(ca.not_valid_after_utc)}  (")
    assert lines[0].endswith("d left)  ok")
    assert lines[1].startswith(
        f"tls.crt    {'tmc-webhook.kcp-tmc.svc':<40} expires {format_time(leaf.not_valid_after_utc)}"
    )
    assert lines[1].endswith("d left)  ok")
    assert len(lines) == 2


def test_check_due_and_expired(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _generate_at(tmp_path / "due", utcnow() - 300 * DAY)
    assert main(["check", str(tmp_path / "due")]) == 1
    assert capsys.readouterr().out.splitlines()[1].endswith("  renewal due")
    _generate_at(tmp_path / "expired", utcnow() - 20 * DAY, serving_days=10)
    assert main(["check", str(tmp_path / "expired")]) == 1
    assert capsys.readouterr().out.splitlines()[1].endswith("  EXPIRED")


def test_check_during_and_after_a_ca_roll(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    start = utcnow() - 2500 * DAY
    paths = _generate_at(tmp_path, start)
    rotate_dir(tmp_path, now=utcnow())
    assert main(["check", str(tmp_path)]) == 0  # old CA still signs the serving certificate: nothing to do
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["ca.crt[0]", "ca.crt[1]", "tls.crt"]
    assert all(line.endswith("  ok") for line in lines)
    rotate_dir(tmp_path, force=True)
    assert main(["check", str(tmp_path)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == "ca.crt: old CAs can be dropped (run 'tmc-certs rotate')"
    rotate_dir(tmp_path)
    assert len(load_certificates(paths.ca_crt)) == 1
    assert main(["check", str(tmp_path)]) == 0
    capsys.readouterr()


def test_check_error(cert_dir: CertPaths, capsys: pytest.CaptureFixture[str], snapshot: Snapshot) -> None:
    cert_dir.tls_crt.unlink()
    _refused(
        ["check", str(cert_dir.directory)],
        cert_dir.directory,
        f"cannot read {cert_dir.tls_crt}: No such file or directory",
        capsys,
        snapshot,
    )


# --- inject (argument and local errors; cluster behaviour is in test_inject_api.py) -------------------


def test_inject_needs_something_to_do(
    cert_dir: CertPaths, capsys: pytest.CaptureFixture[str], snapshot: Snapshot
) -> None:
    _refused(
        ["inject", str(cert_dir.directory)],
        cert_dir.directory,
        "nothing to do: give --webhook-configuration, --secret and/or --ca-secret",
        capsys,
        snapshot,
    )


def test_inject_bad_secret_reference(
    cert_dir: CertPaths, capsys: pytest.CaptureFixture[str], snapshot: Snapshot
) -> None:
    _refused(
        ["inject", "--secret", "just-a-name", str(cert_dir.directory)],
        cert_dir.directory,
        'invalid Secret reference "just-a-name": expected NAMESPACE/NAME',
        capsys,
        snapshot,
    )


def test_inject_bad_kubeconfig(
    cert_dir: CertPaths, capsys: pytest.CaptureFixture[str], snapshot: Snapshot
) -> None:
    missing = cert_dir.directory / "missing-kubeconfig"
    argv = ["inject", "--webhook-configuration", "w", str(cert_dir.directory)]
    _refused(
        [*argv, "--kubeconfig", str(missing)],
        cert_dir.directory,
        f"cannot read {missing}: No such file or directory",
        capsys,
        snapshot,
    )
    broken = cert_dir.directory.parent / "broken-kubeconfig"
    broken.write_text("clusters: [unclosed\n")
    _refused(
        [*argv, "--kubeconfig", str(broken)],
        cert_dir.directory,
        f"cannot load kubeconfig {broken}: not a kubeconfig file (expected a YAML mapping)",
        capsys,
        snapshot,
    )
    _refused(
        [*argv, "--kubeconfig", str(cert_dir.ca_crt)],
        cert_dir.directory,
        f"cannot load kubeconfig {cert_dir.ca_crt}: not a kubeconfig file (expected a YAML mapping)",
        capsys,
        snapshot,
    )


def test_inject_unreachable_server(
    cert_dir: CertPaths, capsys: pytest.CaptureFixture[str], snapshot: Snapshot
) -> None:
    kubeconfig = cert_dir.directory.parent / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1', insecure-skip-tls-verify: true}}]\n"
        "users: [{name: u, user: {token: t}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\n"
    )
    _refused(
        ["inject", "--kubeconfig", str(kubeconfig), "--webhook-configuration", "w", str(cert_dir.directory)],
        cert_dir.directory,
        "cannot get ValidatingWebhookConfiguration w: HTTPSConnection(host='127.0.0.1', port=1): "
        "Failed to establish a new connection: [Errno 111] Connection refused",
        capsys,
        snapshot,
    )
    _refused(
        [
            "inject",
            "--kubeconfig",
            str(kubeconfig),
            "--context",
            "other",
            "--secret",
            "ns/tls",
            str(cert_dir.directory),
        ],
        cert_dir.directory,
        f"cannot load kubeconfig {kubeconfig}: Invalid kube-config file. Expected object with name other in "
        f"{kubeconfig}/contexts list",
        capsys,
        snapshot,
    )


def test_rotate_on_a_read_only_file_system(
    cert_dir: CertPaths,
    capsys: pytest.CaptureFixture[str],
    snapshot: Snapshot,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import os

    def read_only(src: str, dst: str) -> None:
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(os, "replace", read_only)
    _refused(
        ["rotate", "--force", str(cert_dir.directory)],
        cert_dir.directory,
        f"cannot write {cert_dir.tls_key}: Read-only file system",
        capsys,
        snapshot,
    )
