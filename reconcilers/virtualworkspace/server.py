"""The syncer and upsyncer virtual workspaces: a Kubernetes API per SyncTarget, served by aiohttp.

A request goes through, in order: authentication (a TokenReview of its bearer token, 401 without
one), readiness (503 until the first SyncTarget list has been read), the path rules of
:mod:`~kcp_tmc.reconcilers.virtualworkspace.paths` (404), authorization (a SubjectAccessReview of
verb ``sync`` on the SyncTarget, 403), then the API itself: discovery, or a resource the SyncTarget is
served (404 otherwise), with only the verbs of its workspace (405 otherwise).

Every backing request is made with the reconciler's own credentials and carries the state label
requirement of the SyncTarget, so a caller never reaches an object that is not placed on its target.
The server runs in its own thread with its own event loop inside the reconciler process, so that
hundreds of open watches cost coroutines, not threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import ssl
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from kcp_tmc.certs.reloading import ReloadingTLS, server_context
from kcp_tmc.policies.clusters import cluster_of
from kcp_tmc.policies.keys import (
    ANNOTATION_SUMMARIZING,
    PREFIX_DELETION_ANNOTATION,
    PREFIX_SPEC_DIFF_ANNOTATION,
    PREFIX_SYNCER_DIFF_ANNOTATION,
    SYNC,
    UPSYNC,
    state_label,
)
from kcp_tmc.policies.selectors import Selector, SelectorError, parse_field_selector, parse_selector
from kcp_tmc.reconcilers.virtualworkspace import errors
from kcp_tmc.reconcilers.virtualworkspace.auth import Authorizer, Caller, ReviewFailed
from kcp_tmc.reconcilers.virtualworkspace.backend import Backend, BackendUnreachable
from kcp_tmc.reconcilers.virtualworkspace.discovery import (
    AGGREGATED_DISCOVERY_MEDIA_TYPE,
    ServedAPIs,
    ServedResource,
    served_apis,
    wants_aggregated,
)
from kcp_tmc.reconcilers.virtualworkspace.errors import StatusError
from kcp_tmc.reconcilers.virtualworkspace.informer import Informer
from kcp_tmc.reconcilers.virtualworkspace.patching import apply_patch
from kcp_tmc.reconcilers.virtualworkspace.paths import (
    PathRefused,
    VWPath,
    check_target,
    not_found_status,
    parse_vw_path,
)
from kcp_tmc.reconcilers.virtualworkspace.requestinfo import (
    Discovery,
    ResourceRequest,
    parse_api_path,
    verb_of,
)
from kcp_tmc.reconcilers.virtualworkspace.sharedwatch import (
    ClientFilter,
    SharedWatches,
    Subscriber,
)
from kcp_tmc.reconcilers.virtualworkspace.transforms import (
    TransformError,
    plan_writes,
    to_syncer,
    upsyncer_from_client,
)

__all__ = ["VirtualWorkspace", "VirtualWorkspaceServer", "WorkspaceOptions"]

log = logging.getLogger("kcp_tmc.reconcilers.virtualworkspace")

Obj = dict[str, Any]

SYNCTARGETS_PATH = "/apis/workload.kcp.io/v1alpha1/synctargets"
APIEXPORTS_PATH = "/apis/apis.kcp.io/v1alpha1/apiexports"
APIRESOURCESCHEMAS_PATH = "/apis/apis.kcp.io/v1alpha1/apiresourceschemas"

# Query parameters a list, a watch and a write pass on; the label selector is rebuilt, never copied.
_READ_PARAMS = (
    "fieldSelector",
    "limit",
    "continue",
    "resourceVersion",
    "resourceVersionMatch",
    "timeoutSeconds",
    "allowWatchBookmarks",
    "sendInitialEvents",
)
_WRITE_PARAMS = ("dryRun", "fieldManager", "fieldValidation")
_DELETE_PARAMS = ("dryRun", "gracePeriodSeconds", "propagationPolicy", "orphanDependents")

_JSON = "application/json"
#: Transformed watch lines kept for the other watches of the same SyncTarget.
_EVENT_MEMO = 256


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _status_response(error: StatusError) -> web.Response:
    return web.Response(status=error.code, body=_dumps(error.body), content_type=_JSON)


def _transform_error(exc: TransformError) -> StatusError:
    return StatusError(exc.status())


def _go_map(labels: Mapping[str, str]) -> str:
    # How Go's fmt prints a map[string]string: keys sorted, "k:v" pairs separated by spaces.
    return "map[" + " ".join(f"{k}:{labels[k]}" for k in sorted(labels)) + "]"


# What the read transformation acts on.  A backing list whose bytes contain none of these is shown
# to the syncer as it is: no finalizers, deletion timestamp, status or per-target annotations means the
# view of every item is the item itself, and the list is passed on without being decoded and encoded
# again (the two cost most of a list through the workspace).  A false hit only costs the slow path.
_READ_MARKERS = tuple(
    marker.encode()
    for marker in (
        '"finalizers"',
        '"deletionTimestamp"',
        '"status"',
        PREFIX_SYNCER_DIFF_ANNOTATION,
        PREFIX_SPEC_DIFF_ANNOTATION,
        PREFIX_DELETION_ANNOTATION,
        ANNOTATION_SUMMARIZING,
    )
)


def _read_unchanged(body: bytes) -> bool:
    """Whether the read transformation leaves every object of ``body`` as it is."""
    return not any(marker in body for marker in _READ_MARKERS)


def _metadata_of(obj: Mapping[str, Any]) -> dict[str, Any]:
    # The parts of metadata the write transformation changes.
    meta = obj.get("metadata") or {}
    return {
        "labels": meta.get("labels") or {},
        "annotations": meta.get("annotations") or {},
        "finalizers": meta.get("finalizers") or [],
    }


@dataclass(frozen=True)
class WorkspaceOptions:
    """What the server is told: the cluster of unannotated objects and the auth cache bounds."""

    default_cluster: str = "root"
    auth_cache_ttl: float = 10.0
    auth_cache_size: int = 1024
    informer_absent_retry: float = 5.0


@dataclass(frozen=True)
class _Call:
    """One accepted request, after the path and authorization checks."""

    vw: VWPath
    request: ResourceRequest
    resource: ServedResource
    verb: str

    @property
    def requirement(self) -> str:
        value = UPSYNC if self.vw.service == "upsyncer" else SYNC
        return f"{state_label(self.vw.key)}={value}"

    def visible(self, obj: Mapping[str, Any], default_cluster: str) -> bool:
        """Whether ``obj`` is in this workspace: the state label and, unless ``*``, the cluster."""
        labels = (obj.get("metadata") or {}).get("labels") or {}
        value = UPSYNC if self.vw.service == "upsyncer" else SYNC
        if labels.get(state_label(self.vw.key)) != value:
            return False
        return self.vw.cluster == "*" or cluster_of(obj, default_cluster) == self.vw.cluster

    def not_found(self) -> StatusError:
        return errors.not_found(self.request.group, self.request.plural, self.request.name)


class VirtualWorkspace:
    """The aiohttp application and what it keeps: the backend, the auth cache and the informers."""

    def __init__(self, configuration: Any, options: WorkspaceOptions | None = None) -> None:
        self.options = options or WorkspaceOptions()
        self.backend = Backend(configuration)
        self.authorizer = Authorizer(
            self.backend, ttl=self.options.auth_cache_ttl, size=self.options.auth_cache_size
        )
        retry = self.options.informer_absent_retry
        # Without the SyncTarget API the workspaces have nothing to serve: they stay not started.
        self.targets = Informer(self.backend, SYNCTARGETS_PATH, absent_retry=retry, absent_ok=False)
        self.exports = Informer(self.backend, APIEXPORTS_PATH, absent_retry=retry)
        self.schemas = Informer(self.backend, APIRESOURCESCHEMAS_PATH, absent_retry=retry)
        self._tasks: list[asyncio.Task[None]] = []
        self._served: dict[tuple[str, str], tuple[tuple[Any, ...], ServedAPIs]] = {}
        self._watches: set[aiohttp.ClientResponse] = set()
        self._events: OrderedDict[tuple[str, str, str, bytes], tuple[bytes | None, bool]] = OrderedDict()
        self.shared = SharedWatches(self.backend)

    # --- lifecycle ----------------------------------------------------------------------------------

    def app(self) -> web.Application:
        """The application: one catch-all route; startup starts the informers, shutdown ends watches."""
        app = web.Application(client_max_size=3 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        app.on_startup.append(self._startup)
        app.on_shutdown.append(self._shutdown)
        app.on_cleanup.append(self._cleanup)
        return app

    async def _startup(self, app: web.Application) -> None:
        await self.backend.start()
        for informer in (self.targets, self.exports, self.schemas):
            self._tasks.append(asyncio.get_running_loop().create_task(informer.run()))

    async def _shutdown(self, app: web.Application) -> None:
        # Open watches end as their backing stream closes; each handler then finishes its response.
        for response in list(self._watches):
            response.close()
        await self.shared.stop()

    async def _cleanup(self, app: web.Application) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.backend.close()

    @property
    def started(self) -> bool:
        """True once the first SyncTarget list has been read."""
        return self.targets.synced.is_set()

    # --- lookups ------------------------------------------------------------------------------------

    def target(self, cluster: str, name: str) -> Obj | None:
        """The SyncTarget ``name`` of logical cluster ``cluster``, from the cache."""
        obj = self.targets.objects.get(name)
        if obj is None or cluster_of(obj, self.options.default_cluster) != cluster:
            return None
        return obj

    def served(self, vw: VWPath, target: Obj) -> ServedAPIs:
        """The APIs ``target`` is served in ``vw``'s workspace, recomputed only when an input changes."""
        version = (
            (target.get("metadata") or {}).get("resourceVersion"),
            self.exports.generation,
            self.schemas.generation,
        )
        key = (vw.service, vw.key)
        cached = self._served.get(key)
        if cached is not None and cached[0] == version:
            return cached[1]
        apis = served_apis(
            target,
            list(self.exports.objects.values()),
            list(self.schemas.objects.values()),
            vw.service,
            cluster=vw.target_cluster,
            default_cluster=self.options.default_cluster,
        )
        self._served[key] = (version, apis)
        return apis

    # --- the request path ---------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Every request: the checks in order, then the API call; failures are Status bodies."""
        try:
            return await self._handle(request)
        except StatusError as exc:
            return _status_response(exc)
        except TransformError as exc:
            return _status_response(_transform_error(exc))
        except BackendUnreachable as exc:
            return _status_response(errors.unavailable(str(exc)))

    async def _authenticate(self, request: web.Request) -> Caller:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise errors.unauthorized()
        try:
            caller = await self.authorizer.authenticate(token.strip())
        except ReviewFailed as exc:
            log.warning("token review failed", extra={"error": str(exc)})
            raise errors.unauthorized() from None
        if caller is None:
            raise errors.unauthorized()
        return caller

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        caller = await self._authenticate(request)
        if not self.started:
            raise errors.not_started()
        # Decoded, as Go's url.Path is: clients escape the wildcard cluster as %2A.
        path = request.path
        try:
            vw = parse_vw_path(path, request.raw_path.partition("?")[0])
            target = self.target(vw.target_cluster, vw.target_name)
            check_target(vw, target)
        except PathRefused as exc:
            return web.Response(status=404, body=_dumps(not_found_status(str(exc))), content_type=_JSON)
        assert target is not None  # check_target refused a missing one  # noqa: S101
        api = parse_api_path(vw.api_path)
        watch = request.query.get("watch", "") in ("true", "1")
        if not await self.authorizer.may_sync(caller, vw.target_name):
            raise self._forbidden(caller, request.method, vw, api, watch)
        served = self.served(vw, target)
        if isinstance(api, Discovery):
            return self._discovery(request, served, api)
        if api is None:
            raise errors.not_found_path()
        resource = served.resource(api.group, api.version, api.plural)
        if resource is None or (api.subresource and api.subresource not in resource.subresources):
            raise errors.not_found_path()
        if bool(api.namespace) and not resource.namespaced:
            raise errors.not_found_path()
        if api.name and resource.namespaced and not api.namespace:
            raise errors.not_found_path()
        verb = verb_of(request.method, api, watch)
        allowed = resource.subresource_verbs(api.subresource) if api.subresource else resource.verbs
        if verb not in allowed:
            raise errors.method_not_allowed()
        call = _Call(vw, api, resource, verb)
        handler: Callable[[web.Request, _Call], Awaitable[web.StreamResponse]] = getattr(self, f"_{verb}")
        return await handler(request, call)

    def _forbidden(
        self, caller: Caller, method: str, vw: VWPath, api: Discovery | ResourceRequest | None, watch: bool
    ) -> StatusError:
        if isinstance(api, ResourceRequest):
            verb = verb_of(method, api, watch) or method.lower()
            return errors.forbidden(
                caller.name, verb, api.group, api.plural, api.subresource, api.name, api.namespace
            )
        body = errors.status(
            403,
            f"forbidden: User {json.dumps(caller.name)} cannot {method.lower()} "
            f"path {json.dumps(vw.api_path)}",
        )
        return StatusError(body)

    # --- discovery ----------------------------------------------------------------------------------

    def _discovery(self, request: web.Request, served: ServedAPIs, api: Discovery) -> web.Response:
        if request.method not in ("GET", "HEAD"):
            raise errors.method_not_allowed()
        doc: Obj | None
        if not api.version and not (api.group and not api.legacy):
            # /api or /apis: the aggregated form when the client asks for it first.
            if wants_aggregated(request.headers.get("Accept", "")):
                body = _dumps(served.aggregated(core=api.legacy))
                return web.Response(body=body, headers={"Content-Type": AGGREGATED_DISCOVERY_MEDIA_TYPE})
            doc = served.api_versions(request.host) if api.legacy else served.api_group_list()
        elif not api.version:
            doc = served.api_group(api.group)
        else:
            doc = served.resource_list(api.group, api.version)
        if doc is None:
            raise errors.not_found_path()
        return web.Response(body=_dumps(doc), content_type=_JSON)

    # --- reads --------------------------------------------------------------------------------------

    def _view(self, call: _Call, obj: Obj) -> Obj:
        if call.vw.service == "upsyncer":
            return obj
        return to_syncer(obj, call.vw.key)

    async def _backing_json(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any, bytes]:
        reply = await self.backend.request(method, path, **kwargs)
        try:
            data = json.loads(reply.body) if reply.body else None
        except ValueError:
            data = None
        return reply.status, data, reply.body

    @staticmethod
    def _passthrough(status: int, body: bytes) -> web.Response:
        return web.Response(status=status, body=body, content_type=_JSON)

    async def _stored(self, call: _Call, *, filtered: bool = True) -> Obj:
        """The backing object of ``call`` (main resource); 404 when missing or not in the workspace.

        ``filtered=False`` is for the syncer's writes: they are judged by the write transformation,
        which refuses an object not assigned to the target with its own message, so only a missing
        object or one of another cluster is 404 then.
        """
        path = ResourceRequest(
            call.request.group,
            call.request.version,
            call.request.plural,
            call.request.namespace,
            call.request.name,
        ).backing_path()
        status, data, body = await self._backing_json("GET", path)
        if status == 404:
            raise call.not_found()
        if status != 200 or not isinstance(data, dict):
            text = body.decode("utf-8", "replace")
            raise StatusError(
                data if isinstance(data, dict) and "code" in data else errors.status(status, text)
            )
        if filtered and not call.visible(data, self.options.default_cluster):
            raise call.not_found()
        if call.vw.cluster != "*" and cluster_of(data, self.options.default_cluster) != call.vw.cluster:
            raise call.not_found()
        return data

    async def _get(self, request: web.Request, call: _Call) -> web.Response:
        status, data, body = await self._backing_json("GET", call.request.backing_path())
        if status == 404:
            raise call.not_found()
        if status != 200 or not isinstance(data, dict):
            return self._passthrough(status, body)
        if not call.visible(data, self.options.default_cluster):
            raise call.not_found()
        return web.Response(body=_dumps(self._view(call, data)), content_type=_JSON)

    def _read_query(self, request: web.Request, call: _Call) -> dict[str, str]:
        query = {k: request.query[k] for k in _READ_PARAMS if k in request.query}
        selector = request.query.get("labelSelector", "")
        query["labelSelector"] = f"{call.requirement},{selector}" if selector else call.requirement
        return query

    async def _list(self, request: web.Request, call: _Call) -> web.Response:
        query = self._read_query(request, call)
        reply = await self.backend.request("GET", call.request.backing_path(), query=query)
        named = call.vw.cluster != "*"
        if reply.status != 200 or (
            not named and (call.vw.service == "upsyncer" or _read_unchanged(reply.body))
        ):
            return self._passthrough(reply.status, reply.body)
        data = json.loads(reply.body)
        default = self.options.default_cluster
        items = [
            item
            for item in data.get("items") or []
            if not named or cluster_of(item, default) == call.vw.cluster
        ]
        if call.vw.service == "syncer":
            items = [to_syncer(item, call.vw.key) for item in items]
        data["items"] = items
        return web.Response(body=_dumps(data), content_type=_JSON)

    def _client_filter(self, request: web.Request, call: _Call) -> ClientFilter | None:
        """What a client watch sees of its shared backing watch; None when only the apiserver can say.

        Selectors the shared watch cannot evaluate as the apiserver would (a malformed one, whose error
        the apiserver words, or a field other than name and namespace) go to a backing watch of their own.
        """
        if "sendInitialEvents" in request.query:
            return None
        try:
            labels = parse_selector(request.query.get("labelSelector", ""))
            fields = parse_field_selector(request.query.get("fieldSelector", ""))
        except SelectorError:
            return None
        # The backing watch already holds to the state requirement: a client repeating it (a syncer
        # does) need not have it checked again for every event.
        labels = Selector(tuple(r for r in labels.requirements if str(r) != call.requirement))
        namespace = call.request.namespace
        cluster = call.vw.cluster
        default = self.options.default_cluster

        def accepts(obj: Obj) -> bool:
            meta = obj.get("metadata") or {}
            return (
                (not namespace or meta.get("namespace") == namespace)
                and labels.matches(meta.get("labels"))
                and (fields.empty or fields.matches(obj))
                and (cluster == "*" or cluster_of(obj, default) == cluster)
            )

        bookmarks = request.query.get("allowWatchBookmarks", "") in ("true", "1")
        return ClientFilter(accepts, bookmarks)

    def _renderer(self, call: _Call) -> Callable[[str, Obj], bytes]:
        def render(kind: str, obj: Obj) -> bytes:
            try:
                view = self._view(call, obj)
            except TransformError as exc:
                return _dumps({"type": "ERROR", "object": _transform_error(exc).body}) + b"\n"
            return _dumps({"type": kind, "object": view}) + b"\n"

        return render

    async def _watch(self, request: web.Request, call: _Call) -> web.StreamResponse:
        client = self._client_filter(request, call)
        rv = request.query.get("resourceVersion", "")
        since: int | None = None
        if rv not in ("", "0"):
            try:
                since = int(rv)
            except ValueError:
                client = None  # the apiserver's own words for a malformed resourceVersion
        if client is None:
            return await self._proxied_watch(request, call)
        collection = ResourceRequest(call.request.group, call.request.version, call.request.plural)
        shared = self.shared.get(collection.backing_path(), call.requirement, self._renderer(call))
        subscriber = await shared.subscribe(client, since, wait=self.backend.timeout)
        if subscriber is None:
            return await self._proxied_watch(request, call)
        try:
            return await self._stream(request, subscriber, self._watch_seconds(request))
        finally:
            shared.unsubscribe(subscriber)

    @staticmethod
    def _watch_seconds(request: web.Request) -> float:
        # Without timeoutSeconds the apiserver ends a watch after 30 to 60 minutes, so that clients
        # spread their re-watches instead of all coming back at once.
        try:
            return max(0.0, float(request.query["timeoutSeconds"]))
        except (KeyError, ValueError):
            return 1800.0 * (1 + random.random())  # noqa: S311 - spreading, not crypto

    async def _stream(
        self, request: web.Request, subscriber: Subscriber, seconds: float
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": _JSON})
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            async with asyncio.timeout(seconds):
                while lines := await subscriber.next_lines():
                    await response.write(b"".join(lines))
        except TimeoutError:
            pass
        except ConnectionResetError:
            return response
        if subscriber.reason:
            log.info("watch ended", extra={"reason": subscriber.reason})
        with contextlib.suppress(ConnectionResetError):
            await response.write_eof()
        return response

    async def _proxied_watch(self, request: web.Request, call: _Call) -> web.StreamResponse:
        query = self._read_query(request, call)
        query["watch"] = "true"
        async with self.backend.stream(call.request.backing_path(), query) as upstream:
            if upstream.status != 200:
                return self._passthrough(upstream.status, await upstream.read())
            self._watches.add(upstream)
            try:
                return await self._relay(request, call, upstream)
            finally:
                self._watches.discard(upstream)

    def _event(self, call: _Call, line: bytes) -> tuple[bytes | None, bool]:
        """The line to send for one backing event (None to skip it), and whether the watch must end.

        Every watch of a SyncTarget receives the same backing lines, so a transformed line is kept for
        the next watch that gets it: one event written upstream costs one transformation, not one per
        open watch.
        """
        line = line if line.endswith(b"\n") else line + b"\n"
        unchanged = call.vw.service == "upsyncer" or _read_unchanged(line)
        if call.vw.cluster == "*" and b'"ERROR"' not in line and unchanged:
            return line, False
        memo_key = (call.vw.service, call.vw.key, call.vw.cluster, line)
        known = self._events.get(memo_key)
        if known is None:
            known = self._events[memo_key] = self._transform_event(call, line)
            if len(self._events) > _EVENT_MEMO:
                self._events.popitem(last=False)
        return known

    def _transform_event(self, call: _Call, line: bytes) -> tuple[bytes | None, bool]:
        event = json.loads(line)
        kind = event.get("type")
        obj = event.get("object")
        if kind in ("BOOKMARK", "ERROR") or not isinstance(obj, dict):
            return line, kind == "ERROR"
        if call.vw.cluster != "*" and cluster_of(obj, self.options.default_cluster) != call.vw.cluster:
            return None, False
        try:
            view = self._view(call, obj)
        except TransformError as exc:
            return _dumps({"type": "ERROR", "object": _transform_error(exc).body}) + b"\n", True
        return _dumps({"type": kind, "object": view}) + b"\n", False

    async def _relay(
        self, request: web.Request, call: _Call, upstream: aiohttp.ClientResponse
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": _JSON})
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            while line := await upstream.content.readline():
                if not line.strip():
                    continue
                out, end = self._event(call, line)
                if out is not None:
                    await response.write(out)
                if end:
                    break
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            # The backing watch broke (or sent garbage): end this one cleanly; the client re-watches.
            log.info("watch ended by the backing apiserver", extra={"error": str(exc) or type(exc).__name__})
        with contextlib.suppress(ConnectionResetError):
            await response.write_eof()
        return response

    # --- writes -------------------------------------------------------------------------------------

    async def _body(self, request: web.Request) -> Obj:
        raw = await request.read()
        try:
            obj = json.loads(raw)
        except ValueError as exc:
            raise errors.bad_request(f"the request body is not valid JSON: {exc}") from None
        if not isinstance(obj, dict):
            raise errors.bad_request("the request body is not a JSON object")
        return obj

    def _check_upsync_labels(self, call: _Call, obj: Mapping[str, Any]) -> None:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        if labels.get(state_label(call.vw.key)) != UPSYNC:
            raise errors.bad_request(
                f"label selector {json.dumps(call.requirement)} does not match labels {_go_map(labels)}"
            )

    def _write_query(self, request: web.Request) -> dict[str, str]:
        return {k: request.query[k] for k in _WRITE_PARAMS if k in request.query}

    async def _syncer_write(
        self, request: web.Request, call: _Call, stored: Obj, incoming: Obj
    ) -> web.Response:
        """The write transformation's writes, in order; the answer is the view of the last one."""
        writes = plan_writes(
            stored,
            incoming,
            call.vw.key,
            call.request.subresource or None,
            resource=call.request.plural,
            group=call.request.group,
        )
        response: web.Response | None = None
        previous: Obj | None = None
        for write in writes:
            body = write.body
            if previous is not None:
                body["metadata"]["resourceVersion"] = previous["metadata"]["resourceVersion"]
            response, previous = await self._put(request, call, body, write.subresource or "")
            if previous is None:
                return response
            if write.subresource and _metadata_of(previous) != _metadata_of(body):
                # A status write may drop metadata (custom resources keep only status there), yet the
                # target's overrides and finalizer live in metadata: write them on the object itself.
                fixed = {**previous, "metadata": {**previous["metadata"], **_metadata_of(body)}}
                response, previous = await self._put(request, call, fixed, "")
                if previous is None:
                    return response
        assert response is not None  # plan_writes returns at least one write  # noqa: S101
        return response

    async def _put(
        self, request: web.Request, call: _Call, obj: Obj, subresource: str | None = None
    ) -> tuple[web.Response, Obj | None]:
        """PUT ``obj`` (on ``subresource``, else the request's own); the answer and the object written."""
        target = call.request
        if subresource is not None:
            target = ResourceRequest(
                target.group, target.version, target.plural, target.namespace, target.name, subresource
            )
        status, data, body = await self._backing_json(
            "PUT",
            target.backing_path(),
            query=self._write_query(request),
            body=_dumps(obj),
            content_type=_JSON,
        )
        if status >= 300 or not isinstance(data, dict):
            return self._passthrough(status, body), None
        return web.Response(status=status, body=_dumps(self._view(call, data)), content_type=_JSON), data

    def _check_name(self, call: _Call, obj: Mapping[str, Any]) -> None:
        name = (obj.get("metadata") or {}).get("name")
        if name != call.request.name:
            raise errors.bad_request(
                f"the name of the object ({name}) does not match the name on the URL ({call.request.name})"
            )

    async def _update(self, request: web.Request, call: _Call) -> web.Response:
        incoming = await self._body(request)
        self._check_name(call, incoming)
        if call.vw.service == "upsyncer":
            self._check_upsync_labels(call, incoming)
            return (await self._put(request, call, upsyncer_from_client(incoming, call.vw.key)))[0]
        stored = await self._stored(call, filtered=False)
        return await self._syncer_write(request, call, stored, incoming)

    async def _patch(self, request: web.Request, call: _Call) -> web.Response:
        stored = await self._stored(call)
        content_type = request.headers.get("Content-Type", "").partition(";")[0].strip()
        view = self._view(call, stored)
        patched = apply_patch(view, await request.read(), content_type, builtin=not call.request.group)
        if call.vw.service == "upsyncer":
            self._check_upsync_labels(call, patched)
            return (await self._put(request, call, upsyncer_from_client(patched, call.vw.key)))[0]
        return await self._syncer_write(request, call, stored, patched)

    async def _create(self, request: web.Request, call: _Call) -> web.Response:
        incoming = await self._body(request)
        self._check_upsync_labels(call, incoming)
        obj = upsyncer_from_client(incoming, call.vw.key)
        status, _data, body = await self._backing_json(
            "POST",
            call.request.backing_path(),
            query=self._write_query(request),
            body=_dumps(obj),
            content_type=_JSON,
        )
        return self._passthrough(status, body)

    async def _delete(self, request: web.Request, call: _Call) -> web.Response:
        stored = await self._stored(call)
        raw = await request.read()
        options: Obj = {}
        if raw.strip():
            try:
                options = json.loads(raw)
            except ValueError as exc:
                raise errors.bad_request(f"the request body is not valid JSON: {exc}") from None
        # Delete the object that was checked, not one recreated under the same name since.
        options.setdefault("preconditions", {}).setdefault("uid", stored["metadata"].get("uid"))
        options.setdefault("kind", "DeleteOptions")
        options.setdefault("apiVersion", "v1")
        query = {k: request.query[k] for k in _DELETE_PARAMS if k in request.query}
        status, _data, body = await self._backing_json(
            "DELETE", call.request.backing_path(), query=query, body=_dumps(options), content_type=_JSON
        )
        return self._passthrough(status, body)


class VirtualWorkspaceServer:
    """The virtual workspaces on ``host:port`` over TLS, in a thread with its own event loop."""

    def __init__(
        self,
        configuration: Any,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None,
        options: WorkspaceOptions | None = None,
    ) -> None:
        self.workspace = VirtualWorkspace(configuration, options)
        self.host = host
        self.port = port
        self._ssl = ssl_context
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._listener: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @staticmethod
    def tls_context(cert_file: str, key_file: str, *, check_interval: float = 1.0) -> ssl.SSLContext:
        """A server context for a certificate and key (from ``tmc-certs``) that follows the files.

        A rotated pair is picked up without a restart: every new handshake is switched (in the SNI
        callback, which runs for every ClientHello, with or without a server name) to the context
        :class:`~kcp_tmc.certs.reloading.ReloadingTLS` holds, which it reloads once the files changed
        and the new pair loads.  Open connections, watches included, keep the context they began with.
        Raises :class:`~kcp_tmc.certs.reloading.TLSConfigError` for an unusable pair at start.
        """
        follower = ReloadingTLS(cert_file, key_file, check_interval=check_interval)
        front = server_context(cert_file, key_file)

        def switch(connection: Any, server_name: str | None, initial: ssl.SSLContext) -> None:
            connection.context = follower.context()

        front.sni_callback = switch
        return front

    @property
    def url(self) -> str:
        """The base URL clients use."""
        scheme = "https" if self._ssl is not None else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"

    async def _start(self) -> None:
        # shutdown_timeout bounds how long a stop waits for handlers once their watches were closed.
        self._runner = web.AppRunner(self.workspace.app(), access_log=None, shutdown_timeout=5.0)
        await self._runner.setup()
        # The listener is made here rather than by aiohttp's TCPSite for one option: a TLS connection a
        # client keeps open but no longer reads must not hold a stop for asyncio's 30 s TLS shutdown.
        handler_factory = self._runner.server
        assert handler_factory is not None  # set by setup()  # noqa: S101
        self._listener = await asyncio.get_running_loop().create_server(
            handler_factory,
            self.host,
            self.port,
            ssl=self._ssl,
            reuse_address=True,
            ssl_shutdown_timeout=0.2 if self._ssl is not None else None,
        )
        self.port = int(self._listener.sockets[0].getsockname()[1])

    async def _stop(self) -> None:
        if self._listener is not None:
            self._listener.close()
        if self._runner is not None:
            await self._runner.cleanup()
        left = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in left:
            task.cancel()
        await asyncio.gather(*left, return_exceptions=True)
        # Closed TLS transports finish their shutdown exchange (or its timeout) in later iterations.
        await asyncio.sleep(0.3)
        await asyncio.get_running_loop().shutdown_asyncgens()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._start())
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._stop())
        self._loop.close()

    def start(self) -> None:
        """Bind and serve; raises what binding raised (OSError for a port in use)."""
        self._thread = threading.Thread(target=self._run, name="virtual-workspace", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        """Close open watches, stop serving and end the thread."""
        if self._thread is None or not self._thread.is_alive():
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=15)

    def wait_started(self, timeout: float = 10.0) -> bool:
        """Block until the first SyncTarget list has been read; False on timeout."""
        future = asyncio.run_coroutine_threadsafe(self.workspace.targets.synced.wait(), self._loop)
        try:
            future.result(timeout)
        except TimeoutError:
            future.cancel()
            return False
        return True

    def __enter__(self) -> VirtualWorkspaceServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
