"""``FakeAPIServer``: an in-process Kubernetes API server for tests.

An ``aiohttp.web`` application on its own event loop, in one background
thread, serves HTTP/1.1 (TLS by default) on 127.0.0.1; watches are coroutines,
so hundreds of them cost no threads.  Requests that read or write objects run
in a small worker pool (the admission hook may block on webhook calls); the
store is guarded by one lock.  aiohttp does the HTTP (parsing, keep-alive,
``Expect: 100-continue``, chunked bodies both ways); this module only maps
requests onto :class:`~kcp_tmc.testing.rest.Rest` and streams watches.

    with FakeAPIServer() as api:
        config = kubernetes.config.load_kube_config(api.kubeconfig_path)
        ...
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import copy
import functools
import json
import os
import secrets
import shutil
import ssl
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import parse_qsl, unquote, urlsplit

import yaml
from aiohttp import web

from kcp_tmc.testing import discovery, errors
from kcp_tmc.testing.auth import ADMIN, Attributes, Authorizer, User, user_from_entry
from kcp_tmc.testing.errors import StatusError
from kcp_tmc.testing.instruments import Counters, Faults, WriteLog
from kcp_tmc.testing.resources import ResourceInfo
from kcp_tmc.testing.rest import Call, EncodedJSON, Reply, Rest
from kcp_tmc.testing.store import Store, WatchEvent
from kcp_tmc.testing.tls import serving_certs
from kcp_tmc.testing.types import AdmissionHook

#: The annotation of the bookmark that ends a watch-list's initial events.
INITIAL_EVENTS_END = "k8s.io/initial-events-end"

if TYPE_CHECKING:
    import http.client

Object = dict[str, Any]

_PUBLIC_PATHS = ("/healthz", "/livez", "/readyz", "/version")
_JSON = ("Content-Type", "application/json")
_TEXT = ("Content-Type", "text/plain; charset=utf-8")
_WATCH_HEADERS = {"Content-Type": "application/json", "Cache-Control": "no-cache, private"}
#: The largest request body read (a bigger one gets 413); kube-apiserver's own limit is 3 MiB.
MAX_BODY_BYTES = 64 << 20
#: kube-apiserver reads request heads of up to 1 MiB; aiohttp's default of 8 KiB per line would
#: refuse long label selectors and service-account tokens.
_MAX_HEAD_LINE = 1 << 20
_HANDLER_ARGS: dict[str, Any] = {
    "max_line_size": _MAX_HEAD_LINE,
    "max_field_size": _MAX_HEAD_LINE,
    # kube-apiserver closes a keep-alive connection after 90 s idle (Go's client default too).
    "keepalive_timeout": 90.0,
}


class Incoming(NamedTuple):
    """The parts of a request the API logic reads; ``query`` keeps the last value of each key."""

    method: str
    path: str
    query: dict[str, str]
    authorization: str
    content_type: str
    body: bytes


def _load_default_admission(store: Store) -> AdmissionHook | None:
    """The webhook dispatcher of ``kcp_tmc.testing.admission`` when it is installed."""
    try:
        from kcp_tmc.testing.admission import WebhookDispatcher  # noqa: PLC0415 - optional sibling module
    except ImportError:
        return None
    dispatcher: AdmissionHook = WebhookDispatcher(store)
    return dispatcher


@dataclass(frozen=True)
class HTTPReply:
    """A raw HTTP answer: status, headers (lower-case names, repeats kept), body bytes."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        """The first value of a header, or ``None``."""
        return next((v for k, v in self.headers if k == name.lower()), None)

    def header_values(self, name: str) -> list[str]:
        """Every value of a header (``Warning`` may repeat)."""
        return [v for k, v in self.headers if k == name.lower()]


def send_http(
    connection: http.client.HTTPConnection,
    method: str,
    path: str,
    body: Any = None,
    *,
    content_type: str = "application/json",
    token: str = "",
    headers: Mapping[str, str] | None = None,
) -> HTTPReply:
    """Send one request on ``connection``, read the whole answer and close the connection.

    ``body`` is sent as it is when bytes or text, as JSON otherwise; ``token`` is a bearer token
    (``""``: none); ``headers`` are added last and win.
    """
    data: bytes | None
    if body is None:
        data = None
    elif isinstance(body, bytes | str):
        data = body.encode() if isinstance(body, str) else body
    else:
        data = json.dumps(body).encode()
    sent = {"Accept": "application/json"}
    if data is not None:
        sent["Content-Type"] = content_type
    if token:
        sent["Authorization"] = f"Bearer {token}"
    sent.update(headers or {})
    try:
        connection.request(method, path, body=data, headers=sent)
        raw = connection.getresponse()
        payload = raw.read()
        return HTTPReply(raw.status, [(k.lower(), v) for k, v in raw.getheaders()], payload)
    finally:
        connection.close()


class FakeAPIServer:
    """A Kubernetes API server for tests, on a loopback port.

    ``tokens`` maps bearer tokens to ``(user, groups)``; when given, every
    request needs one of them (or the admin token of :attr:`kubeconfig_path`).
    ``rules`` (RBAC-like dicts, see :mod:`kcp_tmc.testing.auth`) authorise
    requests when given.  ``watch_window`` is how many events the server keeps
    for watches that resume from a resourceVersion (older ones get 410 Gone).
    ``bookmark_interval``: seconds between the bookmarks of a watch that allows
    them (a minute, as kube-apiserver's watch cache sends them).
    ``admission`` replaces the webhook dispatcher (``None``: the default
    :class:`kcp_tmc.testing.admission.WebhookDispatcher`; ``False``: none).
    """

    def __init__(
        self,
        tls: bool = True,
        tokens: Mapping[str, Sequence[Any]] | None = None,
        rules: Sequence[Mapping[str, Any]] | None = None,
        watch_window: int = 1000,
        *,
        port: int = 0,
        host: str = "127.0.0.1",
        bookmark_interval: float = 60.0,
        admission: AdmissionHook | Any = None,
        workers: int = 8,
        seed: int | None = None,
    ) -> None:
        self.tls = tls
        self.host = host
        self.port = port
        self.bookmark_interval = bookmark_interval
        self.admin_token = secrets.token_hex(16)
        self.require_auth = tokens is not None
        self.tokens: dict[str, User] = {self.admin_token: ADMIN}
        for token, entry in (tokens or {}).items():
            self.tokens[token] = user_from_entry(entry)
        self.store = Store(watch_window)
        self.counters = Counters()
        self.write_log = WriteLog()
        self.faults = Faults(seed)
        self.authorizer = Authorizer(rules)
        self.rest = Rest(self.store, self.authorizer, self.tokens, self.counters, self.write_log, self.faults)
        self._admission_choice = admission
        self._hook: Any = None
        self._workers = workers
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._background: set[asyncio.Future[Any]] = set()
        self._tmpdir: str | None = None
        self._ssl: ssl.SSLContext | None = None
        self._namespace_task: asyncio.TimerHandle | None = None
        self.kubeconfig_path = ""
        self._bootstrap()

    # --- lifecycle ----------------------------------------------------------------------------------

    def _bootstrap(self) -> None:
        for name in ("default", "kube-system", "kube-public", "kube-node-lease"):
            self.rest.create(
                self._direct("create", self._info("v1", "namespaces")), {"metadata": {"name": name}}
            )

    def __enter__(self) -> FakeAPIServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """``https://127.0.0.1:<port>`` (``http://`` without TLS)."""
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    @property
    def ca_pem(self) -> bytes:
        """The CA certificate that signed the serving certificate (PEM)."""
        return serving_certs().ca_pem

    @property
    def ca_path(self) -> str:
        """A file holding :attr:`ca_pem`."""
        assert self._tmpdir is not None, "start the server first"  # noqa: S101 (an invariant for the type checker, not a check of input)
        return os.path.join(self._tmpdir, "ca.crt")

    def start(self) -> FakeAPIServer:
        """Starts serving; returns when the port is bound."""
        if self._thread is not None:
            return self
        if self._admission_choice is None:
            hook = _load_default_admission(self.store)
        elif self._admission_choice is False:
            hook = None
        else:
            hook = self._admission_choice
        if hook is not None:
            admit = getattr(hook, "admit", hook)
            self.rest.admission = admit
        self._hook = hook
        self._tmpdir = tempfile.mkdtemp(prefix="fake-apiserver-")
        certs = serving_certs()
        with open(self.ca_path, "wb") as handle:
            handle.write(certs.ca_pem)
        if self.tls:
            cert_path = os.path.join(self._tmpdir, "tls.crt")
            key_path = os.path.join(self._tmpdir, "tls.key")
            with open(cert_path, "wb") as handle:
                handle.write(certs.cert_pem)
            with open(key_path, "wb") as handle:
                handle.write(certs.key_pem)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(cert_path, key_path)
            context.set_alpn_protocols(["http/1.1"])
            self._ssl = context
        self._executor = concurrent.futures.ThreadPoolExecutor(
            self._workers, thread_name_prefix="fake-apiserver"
        )
        ready = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.Thread(
            target=self._run, args=(ready, failure), name="fake-apiserver", daemon=True
        )
        self._thread.start()
        ready.wait()
        if failure:
            self.stop()
            raise failure[0]
        self.faults.bind(self._go_down)
        self.kubeconfig_path = self.write_kubeconfig(os.path.join(self._tmpdir, "kubeconfig"))
        return self

    def _run(self, ready: threading.Event, failure: list[BaseException]) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._setup())
        except BaseException as exc:
            failure.append(exc)
            ready.set()
            loop.close()
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _setup(self) -> None:
        app = web.Application(client_max_size=MAX_BODY_BYTES, handler_args=_HANDLER_ARGS)
        # One catch-all route: the API's paths are resolved by _route, as kube-apiserver's mux does.
        app.router.add_route("*", "/{path:.*}", self._handle)
        # A client that goes away cancels its handler: that is how a watch learns it has no reader.
        runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        self._runner = runner
        try:
            await self._listen()
        except BaseException:
            self._runner = None
            await runner.cleanup()
            raise

    async def _listen(self) -> None:
        assert self._runner is not None  # noqa: S101 (an invariant for the type checker, not a check of input)
        site = web.TCPSite(
            self._runner, self.host, self.port, ssl_context=self._ssl, backlog=1024, reuse_address=True
        )
        await site.start()
        self._site = site
        self.port = self._runner.addresses[-1][1]

    def stop(self) -> None:
        """Closes every connection and watch, stops the loop and removes the temporary files."""
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None and loop.is_running():
            future = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
            with contextlib.suppress(Exception):
                future.result(timeout=10)
            loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout=10)
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
        close = getattr(self._hook, "close", None)
        if callable(close):
            close()  # the admission hook's idle connections to webhooks
        self._thread = None
        self._loop = None
        self._executor = None
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    async def _shutdown(self) -> None:
        if self._namespace_task is not None:
            self._namespace_task.cancel()
        for task in list(self._background):
            task.cancel()
        await self._close_listener()
        self._drop_connections()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _close_listener(self) -> None:
        if self._site is not None:
            await self._site.stop()
            self._site = None

    def _drop_connections(self) -> None:
        """Aborts every open connection (no FIN handshake, like a process that died)."""
        server = self._runner.server if self._runner is not None else None
        for connection in server.connections if server is not None else ():
            transport = connection.transport
            if transport is not None:
                transport.abort()

    # --- faults -----------------------------------------------------------------------------------

    def _go_down(self, seconds: float) -> None:
        loop = self._loop
        if loop is None:
            raise RuntimeError("the server is not running")

        async def down() -> None:
            await self._close_listener()
            self._drop_connections()
            loop.call_later(seconds, self._schedule_relisten)

        asyncio.run_coroutine_threadsafe(down(), loop).result(timeout=10)

    def _schedule_relisten(self) -> None:
        task = asyncio.ensure_future(self._relisten())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _relisten(self) -> None:
        """Binds the same port again; retries briefly while the kernel still holds it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while self._site is None and self._runner is not None:
            try:
                await self._listen()
            except OSError:
                if loop.time() > deadline:
                    raise
                await asyncio.sleep(0.05)

    # --- kubeconfig and clients -----------------------------------------------------------------

    def write_kubeconfig(self, path: str, token: str | None = None, user: str = "admin") -> str:
        """Writes a kubeconfig for this server (admin token unless ``token`` is given); returns ``path``."""
        import base64  # noqa: PLC0415 - only needed here

        cluster: Object = {"server": self.url}
        if self.tls:
            cluster["certificate-authority-data"] = base64.b64encode(self.ca_pem).decode()
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": cluster}],
            "users": [{"name": user, "user": {"token": token or self.admin_token}}],
            "contexts": [
                {"name": "fake", "context": {"cluster": "fake", "user": user, "namespace": "default"}}
            ],
            "current-context": "fake",
            "preferences": {},
        }
        with open(path, "w", encoding="utf-8") as handle:
            yaml.safe_dump(config, handle)
        return path

    def api_client(self, token: str | None = None) -> Any:
        """A ``kubernetes.client.ApiClient`` for this server (admin unless ``token`` is given)."""
        from kubernetes import client  # noqa: PLC0415 - heavy import, only for callers that want it

        configuration = client.Configuration()
        configuration.host = self.url
        configuration.api_key = {"authorization": token or self.admin_token}
        configuration.api_key_prefix = {"authorization": "Bearer"}
        if self.tls:
            configuration.ssl_ca_cert = self.ca_path
            configuration.verify_ssl = True
        return client.ApiClient(configuration)

    def http(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        token: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
    ) -> HTTPReply:
        """One raw HTTP request (admin token unless ``token``; ``""`` sends none); for exact bodies."""
        import http.client  # noqa: PLC0415 - only needed by this helper

        connection: http.client.HTTPConnection
        if self.tls:
            context = ssl.create_default_context(cadata=self.ca_pem.decode())
            connection = http.client.HTTPSConnection(self.host, self.port, timeout=timeout, context=context)
        else:
            connection = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        chosen = self.admin_token if token is None else token
        return send_http(
            connection, method, path, body, content_type=content_type, token=chosen, headers=headers
        )

    # --- direct helpers for tests (no HTTP, no admission, not counted) --------------------------

    def _info(self, api_version: str, kind_or_plural: str) -> ResourceInfo:
        with self.store.lock:
            info = self.store.table.find(api_version, kind_or_plural)
        if info is None:
            raise errors.not_found_path()
        return info

    @staticmethod
    def _direct(verb: str, info: ResourceInfo, namespace: str = "", name: str = "") -> Call:
        return Call(verb, info, namespace, name, direct=True)

    def create(self, obj: Object, namespace: str = "") -> Object:
        """Creates an object as a POST would (defaults, schema, 409 if it exists); returns it."""
        info = self._info(str(obj.get("apiVersion", "")), str(obj.get("kind", "")))
        ns = ""
        if info.namespaced:
            ns = namespace or str((obj.get("metadata") or {}).get("namespace") or "default")
        return self.rest.create(self._direct("create", info, ns), obj).obj

    def update(self, obj: Object, subresource: str = "") -> Object:
        """Replaces an object (its status with ``subresource="status"``); returns the stored one."""
        info = self._info(str(obj.get("apiVersion", "")), str(obj.get("kind", "")))
        meta = obj.get("metadata") or {}
        call = self._direct(
            "update", info, str(meta.get("namespace", "")) if info.namespaced else "", meta.get("name", "")
        )
        call.subresource = subresource
        return self.rest.update(call, obj).obj

    def get(self, api_version: str, kind: str, name: str, namespace: str = "") -> Object | None:
        """One object (``kind`` may be a kind or a plural), or ``None``."""
        info = self._info(api_version, kind)
        try:
            return self.rest.handle(self._direct("get", info, namespace, name)).obj
        except StatusError as exc:
            if exc.code == 404:
                return None
            raise

    def objects(
        self, api_version: str, kind: str, namespace: str | None = None, label_selector: str = ""
    ) -> list[Object]:
        """Every object of a kind (in one namespace when given), in key order, with kind and apiVersion."""
        info = self._info(api_version, kind)
        call = self._direct("list", info, namespace or "")
        call.query = {"labelSelector": label_selector} if label_selector else {}
        items = self.rest.list_objects(call)["items"]
        return [{"apiVersion": info.api_version, "kind": info.kind, **item} for item in items]

    def delete(self, api_version: str, kind: str, name: str, namespace: str = "") -> None:
        """Deletes an object (or marks it for deletion when it has finalizers)."""
        info = self._info(api_version, kind)
        self.rest.delete(self._direct("delete", info, namespace, name))
        self._schedule_namespace_controller()

    def install_crd(self, crd: Object) -> Object:
        """Creates (or replaces) a CustomResourceDefinition; its resources are served on return."""
        info = self._info("apiextensions.k8s.io/v1", "customresourcedefinitions")
        name = (crd.get("metadata") or {}).get("name", "")
        existing = self.get("apiextensions.k8s.io/v1", "customresourcedefinitions", name)
        if existing is None:
            return self.rest.create(self._direct("create", info), crd).obj
        replacement = copy.deepcopy(crd)
        replacement.setdefault("metadata", {})["resourceVersion"] = existing["metadata"]["resourceVersion"]
        return self.rest.update(self._direct("update", info, "", name), replacement).obj

    def set_admission(self, hook: AdmissionHook | Any) -> None:
        """Replaces the admission hook (an object with ``admit`` or a function; ``None`` for none)."""
        self.rest.admission = None if hook is None else getattr(hook, "admit", hook)

    # --- HTTP ----------------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.read() if request.body_exists else b""
        except web.HTTPRequestEntityTooLarge:
            reply = self._error(errors.request_entity_too_large(MAX_BODY_BYTES))
            reply.force_close()  # the rest of the body is still on its way
            return reply
        # The target as sent, decoded once, like the Go mux sees it (not aiohttp's normalised path).
        target = urlsplit(request.raw_path)
        incoming = Incoming(
            request.method,
            unquote(target.path),
            dict(parse_qsl(target.query, keep_blank_values=True)),
            request.headers.get("Authorization", ""),
            request.headers.get("Content-Type", "application/json"),
            body,
        )
        return await self._serve(incoming, request)

    def _respond(
        self,
        code: int,
        body: Object | bytes,
        warnings: Sequence[str] = (),
        headers: Sequence[tuple[str, str]] = (),
    ) -> web.Response:
        data = body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":")).encode()
        sent = [("Audit-Id", secrets.token_hex(8)), ("Cache-Control", "no-cache, private")]
        sent.append(_TEXT if isinstance(body, bytes) and not isinstance(body, EncodedJSON) else _JSON)
        sent.extend(headers)
        sent.extend(("Warning", f"299 - {json.dumps(warning)}") for warning in warnings)
        return web.Response(status=code, body=data, headers=sent)

    def _error(self, error: StatusError) -> web.Response:
        headers = [(k, v) for k, v in error.headers.items() if not k.startswith("_")]
        warnings = json.loads(error.headers.get("_warnings", "[]"))
        return self._respond(error.code, error.body, warnings, headers)

    def _authenticate(self, authorization: str) -> User | None:
        token = authorization[7:].strip() if authorization.lower().startswith("bearer ") else ""
        user = self.tokens.get(token)
        if user is not None:
            return user
        if not self.require_auth:
            return ADMIN
        return None

    async def _serve(self, incoming: Incoming, request: web.Request) -> web.StreamResponse:
        if self.faults.delay:
            await asyncio.sleep(self.faults.delay)
        user = self._authenticate(incoming.authorization)
        path = incoming.path.rstrip("/") or "/"
        if user is None and path not in _PUBLIC_PATHS:
            return self._error(errors.unauthorized())
        user = user or User("system:anonymous", ("system:unauthenticated",))
        try:
            route = self._route(incoming, path)
        except StatusError as exc:
            return self._error(exc)
        if isinstance(route, Call):
            route.user = user
            self.counters.record_request(route.verb, route.info.group, route.info.plural, route.subresource)
            if self.faults.take_initializing(route.info.plural, route.verb):
                return self._error(errors.too_many_requests(1, "storage is (re)initializing"))
        code = self.faults.draw_error()
        if code is not None and path not in ("/healthz", "/livez", "/readyz"):
            error = (
                errors.too_many_requests(self.faults.retry_after)
                if code == 429
                else errors.internal_error("injected fault")
            )
            return self._error(error)
        if not isinstance(route, Call):
            public = path in _PUBLIC_PATHS or path.startswith(("/healthz/", "/livez/", "/readyz/"))
            if (
                not public
                and not self.authorizer.allowed(Attributes(user, incoming.method.lower(), path=path))[0]
            ):
                return self._error(
                    errors.forbidden("", "", "", f'User "{user.name}" cannot get path "{path}"')
                )
            return self._respond(200, route)
        call = route
        try:
            self.authorizer.check(
                Attributes(
                    user,
                    call.verb,
                    call.info.group,
                    call.info.plural,
                    call.subresource,
                    call.name,
                    call.namespace,
                )
            )
        except StatusError as exc:
            return self._error(exc)
        if call.verb == "watch":
            return await self._watch(call, request)
        loop = asyncio.get_running_loop()
        handled = loop.run_in_executor(self._executor, self.rest.handle, call)
        # On completion, not after the await: a client that hangs up cancels this handler, but its
        # write still happens (as on a real apiserver) and a Terminating namespace must still go.
        namespace_write = call.info.key == ("", "namespaces") and call.verb in ("delete", "update", "patch")
        handled.add_done_callback(functools.partial(self._handled, namespace_write))
        try:
            reply: Reply = await asyncio.shield(handled)
        except StatusError as exc:
            return self._error(exc)
        except Exception as exc:  # a bug in the fake must still answer like a server
            return self._error(errors.internal_error(f"{type(exc).__name__}: {exc}"))
        return self._respond(reply.code, reply.body, reply.warnings)

    def _handled(self, namespace_write: bool, handled: asyncio.Future[Reply]) -> None:
        # exception() also marks an error as seen when no handler is left to read it.
        if not handled.cancelled() and handled.exception() is None and namespace_write:
            self._schedule_namespace_controller()

    def _route(self, request: Incoming, path: str) -> Call | Object | bytes:
        """Either a resource :class:`Call` or the document to answer a non-resource path with."""
        table = self.store.table
        method = request.method
        if path in ("/healthz", "/livez", "/readyz") or path.startswith(("/healthz/", "/livez/", "/readyz/")):
            return b"ok"
        if method != "GET" and not (path.startswith("/api/") or path.startswith("/apis/")):
            raise errors.not_found_path()
        with self.store.lock:
            if path == "/version":
                return dict(discovery.VERSION_INFO)
            if path == "/api":
                return discovery.api_versions(f"{self.host}:{self.port}")
            if path == "/apis":
                return discovery.api_group_list(table)
            if path == "/openapi/v2":
                return discovery.openapi_v2(table)
            if path == "/openapi/v3":
                return discovery.openapi_v3_index(table)
            if path.startswith("/openapi/v3/"):
                rest = path[len("/openapi/v3/") :].split("/")
                document = None
                if rest[0] == "api" and len(rest) == 2:
                    document = discovery.openapi_v3_document(table, "", rest[1])
                elif rest[0] == "apis" and len(rest) == 3:
                    document = discovery.openapi_v3_document(table, rest[1], rest[2])
                if document is None:
                    raise errors.not_found_path()
                return document
            parts = path.strip("/").split("/")
            if parts[0] == "api" and len(parts) >= 2:
                group, version, rest_parts = "", parts[1], parts[2:]
            elif parts[0] == "apis" and len(parts) >= 2:
                if len(parts) == 2:
                    doc = discovery.api_group(table, parts[1])
                    if doc is None:
                        raise errors.not_found_path()
                    return doc
                group, version, rest_parts = parts[1], parts[2], parts[3:]
            else:
                raise errors.not_found_path()
            if not rest_parts:
                listing = discovery.resource_list(table, group, version)
                if listing is None or method != "GET":
                    raise errors.not_found_path()
                return listing
            namespace = ""
            if (
                rest_parts[0] == "namespaces"
                and len(rest_parts) >= 3
                and rest_parts[2] not in ("status", "finalize")
            ):
                namespace, rest_parts = rest_parts[1], rest_parts[2:]
            if len(rest_parts) > 3:
                raise errors.not_found_path()
            info = table.lookup(group, version, rest_parts[0])
            if info is None or (namespace and not info.namespaced):
                raise errors.not_found_path()
            name = rest_parts[1] if len(rest_parts) > 1 else ""
            subresource = rest_parts[2] if len(rest_parts) > 2 else ""
            if info.namespaced and name and not namespace and info.key != ("", "namespaces"):
                raise errors.not_found_path()
        watch = request.query.get("watch", "") in ("true", "1")
        verb = {
            ("GET", True): "watch" if watch else "get",
            ("GET", False): "watch" if watch else "list",
            ("POST", False): "create",
            ("PUT", True): "update",
            ("PATCH", True): "patch",
            ("DELETE", True): "delete",
            ("DELETE", False): "deletecollection",
        }.get((method, bool(name)))
        if verb is None:
            raise errors.method_not_supported(info.group, info.plural, method.lower())
        if (
            info.namespaced
            and not namespace
            and verb in ("create", "deletecollection")
            and info.key != ("", "namespaces")
        ):
            raise errors.not_found_path()
        return Call(
            verb,
            info,
            namespace,
            name,
            subresource,
            request.query,
            request.body,
            request.content_type,
        )

    def _schedule_namespace_controller(self) -> None:
        loop = self._loop
        if loop is None or not loop.is_running():
            # Not serving: run the controller right away so direct helpers still see namespaces go.
            self.rest.reconcile_namespaces()
            return

        def tick() -> None:
            self._namespace_task = None
            executor = self._executor
            if executor is None:
                return
            future = loop.run_in_executor(executor, self.rest.reconcile_namespaces)

            def again(_: Any) -> None:
                if self.rest.terminating_namespaces() and self._loop is not None:
                    self._namespace_task = loop.call_later(0.05, tick)

            future.add_done_callback(again)

        def arm() -> None:
            if self._namespace_task is None:
                self._namespace_task = loop.call_later(0.01, tick)

        loop.call_soon_threadsafe(arm)

    # --- watch ---------------------------------------------------------------------------------------

    async def _watch(self, call: Call, request: web.Request) -> web.StreamResponse:
        info = call.info
        try:
            labels, fields = self.rest.selectors(call)
        except StatusError as exc:
            return self._error(exc)
        rv_param = call.query.get("resourceVersion", "")
        since: int | None = None
        if rv_param not in ("", "0"):
            try:
                since = int(rv_param)
            except ValueError:
                return self._error(errors.bad_request(f"invalid resource version: {rv_param}"))
        bookmarks = call.query.get("allowWatchBookmarks", "") in ("true", "1")
        # A watch-list (sendInitialEvents) starts with the current objects, and with a bookmark
        # saying where they end when bookmarks were asked for.
        initial_events = call.query.get("sendInitialEvents", "") in ("true", "1")
        if initial_events:
            if call.query.get("resourceVersionMatch", "") != "NotOlderThan":
                return self._error(errors.watch_list_needs_not_older_than())
            since = None
        timeout: float | None = None
        if call.query.get("timeoutSeconds"):
            with contextlib.suppress(ValueError):
                timeout = float(call.query["timeoutSeconds"])
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[WatchEvent] = asyncio.Queue()

        def deliver(event: WatchEvent) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, event)

        stream = web.StreamResponse(status=200, headers=_WATCH_HEADERS)
        stream.enable_chunked_encoding()
        await stream.prepare(request)
        try:
            with self.store.locked():
                initial, watcher = self.store.watch(info.key, call.namespace, since, deliver)
                snapshot_rv = self.store.resource_version
        except StatusError as exc:
            await stream.write(json.dumps({"type": "ERROR", "object": exc.body}).encode() + b"\n")
            await stream.write_eof()
            return stream

        def matches(obj: Object | None) -> bool:
            if obj is None:
                return False
            return labels.matches((obj.get("metadata") or {}).get("labels") or {}) and fields.matches(obj)

        def encode(kind: str, obj: Object) -> bytes:
            served = {"apiVersion": info.api_version, "kind": info.kind}
            served.update({k: v for k, v in obj.items() if k not in ("apiVersion", "kind")})
            return json.dumps({"type": kind, "object": served}, separators=(",", ":")).encode() + b"\n"

        def translate(event: WatchEvent) -> bytes:
            now, before = matches(event.object), matches(event.old)
            if event.type == "ADDED":
                return encode("ADDED", event.object) if now else b""
            if event.type == "DELETED":
                return encode("DELETED", event.object) if before or now else b""
            if now and before:
                return encode("MODIFIED", event.object)
            if now:
                return encode("ADDED", event.object)
            if before:
                return encode("DELETED", event.object)
            return b""

        deadline = loop.time() + timeout if timeout is not None else None
        try:
            # Events that arrive together go out in one chunk: one write, one TLS record.
            batch = b"".join(translate(event) for event in initial)
            if initial_events and bookmarks:
                end = {"resourceVersion": str(snapshot_rv), "annotations": {INITIAL_EVENTS_END: "true"}}
                batch += encode("BOOKMARK", {"metadata": end})
            if batch:
                await stream.write(batch)
            last_bookmark = loop.time()
            while True:
                wait: float | None = None
                if deadline is not None:
                    wait = deadline - loop.time()
                    if wait <= 0:
                        break
                if bookmarks:
                    until_bookmark = max(0.0, last_bookmark + self.bookmark_interval - loop.time())
                    wait = until_bookmark if wait is None else min(wait, until_bookmark)
                try:
                    event = await asyncio.wait_for(queue.get(), wait)
                except TimeoutError:
                    event = None
                if event is not None:
                    batch = translate(event)
                    while not queue.empty():
                        batch += translate(queue.get_nowait())
                    if batch:
                        await stream.write(batch)
                if bookmarks and loop.time() - last_bookmark >= self.bookmark_interval:
                    mark = {"metadata": {"resourceVersion": str(self.store.resource_version)}}
                    await stream.write(encode("BOOKMARK", mark))
                    last_bookmark = loop.time()
            await stream.write_eof()
            return stream
        finally:
            self.store.unwatch(watcher)
