"""Putting the CA bundle into webhook configurations and the serving pair into a Secret.

For renewal inside the cluster (the chart's certificate Job), the CA and its key can also be kept
in a Secret of their own (``--ca-secret``, type Opaque) that only that Job may read, and
:func:`pull` brings both Secrets back into a directory for ``tmc-certs rotate``.

The patch bodies are built by pure functions (:func:`ca_bundle_patch`,
:func:`tls_secret`, :func:`secret_data_patch`) so they can be checked without a
cluster; :func:`inject` sends them with the ``kubernetes`` client.

Order: the ``caBundle`` of every webhook is updated first and the Secret last,
so the API server already trusts the CA of a serving certificate by the time
webhook pods can load it from the Secret.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from kcp_tmc.certs import inspect
from kcp_tmc.certs.errors import CertsError
from kcp_tmc.certs.files import CA_CRT, CA_KEY, CERT_MODE, KEY_MODE, TLS_CRT, TLS_KEY, CertPaths, atomic_write
from kcp_tmc.certs.generate import format_time, normalize_now
from kcp_tmc.certs.rotate import expired_ca_message

SECRET_TYPE_TLS = "kubernetes.io/tls"  # noqa: S105 (a Secret type name, not a password)
SECRET_TYPE_OPAQUE = "Opaque"  # noqa: S105 (a Secret type name, not a password)
JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
VALIDATING = "ValidatingWebhookConfiguration"
MUTATING = "MutatingWebhookConfiguration"


@dataclass
class InjectResult:
    """What :func:`inject` did: ``patched`` lists the objects it changed, ``messages`` one line each."""

    patched: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)


def encode_bundle(bundle_pem: bytes) -> str:
    """The value of ``caBundle``: the PEM bundle, base64 encoded, on one line."""
    return base64.b64encode(bundle_pem).decode("ascii")


def ca_bundle_patch(configuration: Mapping[str, Any], ca_bundle: str) -> list[dict[str, Any]]:
    """A JSON patch setting ``clientConfig.caBundle`` of every webhook of ``configuration``.

    Each webhook's ``add`` is preceded by a ``test`` of its name, so that if
    the list changed since it was read the API server rejects the whole patch
    instead of putting the bundle on the wrong entry.  Webhooks that already
    carry ``ca_bundle`` are left out; the result is empty when nothing changes.
    """
    ops: list[dict[str, Any]] = []
    for i, webhook in enumerate(configuration.get("webhooks") or []):
        client_config = webhook.get("clientConfig")
        if isinstance(client_config, Mapping) and client_config.get("caBundle") == ca_bundle:
            continue
        ops.append({"op": "test", "path": f"/webhooks/{i}/name", "value": webhook.get("name")})
        if isinstance(client_config, Mapping):
            ops.append({"op": "add", "path": f"/webhooks/{i}/clientConfig/caBundle", "value": ca_bundle})
        else:
            ops.append({"op": "add", "path": f"/webhooks/{i}/clientConfig", "value": {"caBundle": ca_bundle}})
    return ops


def secret_data(ca_bundle_pem: bytes, cert_pem: bytes, key_pem: bytes) -> dict[str, str]:
    """The ``data`` of the TLS Secret: ``tls.crt``, ``tls.key`` and ``ca.crt``, base64 encoded."""
    return {
        TLS_CRT: base64.b64encode(cert_pem).decode("ascii"),
        TLS_KEY: base64.b64encode(key_pem).decode("ascii"),
        CA_CRT: base64.b64encode(ca_bundle_pem).decode("ascii"),
    }


def ca_secret_data(ca_bundle_pem: bytes, ca_key_pem: bytes) -> dict[str, str]:
    """The ``data`` of the CA Secret: ``ca.crt`` (the bundle) and ``ca.key``, base64 encoded."""
    return {
        CA_CRT: base64.b64encode(ca_bundle_pem).decode("ascii"),
        CA_KEY: base64.b64encode(ca_key_pem).decode("ascii"),
    }


def tls_secret(
    namespace: str, name: str, data: Mapping[str, str], secret_type: str = SECRET_TYPE_TLS
) -> dict[str, Any]:
    """A new Secret (``kubernetes.io/tls`` unless ``secret_type``) holding ``data``."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": secret_type,
        "data": dict(data),
    }


def secret_data_patch(
    existing: Mapping[str, Any], data: Mapping[str, str], secret_type: str = SECRET_TYPE_TLS
) -> dict[str, Any] | None:
    """A merge patch bringing ``existing``'s three keys to ``data``; None when they already match.

    Other keys of the Secret are kept.  The patch carries the Secret's
    ``resourceVersion`` so a concurrent writer makes it fail with a conflict
    rather than be overwritten.  A Secret of another type is refused (the
    type of a Secret cannot be changed).
    """
    meta = existing.get("metadata") or {}
    kind_type = existing.get("type") or SECRET_TYPE_OPAQUE
    if kind_type != secret_type:
        raise CertsError(
            f"Secret {meta.get('namespace')}/{meta.get('name')} has type {kind_type}, "
            f"not {secret_type}; delete it or choose another name"
        )
    current = existing.get("data") or {}
    changed = {k: v for k, v in data.items() if current.get(k) != v}
    if not changed:
        return None
    patch: dict[str, Any] = {"data": changed}
    if meta.get("resourceVersion"):
        patch["metadata"] = {"resourceVersion": meta["resourceVersion"]}
    return patch


def parse_secret_ref(value: str) -> tuple[str, str]:
    """``NAMESPACE/NAME`` -> ``(namespace, name)``; :class:`CertsError` if malformed."""
    namespace, sep, name = value.partition("/")
    if not sep or not namespace or not name or "/" in name:
        raise CertsError(f'invalid Secret reference "{value}": expected NAMESPACE/NAME')
    return namespace, name


@dataclass(frozen=True)
class DirectoryContent:
    """What :func:`inject` sends, read from a certificate directory and checked."""

    bundle_pem: bytes
    cert_pem: bytes
    key_pem: bytes


def read_directory(
    directory: str | os.PathLike[str], *, need_pair: bool, now: datetime | None = None
) -> DirectoryContent:
    """Read ``ca.crt`` (and the serving pair when ``need_pair``), checking they belong together.

    Expired material is refused: an expired CA or serving certificate in the
    cluster only turns a coming outage into a present one.
    """
    now = normalize_now(now)
    paths = CertPaths.of(directory)
    bundle_pem = inspect.read_bytes(paths.ca_crt)
    bundle = inspect.parse_certificates(bundle_pem, str(paths.ca_crt))
    if bundle[0].not_valid_after_utc <= now:
        raise CertsError(expired_ca_message(paths, bundle[0], "injecting it would break the webhook"))
    if not need_pair:
        return DirectoryContent(bundle_pem, b"", b"")
    pair = inspect.load_pair(paths.tls_crt, paths.tls_key)
    if not any(inspect.issued_by(pair.cert, ca) for ca in bundle):
        raise CertsError(f"{paths.tls_crt} is not signed by any CA in {paths.ca_crt}")
    if pair.cert.not_valid_after_utc <= now:
        raise CertsError(
            f"{paths.tls_crt} expired at {format_time(pair.cert.not_valid_after_utc)}; "
            "run 'tmc-certs rotate' first"
        )
    return DirectoryContent(bundle_pem, pair.cert_pem, pair.key_pem)


def inject(
    kubeconfig: str | os.PathLike[str] | None,
    directory: str | os.PathLike[str],
    *,
    webhook_configurations: Sequence[str] = (),
    secret: str | None = None,
    context: str | None = None,
    now: datetime | None = None,
    ca_secret: str | None = None,
) -> InjectResult:
    """Patch ``caBundle`` into the named webhook configurations and write the TLS Secret.

    Each name in ``webhook_configurations`` is looked up both as a
    ValidatingWebhookConfiguration and a MutatingWebhookConfiguration; it is
    an error if neither exists.  All files are read and checked, and all
    configurations looked up, before anything is written.  ``ca_secret`` (an
    Opaque Secret with ``ca.crt`` and ``ca.key``) is written first: once a bundle
    is trusted, the key of its CA must not be lost with a crash.
    """
    secret_ref = parse_secret_ref(secret) if secret is not None else None
    ca_ref = parse_secret_ref(ca_secret) if ca_secret is not None else None
    if not webhook_configurations and secret_ref is None and ca_ref is None:
        raise CertsError("nothing to do: give --webhook-configuration, --secret and/or --ca-secret")
    content = read_directory(directory, need_pair=secret_ref is not None, now=now)
    ca_bundle = encode_bundle(content.bundle_pem)
    ca_key_pem = inspect.read_bytes(CertPaths.of(directory).ca_key) if ca_ref is not None else b""
    result = InjectResult()
    with _api_client(kubeconfig, context) as client:
        api = _Api(client)
        if ca_ref is not None:
            namespace, name = ca_ref
            data = ca_secret_data(content.bundle_pem, ca_key_pem)
            changed, message = api.apply_secret(namespace, name, data, SECRET_TYPE_OPAQUE)
            result.messages.append(message)
            if changed:
                result.patched.append(f"Secret/{namespace}/{name}")
        found: list[tuple[str, str, dict[str, Any]]] = []
        for name in webhook_configurations:
            kinds = [(kind, obj) for kind in (VALIDATING, MUTATING) if (obj := api.get_webhook(kind, name))]
            if not kinds:
                raise CertsError(f'no {VALIDATING} or {MUTATING} named "{name}" found')
            found.extend((kind, name, obj) for kind, obj in kinds)
        for kind, name, obj in found:
            ops = ca_bundle_patch(obj, ca_bundle)
            if ops:
                api.patch_webhook(kind, name, ops)
                result.patched.append(f"{kind}/{name}")
                # Two operations (test, add) per webhook that changes.
                result.messages.append(f"{kind} {name}: caBundle set on {len(ops) // 2} webhook(s)")
            else:
                count = len(obj.get("webhooks") or [])
                result.messages.append(f"{kind} {name}: caBundle already up to date on {count} webhook(s)")
        if secret_ref is not None:
            namespace, name = secret_ref
            data = secret_data(content.bundle_pem, content.cert_pem, content.key_pem)
            changed, message = api.apply_secret(namespace, name, data)
            result.messages.append(message)
            if changed:
                result.patched.append(f"Secret/{namespace}/{name}")
    return result


def pull(
    kubeconfig: str | os.PathLike[str] | None,
    directory: str | os.PathLike[str],
    *,
    secret: str,
    ca_secret: str,
    context: str | None = None,
) -> list[Path]:
    """Write the files the two Secrets hold into ``directory``; returns the paths written.

    The CA Secret gives ``ca.crt`` and ``ca.key``, the TLS Secret ``tls.crt`` and ``tls.key``.
    When neither Secret exists nothing is written (a first install: generate instead).  One
    without the other, or a Secret missing a key, is an error: a rotation from half the state
    would either lose the CA key or replace a CA the cluster already trusts.
    """
    secret_ref, ca_ref = parse_secret_ref(secret), parse_secret_ref(ca_secret)
    with _api_client(kubeconfig, context) as client:
        api = _Api(client)
        tls_obj = api.get_secret(*secret_ref)
        ca_obj = api.get_secret(*ca_ref)
    if tls_obj is None and ca_obj is None:
        return []
    for obj, ref in ((tls_obj, secret), (ca_obj, ca_secret)):
        if obj is None:
            raise CertsError(
                f"Secret {ref} is missing while the other one exists; restore it from a backup, "
                "or delete both to start over with a new CA"
            )
    wanted = ((ca_obj, ca_secret, CA_KEY, KEY_MODE), (ca_obj, ca_secret, CA_CRT, CERT_MODE),
              (tls_obj, secret, TLS_KEY, KEY_MODE), (tls_obj, secret, TLS_CRT, CERT_MODE))  # fmt: skip
    files: list[tuple[Path, bytes, int]] = []
    for obj, ref, key, mode in wanted:
        value = ((obj or {}).get("data") or {}).get(key)
        if not value:
            raise CertsError(f"Secret {ref} has no {key}")
        files.append((Path(directory) / key, base64.b64decode(value), mode))
    Path(directory).mkdir(parents=True, exist_ok=True)
    # Written in the order a generation writes them, so a reader never sees a key without its CA.
    for path, data, mode in files:
        atomic_write(path, data, mode=mode)
    return [path for path, _, _ in files]


def _api_client(kubeconfig: str | os.PathLike[str] | None, context: str | None) -> Any:
    """An ApiClient from ``kubeconfig``; else ``$KUBECONFIG``, ``~/.kube/config``, or in-cluster config."""
    import yaml  # noqa: PLC0415
    from kubernetes import client, config  # noqa: PLC0415 - slow to import; only inject needs it
    from kubernetes.config.config_exception import ConfigException  # noqa: PLC0415

    if kubeconfig is None:
        # Resolved here, not by the client, which reads $KUBECONFIG once at import time.
        default = Path(os.path.expanduser("~/.kube/config"))
        if os.environ.get("KUBECONFIG"):
            kubeconfig = os.environ["KUBECONFIG"]
        elif default.is_file():
            kubeconfig = default
        elif os.environ.get("KUBERNETES_SERVICE_HOST"):
            configuration = client.Configuration()
            load_incluster: Any = config.load_incluster_config
            try:
                load_incluster(client_configuration=configuration)
            except ConfigException as exc:
                raise CertsError(f"cannot load the in-cluster configuration: {exc}") from None
            return client.ApiClient(configuration)
        else:
            raise CertsError("no kubeconfig: give --kubeconfig, set KUBECONFIG, or run inside a cluster")
    name = os.fspath(kubeconfig)
    if os.pathsep not in name:
        # Check a single file first: the client's messages for a missing or foreign file are cryptic.
        try:
            loaded = yaml.safe_load(inspect.read_bytes(name))
        except yaml.YAMLError:
            loaded = None
        if not isinstance(loaded, dict):
            raise CertsError(
                f"cannot load kubeconfig {name}: not a kubeconfig file (expected a YAML mapping)"
            )
    load: Any = config.new_client_from_config
    try:
        return load(config_file=name, context=context)
    except (ConfigException, OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise CertsError(f"cannot load kubeconfig {name}: {exc}") from None


class _Api:
    """The four calls inject needs, with API errors turned into :class:`CertsError`."""

    def __init__(self, client: Any) -> None:
        from kubernetes import client as k8s  # noqa: PLC0415

        self._admission = k8s.AdmissionregistrationV1Api(client)
        self._core = k8s.CoreV1Api(client)

    def get_webhook(self, kind: str, name: str) -> dict[str, Any] | None:
        read = (
            self._admission.read_validating_webhook_configuration
            if kind == VALIDATING
            else self._admission.read_mutating_webhook_configuration
        )
        found: dict[str, Any] | None = self._call(f"get {kind} {name}", read, name, missing_ok=True)
        return found

    def patch_webhook(self, kind: str, name: str, ops: list[dict[str, Any]]) -> None:
        patch = (
            self._admission.patch_validating_webhook_configuration
            if kind == VALIDATING
            else self._admission.patch_mutating_webhook_configuration
        )
        self._call(f"patch {kind} {name}", patch, name, ops, _content_type=JSON_PATCH)

    def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = self._call(
            f"get Secret {namespace}/{name}",
            self._core.read_namespaced_secret,
            name,
            namespace,
            missing_ok=True,
        )
        return found

    def apply_secret(
        self, namespace: str, name: str, data: Mapping[str, str], secret_type: str = SECRET_TYPE_TLS
    ) -> tuple[bool, str]:
        what = f"Secret {namespace}/{name}"
        existing = self.get_secret(namespace, name)
        if existing is None:
            self._call(
                f"create {what}",
                self._core.create_namespaced_secret,
                namespace,
                tls_secret(namespace, name, data, secret_type),
            )
            return True, f"{what}: created"
        patch = secret_data_patch(existing, data, secret_type)
        if patch is None:
            return False, f"{what}: already up to date"
        self._call(
            f"update {what}",
            self._core.patch_namespaced_secret,
            name,
            namespace,
            patch,
            _content_type=MERGE_PATCH,
        )
        return True, f"{what}: updated {', '.join(sorted(patch['data']))}"

    def _call(self, what: str, method: Any, *args: Any, missing_ok: bool = False, **kwargs: Any) -> Any:
        from kubernetes.client.exceptions import ApiException  # noqa: PLC0415
        from urllib3.exceptions import HTTPError, MaxRetryError  # noqa: PLC0415

        try:
            response = method(*args, _preload_content=False, **kwargs)
        except ApiException as exc:
            if missing_ok and exc.status == 404:
                return None
            raise CertsError(f"cannot {what}: {_api_error(exc)}") from None
        except MaxRetryError as exc:
            raise CertsError(f"cannot {what}: {exc.reason or exc}") from None
        except HTTPError as exc:
            raise CertsError(f"cannot {what}: {exc}") from None
        try:
            body = json.loads(response.data or b"{}")
        finally:
            response.release_conn()
        return body


def _api_error(exc: Any) -> str:
    """``<code> <reason>: <Status.message>`` from an ApiException (or the raw body if it is no Status)."""
    body = exc.body or b""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    message = text.strip()
    try:
        status = json.loads(text) if text else None
    except ValueError:
        status = None
    if isinstance(status, dict):
        message = str(status.get("message") or "")
    head = f"{exc.status} {exc.reason}"
    return f"{head}: {message}" if message else head
