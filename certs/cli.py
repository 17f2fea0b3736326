"""``tmc-certs``: generate, rotate, check and distribute the webhook's certificates.

Exit status: 0 success; 1 ``check`` found a certificate due for renewal (or
expired); 2 bad input or state (message on stderr, files left as they were).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import datetime

from cryptography import x509

from kcp_tmc.certs import generate, inject, inspect, rotate
from kcp_tmc.certs.errors import CertsError
from kcp_tmc.certs.files import CertPaths

PROG = "tmc-certs"
EXIT_OK = 0
EXIT_DUE = 1
EXIT_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``tmc-certs``."""
    parser = argparse.ArgumentParser(prog=PROG, description="Certificates for the kcp-tmc admission webhook.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    gen = sub.add_parser("generate", help="create a CA and a serving certificate for a Service")
    gen.add_argument("--service", required=True, help="Service name of the webhook")
    gen.add_argument("--namespace", required=True, help="namespace of the Service")
    gen.add_argument(
        "--out", required=True, metavar="DIR", help="directory for ca.crt, ca.key, tls.crt, tls.key"
    )
    gen.add_argument("--dns", action="append", default=[], metavar="NAME", help="extra DNS SAN (repeatable)")
    gen.add_argument("--ip", action="append", default=[], metavar="ADDRESS", help="extra IP SAN (repeatable)")
    gen.add_argument(
        "--ca-days", type=int, default=generate.CA_DAYS, help="CA validity (default %(default)s)"
    )
    gen.add_argument(
        "--serving-days",
        type=int,
        default=generate.SERVING_DAYS,
        help="serving validity (default %(default)s)",
    )
    gen.add_argument(
        "--force", action="store_true", help="replace existing files (a new CA: inject it again)"
    )

    rot = sub.add_parser(
        "rotate",
        help="renew what is due: serving certificate and CA with less than a third of their life left",
    )
    rot.add_argument("dir", metavar="DIR")
    rot.add_argument("--force", action="store_true", help="renew the serving certificate even if not due")

    bundle = sub.add_parser("ca-bundle", help="print the base64 CA bundle (the value of caBundle)")
    bundle.add_argument("dir", metavar="DIR")

    inj = sub.add_parser("inject", help="set caBundle on webhook configurations and/or write a TLS Secret")
    inj.add_argument("dir", metavar="DIR")
    inj.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
    inj.add_argument("--context", help="kubeconfig context (default: the current one)")
    inj.add_argument(
        "--webhook-configuration",
        action="append",
        default=[],
        metavar="NAME",
        help="Validating and/or MutatingWebhookConfiguration to patch (repeatable)",
    )
    inj.add_argument(
        "--secret", metavar="NAMESPACE/NAME", help="kubernetes.io/tls Secret to create or update"
    )
    inj.add_argument(
        "--ca-secret",
        metavar="NAMESPACE/NAME",
        help="Opaque Secret to keep ca.crt and ca.key in (for renewal)",
    )

    pull = sub.add_parser("pull", help="write the files of the TLS and CA Secrets into DIR (for rotate)")
    pull.add_argument("dir", metavar="DIR")
    pull.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
    pull.add_argument("--context", help="kubeconfig context (default: the current one)")
    pull.add_argument(
        "--secret", required=True, metavar="NAMESPACE/NAME", help="the kubernetes.io/tls Secret"
    )
    pull.add_argument("--ca-secret", required=True, metavar="NAMESPACE/NAME", help="the CA Secret")

    chk = sub.add_parser("check", help="print expiry of each certificate; exit 1 when rotation is due")
    chk.add_argument("dir", metavar="DIR")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``tmc-certs`` with ``argv`` (default ``sys.argv[1:]``) and return the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # usage errors and --help
        return exc.code if isinstance(exc.code, int) else EXIT_ERROR
    try:
        return _COMMANDS[args.command](args)
    except CertsError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR


def _generate(args: argparse.Namespace) -> int:
    paths = generate.generate_dir(
        args.out,
        service=args.service,
        namespace=args.namespace,
        dns=args.dns,
        ips=args.ip,
        ca_days=args.ca_days,
        serving_days=args.serving_days,
        overwrite=args.force,
    )
    serving = inspect.load_certificates(paths.tls_crt)[0]
    print(f"wrote {paths.ca_crt}, {paths.ca_key}, {paths.tls_crt}, {paths.tls_key}")
    print(f"serving certificate expires at {generate.format_time(serving.not_valid_after_utc)}")
    return EXIT_OK


def _rotate(args: argparse.Namespace) -> int:
    result = rotate.rotate_dir(args.dir, force=args.force)
    for line in result.messages:
        print(line)
    if not result.changed:
        print("nothing due")
    elif result.ca_rolled or result.dropped_cas:
        print(f"the CA bundle changed: run '{PROG} inject' to update caBundle")
    return EXIT_OK


def _ca_bundle(args: argparse.Namespace) -> int:
    paths = CertPaths.of(args.dir)
    data = inspect.read_bytes(paths.ca_crt)
    inspect.parse_certificates(data, str(paths.ca_crt))
    print(inject.encode_bundle(data))
    return EXIT_OK


def _inject(args: argparse.Namespace) -> int:
    result = inject.inject(
        args.kubeconfig,
        args.dir,
        webhook_configurations=args.webhook_configuration,
        secret=args.secret,
        context=args.context,
        ca_secret=args.ca_secret,
    )
    for line in result.messages:
        print(line)
    return EXIT_OK


def _pull(args: argparse.Namespace) -> int:
    written = inject.pull(
        args.kubeconfig, args.dir, secret=args.secret, ca_secret=args.ca_secret, context=args.context
    )
    if written:
        print(f"wrote {', '.join(str(p) for p in written)}")
    else:
        print(f"no Secret {args.secret} nor {args.ca_secret}: nothing pulled (run '{PROG} generate')")
    return EXIT_OK


def _check(args: argparse.Namespace, now: datetime | None = None) -> int:
    paths = CertPaths.of(args.dir)
    state = rotate.load_state(paths.directory)
    now = generate.normalize_now(now)
    due = False
    rows: list[tuple[str, x509.Certificate]] = [
        (f"{paths.ca_crt.name}[{i}]" if len(state.bundle) > 1 else paths.ca_crt.name, ca)
        for i, ca in enumerate(state.bundle)
    ]
    rows.append((paths.tls_crt.name, state.serving))
    for i, (label, cert) in enumerate(rows):
        # Only the newest CA and the serving certificate are renewed; older CAs just wait to be dropped.
        renewable = i == 0 or label == paths.tls_crt.name
        expired = cert.not_valid_after_utc <= now
        left = cert.not_valid_after_utc - now
        if expired:
            status = "EXPIRED"
        elif renewable and inspect.is_due(cert, now=now):
            status = "renewal due"
        else:
            status = "ok"
        due = due or (renewable and status != "ok")
        when = generate.format_time(cert.not_valid_after_utc)
        print(f"{label:<10} {rotate.common_name(cert):<40} expires {when}  ({left.days}d left)  {status}")
    if len(state.bundle) > 1 and inspect.issued_by(state.serving, state.bundle[0]):
        print(f"{paths.ca_crt.name}: old CAs can be dropped (run '{PROG} rotate')")
        due = True
    return EXIT_DUE if due else EXIT_OK


_COMMANDS = {
    "generate": _generate,
    "rotate": _rotate,
    "ca-bundle": _ca_bundle,
    "inject": _inject,
    "check": _check,
    "pull": _pull,
}
