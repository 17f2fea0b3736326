"""Serve the kcp-tmc admission webhook in-process, and register it with a test API server.

:func:`serve_webhook` runs the real app (:func:`kcp_tmc.webhook.app.create_app`) over TLS on
``127.0.0.1`` and an ephemeral port, in a background thread, with a throwaway CA and serving
certificate.  :meth:`ServedWebhook.register` then creates the Mutating- and
ValidatingWebhookConfiguration an operator would apply, pointing at it by URL with the CA as
``caBundle``, through the server's ``kubernetes`` client::

    from kcp_tmc.testing import FakeAPIServer
    from kcp_tmc.testing.crds import install_tmc_crds
    from kcp_tmc.testing.webhook import serve_webhook

    with FakeAPIServer() as api, serve_webhook() as webhook:
        install_tmc_crds(api)
        webhook.register(api)
        ...  # kubectl apply / the kubernetes client now go through our policies

It works the same against :class:`~kcp_tmc.testing.envtest.RealAPIServer`: there ``register``
waits until the apiserver has picked the configurations up (a real apiserver reads them
asynchronously), by sending a dry-run probe until both webhooks have seen it.

Flask and the policies are imported when :func:`serve_webhook` is first called, not when
this module is imported.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import copy
import functools
import io
import json
import logging
import secrets
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from kcp_tmc.policies.kinds import CLUSTER, LOCATION, SYNC_TARGET, ResourceType

if TYPE_CHECKING:
    from flask import Flask

    from kcp_tmc.certs.files import CertPaths
    from kcp_tmc.policies.policy import Policy
    from kcp_tmc.policies.registry import Registry
    from kcp_tmc.webhook.config import WebhookConfig

__all__ = [
    "MUTATING_WEBHOOK",
    "VALIDATING_WEBHOOK",
    "ServedWebhook",
    "WebhookCall",
    "serve_webhook",
    "tmc_rules",
]

log = logging.getLogger(__name__)

#: The webhook names in the configurations (as in docs/webhook.md); denials quote them:
#: ``admission webhook "validate.tmc.kcp.io" denied the request: ...``.
MUTATING_WEBHOOK = "mutate.tmc.kcp.io"
VALIDATING_WEBHOOK = "validate.tmc.kcp.io"
#: The Service the throwaway certificate also names, as a deployed webhook's would.
SERVICE, NAMESPACE = "tmc-webhook", "tmc-system"

_OPERATIONS = ("CREATE", "UPDATE", "DELETE")
#: The TMC resources the configurations cover, with the subresources our policies judge.
_COVERED: tuple[tuple[ResourceType, tuple[str, ...]], ...] = (
    (SYNC_TARGET, ("", "status")),
    (CLUSTER, ("", "status")),
    (LOCATION, ("",)),
)
#: Kept per server so a long test cannot grow it without bound.
_MAX_CALLS = 10_000
#: How long a connection may stall before its thread gives up on it.
_IDLE_SECONDS = 60.0
_POLL_SECONDS = 0.05


def tmc_rules() -> list[dict[str, Any]]:
    """The ``rules`` of the registered webhooks: the TMC kinds, CREATE, UPDATE and DELETE.

    ``synctargets`` and ``synctargets/status`` (workload.kcp.io), ``clusters`` and
    ``clusters/status`` (tmc.kcp.io), ``locations`` (scheduling.kcp.io).
    """
    return [
        {
            "apiGroups": [rt.group],
            "apiVersions": [rt.version],
            "operations": list(_OPERATIONS),
            "resources": [rt.plural if not sub else f"{rt.plural}/{sub}" for sub in subresources],
            "scope": "*",
        }
        for rt, subresources in _COVERED
    ]


@dataclass(frozen=True)
class WebhookCall:
    """One AdmissionReview the served webhook received (recorded before it is judged).

    ``resource`` is ``plural`` or ``plural/subresource``; fields the review did not carry are "".
    """

    path: str
    uid: str
    operation: str
    resource: str
    name: str
    namespace: str
    dry_run: bool


def _call_of(path: str, body: bytes) -> WebhookCall:
    try:
        review = json.loads(body)
    except ValueError:
        review = None
    # Bad input is the app's to answer (and to refuse): here it only must not break anything.
    request = review.get("request") if isinstance(review, dict) else None
    if not isinstance(request, dict):
        return WebhookCall(path, "", "", "", "", "", False)
    resource = request.get("resource")
    plural = str(resource.get("resource") or "") if isinstance(resource, dict) else ""
    sub = str(request.get("subResource") or "")
    return WebhookCall(
        path=path,
        uid=str(request.get("uid") or ""),
        operation=str(request.get("operation") or ""),
        resource=f"{plural}/{sub}" if sub else plural,
        name=str(request.get("name") or ""),
        namespace=str(request.get("namespace") or ""),
        dry_run=request.get("dryRun") is True,
    )


class _Recorder:
    """WSGI middleware that notes every review POSTed to the app, then hands it on unchanged."""

    def __init__(self, app: Callable[..., Any], limit: int) -> None:
        self.app = app
        self.limit = limit
        self.calls: collections.deque[WebhookCall] = collections.deque(maxlen=_MAX_CALLS)
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        # Oversized or chunked bodies go through untouched: the app refuses or reads them itself.
        if environ.get("REQUEST_METHOD") == "POST" and 0 < length <= self.limit:
            body = environ["wsgi.input"].read(length)
            environ["wsgi.input"] = io.BytesIO(body)
            call = _call_of(str(environ.get("PATH_INFO") or ""), body)
            with self.lock:
                self.calls.append(call)
        return self.app(environ, start_response)


@functools.cache
def _quiet_handler() -> type[Any]:
    from werkzeug.serving import WSGIRequestHandler  # noqa: PLC0415 - see the module docstring

    class Handler(WSGIRequestHandler):
        protocol_version = "HTTP/1.1"
        # Bounds a client that stalls mid-handshake or mid-request (werkzeug closes the connection
        # after every answer, so none stays idle between requests); stop() closes them all anyway.
        timeout = _IDLE_SECONDS

        def log(self, type: str, message: str, *args: Any) -> None:
            # werkzeug would add a stderr handler to its logger and print every request.
            log.debug("%s: " + message, type, *args)

    return Handler


@functools.cache
def _server_class() -> Any:
    from werkzeug.serving import ThreadedWSGIServer  # noqa: PLC0415 - see the module docstring

    class Server(ThreadedWSGIServer):
        """werkzeug's threaded server that knows its open connections, to close them on stop."""

        def __init__(self, app: Callable[..., Any], context: ssl.SSLContext) -> None:
            super().__init__("127.0.0.1", 0, app, _quiet_handler())
            self.open_connections: set[socket.socket] = set()
            self.connections_lock = threading.Lock()
            # Handshakes happen in the connection's thread, so a slow client never blocks accept().
            self.socket = context.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)
            self.ssl_context = context

        def process_request(self, request: Any, client_address: Any) -> None:
            with self.connections_lock:
                self.open_connections.add(request)
            super().process_request(request, client_address)

        def shutdown_request(self, request: Any) -> None:
            with self.connections_lock:
                self.open_connections.discard(request)
            super().shutdown_request(request)

        def close_connections(self) -> None:
            with self.connections_lock:
                open_now = list(self.open_connections)
            for conn in open_now:
                # The plain socket's shutdown: the connection's thread sees EOF and closes it itself.
                with contextlib.suppress(OSError):
                    socket.socket.shutdown(conn, socket.SHUT_RDWR)

        def log(self, type: str, message: str, *args: Any) -> None:
            log.debug("%s: " + message, type, *args)

    return Server


class ServedWebhook:
    """The webhook app serving on ``127.0.0.1``; made by :func:`serve_webhook`.

    ``url`` is ``https://127.0.0.1:<port>``, ``ca_pem`` the CA that issued the serving
    certificate (for ``127.0.0.1``, ``localhost`` and ``tmc-webhook.tmc-system.svc``),
    ``ca_bundle`` the same as ``clientConfig.caBundle`` wants it, ``app`` the Flask app,
    ``cert_dir`` the folder of ``ca.crt``, ``tls.crt`` and ``tls.key`` (removed on exit).
    """

    def __init__(self, app: Flask, recorder: _Recorder, port: int, ca_pem: bytes, cert_dir: Path) -> None:
        self.app = app
        self.port = port
        self.ca_pem = ca_pem
        self.cert_dir = cert_dir
        self._recorder = recorder

    @property
    def url(self) -> str:
        """``https://127.0.0.1:<port>``."""
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca_bundle(self) -> str:
        """The CA as ``clientConfig.caBundle`` wants it: base64 of the PEM."""
        return base64.b64encode(self.ca_pem).decode("ascii")

    @property
    def calls(self) -> list[WebhookCall]:
        """The reviews received so far, oldest first (the last 10,000)."""
        with self._recorder.lock:
            return list(self._recorder.calls)

    def clear_calls(self) -> None:
        """Forget the recorded reviews."""
        with self._recorder.lock:
            self._recorder.calls.clear()

    def client_config(self, path: str) -> dict[str, Any]:
        """A ``clientConfig`` with ``url`` (``path`` on this server) and ``caBundle``."""
        return {"url": f"{self.url}{path}", "caBundle": self.ca_bundle}

    def configurations(
        self,
        *,
        name: str = "kcp-tmc",
        failure_policy: Literal["Fail", "Ignore"] = "Fail",
        rules: Sequence[Mapping[str, Any]] | None = None,
        timeout_seconds: int = 5,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The MutatingWebhookConfiguration and ValidatingWebhookConfiguration :meth:`register` creates.

        Both are called ``name``; ``rules`` default to :func:`tmc_rules`.  ``sideEffects`` is
        ``NoneOnDryRun`` when a served policy with side effects (quota reservations) handles a
        resource the rules cover, else ``None``.  Raises
        :class:`ValueError` for a failure policy or timeout the apiserver would refuse.
        """
        if failure_policy not in ("Fail", "Ignore"):
            raise ValueError(f'failure_policy must be "Fail" or "Ignore", got {failure_policy!r}')
        if isinstance(timeout_seconds, bool) or not isinstance(timeout_seconds, int):
            raise ValueError(f"timeout_seconds must be a whole number of seconds, got {timeout_seconds!r}")
        if not 1 <= timeout_seconds <= 30:
            raise ValueError(
                f"timeout_seconds must be between 1 and 30 (the apiserver's limits), got {timeout_seconds}"
            )
        chosen = tmc_rules() if rules is None else [copy.deepcopy(dict(r)) for r in rules]
        # A policy that writes (quota reservations) skips dry runs: the apiserver must be told so.
        side_effects = "NoneOnDryRun" if self._writes_for(chosen) else "None"

        def webhook(hook_name: str, path: str) -> dict[str, Any]:
            return {
                "name": hook_name,
                "clientConfig": self.client_config(path),
                "rules": copy.deepcopy(chosen),
                "failurePolicy": failure_policy,
                "sideEffects": side_effects,
                "admissionReviewVersions": ["v1", "v1beta1"],
                "timeoutSeconds": timeout_seconds,
            }

        def configuration(kind: str, hook: dict[str, Any]) -> dict[str, Any]:
            return {
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": kind,
                "metadata": {"name": name},
                "webhooks": [hook],
            }

        return (
            configuration("MutatingWebhookConfiguration", webhook(MUTATING_WEBHOOK, "/mutate")),
            configuration("ValidatingWebhookConfiguration", webhook(VALIDATING_WEBHOOK, "/validate")),
        )

    def _writes_for(self, rules: Sequence[Mapping[str, Any]]) -> bool:
        """True when a served policy with side effects handles a resource the rules cover."""
        state = self.app.extensions.get("kcp_tmc.webhook")
        if state is None:
            return False
        for policy in state.engine.policies:
            if not policy.side_effects:
                continue
            for rtype in policy.kinds:
                for rule in rules:
                    groups, resources = rule.get("apiGroups") or (), rule.get("resources") or ()
                    if (rtype.group in groups or "*" in groups) and (
                        rtype.plural in resources or "*" in resources
                    ):
                        return True
        return False

    def register(
        self,
        api: Any,
        *,
        name: str = "kcp-tmc",
        failure_policy: Literal["Fail", "Ignore"] = "Fail",
        rules: Sequence[Mapping[str, Any]] | None = None,
        timeout_seconds: int = 5,
        wait_seconds: float = 30.0,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Register this webhook with ``api`` (a ``FakeAPIServer`` or ``RealAPIServer``).

        Creates (or replaces) the two :meth:`configurations` through ``api.api_client()`` and
        returns them as the server stored them.  The fake server reads configurations on every
        write; with any other server this waits up to ``wait_seconds`` until a dry-run probe of
        a covered resource reached both webhooks (install the CRDs first; when no covered
        resource is served yet there is nothing to probe and it returns at once).  Raises
        :class:`TimeoutError` when the probe never arrives.
        """
        from kubernetes.client import AdmissionregistrationV1Api  # noqa: PLC0415 - heavy, lazy

        from kcp_tmc.testing.server import FakeAPIServer  # noqa: PLC0415 - avoids an import cycle

        mutating, validating = self.configurations(
            name=name, failure_policy=failure_policy, rules=rules, timeout_seconds=timeout_seconds
        )
        with api.api_client() as kube:
            client = AdmissionregistrationV1Api(kube)
            stored_mutating = _create_or_replace(
                kube,
                mutating,
                client.create_mutating_webhook_configuration,
                client.read_mutating_webhook_configuration,
                client.replace_mutating_webhook_configuration,
            )
            stored_validating = _create_or_replace(
                kube,
                validating,
                client.create_validating_webhook_configuration,
                client.read_validating_webhook_configuration,
                client.replace_validating_webhook_configuration,
            )
            if not isinstance(api, FakeAPIServer):
                self.wait_until_called(kube, mutating["webhooks"][0]["rules"], wait_seconds)
        return stored_mutating, stored_validating

    def unregister(self, api: Any, *, name: str = "kcp-tmc") -> None:
        """Delete the two configurations called ``name`` (missing ones are fine)."""
        from kubernetes.client import AdmissionregistrationV1Api  # noqa: PLC0415 - heavy, lazy
        from kubernetes.client.exceptions import ApiException  # noqa: PLC0415 - heavy, lazy

        with api.api_client() as kube:
            client = AdmissionregistrationV1Api(kube)
            for delete in (
                client.delete_mutating_webhook_configuration,
                client.delete_validating_webhook_configuration,
            ):
                try:
                    delete(name)
                except ApiException as exc:
                    if exc.status != 404:
                        raise

    def wait_until_called(self, kube: Any, rules: Sequence[Mapping[str, Any]], timeout: float) -> bool:
        """Send dry-run creates of a covered resource until both webhooks saw one.

        ``kube`` is a ``kubernetes.client.ApiClient``.  Returns ``False`` when no resource of
        ``rules`` is served (nothing to probe), ``True`` once both webhooks were called (only
        the mutating one when the apiserver's schema refused the probe, since validating
        webhooks never see a schema-invalid object).  The probe's calls are not kept in
        :attr:`calls`.  Raises :class:`TimeoutError` after ``timeout`` seconds.
        """
        from kubernetes.client import CustomObjectsApi  # noqa: PLC0415 - heavy, lazy
        from kubernetes.client.exceptions import ApiException  # noqa: PLC0415 - heavy, lazy

        objects = CustomObjectsApi(kube)
        target = _probe_target(objects, rules)
        if target is None:
            return False
        group, version, plural, kind, namespaced = target
        probe = f"kcp-tmc-probe-{secrets.token_hex(4)}"
        body: dict[str, Any] = {"apiVersion": f"{group}/{version}", "kind": kind, "metadata": {"name": probe}}
        deadline = time.monotonic() + timeout
        try:
            while True:
                schema_refused = False
                try:
                    if namespaced:
                        body["metadata"]["namespace"] = "default"
                        objects.create_namespaced_custom_object(
                            group, version, "default", plural, body, dry_run="All"
                        )
                    else:
                        objects.create_cluster_custom_object(group, version, plural, body, dry_run="All")
                except ApiException as exc:
                    # 403: a policy refused the bare probe, which still proves the webhooks were called.
                    schema_refused = exc.status == 422
                seen = {c.path for c in self.calls if c.name == probe}
                wanted = {"/mutate"} if schema_refused else {"/mutate", "/validate"}
                if wanted <= seen:
                    return True
                if time.monotonic() >= deadline:
                    raise TimeoutError(
                        f"the apiserver did not call the webhooks at {self.url} within {timeout:g}s "
                        f"(a dry-run create of {plural}.{group} reached {sorted(seen) or 'none'} "
                        "of /mutate and /validate)"
                    )
                time.sleep(0.1)
        finally:
            with self._recorder.lock:
                kept = [c for c in self._recorder.calls if c.name != probe]
                self._recorder.calls.clear()
                self._recorder.calls.extend(kept)


def _create_or_replace(
    kube: Any,
    body: dict[str, Any],
    create: Callable[..., Any],
    read: Callable[..., Any],
    replace_: Callable[..., Any],
) -> dict[str, Any]:
    from kubernetes.client.exceptions import ApiException  # noqa: PLC0415 - heavy, lazy

    try:
        stored = create(body)
    except ApiException as exc:
        if exc.status != 409:
            raise
        name = body["metadata"]["name"]
        current = read(name)
        updated = copy.deepcopy(body)
        updated["metadata"]["resourceVersion"] = current.metadata.resource_version
        stored = replace_(name, updated)
    result: dict[str, Any] = kube.sanitize_for_serialization(stored)
    return result


def _probe_target(objects: Any, rules: Sequence[Mapping[str, Any]]) -> tuple[str, str, str, str, bool] | None:
    """The first plain resource of ``rules`` that the server serves: group, version, plural, kind, scope."""
    from kubernetes.client.exceptions import ApiException  # noqa: PLC0415 - heavy, lazy

    for rule in rules:
        if "CREATE" not in (rule.get("operations") or ()) and "*" not in (rule.get("operations") or ()):
            continue
        for group in rule.get("apiGroups") or ():
            for version in rule.get("apiVersions") or ():
                if not group or "*" in (group, version):
                    continue
                plurals = [r for r in rule.get("resources") or () if "/" not in r and r != "*"]
                if not plurals:
                    continue
                try:
                    served = objects.get_api_resources(group, version).resources or []
                except ApiException:
                    continue
                by_name = {r.name: r for r in served}
                for plural in plurals:
                    if plural in by_name and "create" in (by_name[plural].verbs or ()):
                        found = by_name[plural]
                        return group, version, plural, found.kind, bool(found.namespaced)
    return None


def _select(base: Registry, policies: Iterable[str | Policy | Callable[..., Any]]) -> Registry:
    """A registry holding only ``policies``: Policy objects, or names and decorated functions.

    Names and functions are looked up in ``base``, then in the process-wide registry the
    decorators use by default (where a policy defined in a test module lands).
    """
    from kcp_tmc.policies.engine import UnknownPolicyError  # noqa: PLC0415 - lazy with the engine
    from kcp_tmc.policies.policy import Policy  # noqa: PLC0415
    from kcp_tmc.policies.registry import REGISTRY, Registry  # noqa: PLC0415

    chosen = Registry()
    for item in policies:
        if isinstance(item, Policy):
            chosen.register(item)
        elif isinstance(item, str):
            policy = base.get(item) or REGISTRY.get(item)
            if policy is None:
                raise UnknownPolicyError(item, {p.name for reg in (base, REGISTRY) for p in reg})
            chosen.register(policy)
        elif callable(item):
            found = next((p for reg in (base, REGISTRY) for p in reg if p.func is item), None)
            if found is None:
                raise ValueError(
                    f"{getattr(item, '__qualname__', item)!r} is not a registered policy: decorate it with "
                    "@validating(...) or @mutating(...), or pass its name"
                )
            chosen.register(found)
        else:
            raise TypeError(f"policies must hold names, Policy objects or policy functions, got {item!r}")
    return chosen


def _settings(
    config: WebhookConfig | Mapping[str, Any] | None,
    policies: Iterable[str | Policy | Callable[..., Any]] | None,
    registry: Registry | None,
    paths: CertPaths,
) -> WebhookConfig:
    from kcp_tmc.policies.plugins import default_registry  # noqa: PLC0415 - lazy with the webhook
    from kcp_tmc.webhook.config import WebhookConfigError, coerce_config  # noqa: PLC0415

    cfg = coerce_config(config)
    if registry is not None and cfg.registry is not None:
        raise WebhookConfigError("give the registry once: as registry= or in the config, not both")
    base = registry if registry is not None else cfg.registry
    if policies is not None:
        base = _select(base if base is not None else default_registry(), policies)
    changes: dict[str, Any] = {"registry": base}
    if cfg.cert_file is None:
        # /readyz and the expiry metric read the pair this server really serves.
        changes.update(cert_file=str(paths.tls_crt), key_file=str(paths.tls_key))
    return replace(cfg, **changes)


@contextlib.contextmanager
def serve_webhook(
    config: WebhookConfig | Mapping[str, Any] | None = None,
    *,
    policies: Iterable[str | Policy | Callable[..., Any]] | None = None,
    registry: Registry | None = None,
) -> Iterator[ServedWebhook]:
    """Serve our webhook app over TLS on ``127.0.0.1`` for the duration of a ``with`` block.

    ``config`` is what :func:`~kcp_tmc.webhook.app.create_app` takes (a ``WebhookConfig``, a
    mapping of its fields, or ``None``).  ``registry`` replaces the policies served (default:
    the built-in ones plus installed plug-ins); ``policies`` narrows them to the ones named:
    policy names, ``Policy`` objects or functions decorated with ``@validating``/``@mutating``
    (a policy a test module registers on the default registry is found by name or function).
    Bad settings raise before anything is served.  On exit the server stops, open connections
    are closed, the engine's threads end and the certificates are removed.
    """
    from kcp_tmc.certs.generate import generate_dir  # noqa: PLC0415 - see the module docstring
    from kcp_tmc.webhook.app import EXTENSION, create_app  # noqa: PLC0415
    from kcp_tmc.webhook.tls import server_context  # noqa: PLC0415

    with contextlib.ExitStack() as stack:
        cert_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="kcp-tmc-webhook-")))
        paths = generate_dir(
            cert_dir, service=SERVICE, namespace=NAMESPACE, dns=["localhost"], ips=["127.0.0.1"]
        )
        cfg = _settings(config, policies, registry, paths)
        app = create_app(cfg)
        stack.callback(app.extensions[EXTENSION].close)
        recorder = _Recorder(app.wsgi_app, cfg.max_body_bytes)
        app.wsgi_app = recorder  # type: ignore[method-assign]
        context = server_context(str(paths.tls_crt), str(paths.tls_key))
        server = _server_class()(app, context)
        stack.callback(server.server_close)
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": _POLL_SECONDS},
            name=f"kcp-tmc-webhook-{server.server_address[1]}",
            daemon=True,
        )
        thread.start()
        stack.callback(_stop, server, thread)
        ca_pem = paths.ca_crt.read_bytes()
        yield ServedWebhook(app, recorder, int(server.server_address[1]), ca_pem, cert_dir)


def _stop(server: Any, thread: threading.Thread) -> None:
    server.shutdown()
    server.close_connections()
    # werkzeug's serve_forever closes the server on its way out, which waits for every
    # connection's thread: closing the connections above is what lets it finish.
    thread.join(timeout=10)
    if thread.is_alive():
        log.warning("the webhook server thread did not stop within 10s")
