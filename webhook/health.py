"""Liveness and readiness: ``GET /healthz`` and ``GET /readyz``.

``/healthz`` answers 200 whenever the process can serve HTTP.  ``/readyz`` answers 200 only
when the policies are loaded and the serving certificate is readable and not yet within its
renewal window (less than a third of its life left, the point at which ``tmc-certs rotate``
renews it): a certificate that nobody renews takes the replica out of rotation long before it
expires, and the reason is in the body.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from kcp_tmc.certs.errors import CertsError
from kcp_tmc.certs.inspect import certificate_expiry, renewal_due

__all__ = ["blueprint", "readiness"]

blueprint = Blueprint("health", __name__)


def readiness(policies: int, cert_file: str | None) -> dict[str, str]:
    """The readiness checks by name; a value other than ``ok`` is the reason it fails."""
    checks = {"policies": f"ok ({policies} loaded)" if policies else "no policy is loaded"}
    if cert_file is None:
        checks["certificate"] = "ok (not configured: TLS is terminated elsewhere)"
        return checks
    try:
        expiry = certificate_expiry(cert_file)
        due = renewal_due(cert_file)
    except CertsError as exc:  # unreadable, not PEM: its message already names the file
        checks["certificate"] = str(exc)
        return checks
    except Exception as exc:  # anything else the parser raises: still one answer, never a 500
        checks["certificate"] = f"cannot read {cert_file}: {exc}"
        return checks
    stamp = expiry.strftime("%Y-%m-%dT%H:%M:%SZ")
    if due:
        checks["certificate"] = f"due for renewal: it expires at {stamp}; run 'tmc-certs rotate'"
    else:
        checks["certificate"] = f"ok (expires at {stamp})"
    return checks


@blueprint.get("/healthz")
def healthz() -> Response:
    """The process serves HTTP."""
    return jsonify(status="ok")


@blueprint.get("/readyz")
def readyz() -> tuple[Response, int]:
    """Ready to take reviews (see the module documentation)."""
    state = current_app.extensions["kcp_tmc.webhook"]
    checks = readiness(len(state.engine.policies), state.config.cert_file)
    ready = all(v.startswith("ok") for v in checks.values())
    return jsonify(status="ok" if ready else "fail", checks=checks), 200 if ready else 503
