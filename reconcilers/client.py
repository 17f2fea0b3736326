"""A small typed client over the ``kubernetes`` package: plain dicts in, plain dicts out.

The reconciler needs a handful of verbs (list, get, create, replace, merge patch, delete and raw GETs of
``/readyz``, ``/version`` and ``/openapi/v3``) on any resource, built-in or custom.  The generated API
classes would deserialize every list into model objects, which is the dominant cost of a 10,000-object
list; this wrapper keeps the ``kubernetes`` configuration, authentication and connection pool, and
parses JSON once into dicts.

Errors are mapped onto three exception classes so that callers decide on behaviour, not on status codes:
:class:`ApiError` (the server answered with an error), :class:`Conflict` and :class:`NotFound` (the two
the reconcilers act on), and :class:`Unreachable` (no answer at all).
"""

from __future__ import annotations

import base64
import codecs
import json
import re
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import urllib3
import yaml
from kubernetes import client as _k8s_client
from kubernetes import config as _k8s_config
from kubernetes.config.config_exception import ConfigException

from kcp_tmc.policies.kinds import api_version_of, group_resource_of
from kcp_tmc.policies.yamlfiles import yaml_problem
from kcp_tmc.reconcilers.gcpause import paused_gc

# The kubernetes package is only partly typed; treat it as untyped at this one boundary.
k8s_client: Any = _k8s_client
k8s_config: Any = _k8s_config

__all__ = [
    "ApiError",
    "Conflict",
    "InvalidKubeconfig",
    "KubeClient",
    "NotFound",
    "Resource",
    "Unreachable",
    "iter_list_items",
]

Obj = dict[str, Any]


class ApiError(Exception):
    """The apiserver answered with an error status; ``reason`` and ``message`` come from its Status body."""

    def __init__(self, status: int, reason: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(f"{status} {reason}: {message}" if message else f"{status} {reason}")
        self.status = status
        self.reason = reason
        self.message = message
        #: Seconds the server asked us to wait (``details.retryAfterSeconds`` of a 429 or 5xx).
        self.retry_after = retry_after


class NotFound(ApiError):
    """404: the object (or the resource) does not exist."""


class Conflict(ApiError):
    """409: a stale resourceVersion (``Conflict``) or an existing name (``AlreadyExists``)."""


class Unreachable(Exception):
    """No HTTP answer: connection refused, reset, timed out or a TLS failure."""


class InvalidKubeconfig(Exception):
    """The kubeconfig cannot be parsed or names no usable cluster."""


def _yaml_reason(exc: Exception) -> str:
    """Why a kubeconfig does not parse, by line, never quoting it.

    PyYAML's own message prints the offending line, and in a kubeconfig that line is often the
    one with the token or the client key: the reason ends in logs and in a Cluster's status.
    """
    if isinstance(exc, yaml.MarkedYAMLError):
        line, problem = yaml_problem(exc)
        return f"line {line}: {problem}" if line is not None else problem
    return str(exc)


@dataclass(frozen=True)
class Resource:
    """One REST resource: ``group`` is ``""`` for the core group."""

    group: str
    version: str
    plural: str
    namespaced: bool = False
    kind: str = ""

    @property
    def api_version(self) -> str:
        """``group/version``, or ``version`` alone for the core group."""
        return api_version_of(self.group, self.version)

    @property
    def group_resource(self) -> str:
        """``plural.group`` (``plural`` for core), as the apiserver names a resource in messages."""
        return group_resource_of(self.plural, self.group)

    def path(self, name: str | None = None, namespace: str | None = None, subresource: str = "") -> str:
        """The URL path of the collection, or of one object (and its subresource)."""
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{quote(namespace, safe='')}"
        base += f"/{self.plural}"
        if name is not None:
            base += f"/{quote(name, safe='')}"
            if subresource:
                base += f"/{subresource}"
        return base


def _configuration_from_dict(config: Mapping[str, Any], context: str | None = None) -> Any:
    configuration = k8s_client.Configuration()
    try:
        k8s_config.load_kube_config_from_dict(
            dict(config), context=context, client_configuration=configuration, persist_config=False
        )
    except (ConfigException, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InvalidKubeconfig(str(exc) or type(exc).__name__) from exc
    return configuration


class KubeClient:
    """A thread-safe client for one apiserver; counts its own requests for the metrics and benchmarks."""

    def __init__(self, configuration: Any, *, timeout: float = 30.0) -> None:
        # No urllib3-level retries: the engine has its own backoff and must see outages at once.
        configuration.retries = False
        # Pooled reconciles share this client: keep enough connections alive for all of them (the
        # default, five per core, would drop and reopen connections under a wider pool).
        configuration.connection_pool_maxsize = max(configuration.connection_pool_maxsize or 0, 32)
        self._api: Any = k8s_client.ApiClient(configuration=configuration)
        self.host: str = configuration.host
        self._ca_file: str | None = configuration.ssl_ca_cert
        self.timeout = timeout
        self._lock = threading.Lock()
        self._local = threading.local()
        #: Requests sent, and seconds spent waiting for their answers (for metrics and benchmarks).
        self.requests = 0
        self.request_seconds = 0.0

    # --- construction -------------------------------------------------------------------------------

    @classmethod
    def from_kubeconfig_file(
        cls, path: str, *, context: str | None = None, timeout: float = 30.0
    ) -> KubeClient:
        """A client from a kubeconfig file; :class:`InvalidKubeconfig` when it cannot be used."""
        try:
            with open(path, encoding="utf-8") as handle:
                data = yaml.safe_load(handle)
        except (OSError, yaml.YAMLError) as exc:
            raise InvalidKubeconfig(f"{path}: {_yaml_reason(exc)}") from exc
        if not isinstance(data, Mapping):
            raise InvalidKubeconfig(f"{path}: not a kubeconfig mapping")
        return cls(_configuration_from_dict(data, context), timeout=timeout)

    @classmethod
    def from_kubeconfig_text(cls, text: str | bytes, *, timeout: float = 30.0) -> KubeClient:
        """A client from kubeconfig content (a Secret value); :class:`InvalidKubeconfig` when unusable."""
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise InvalidKubeconfig(f"cannot parse kubeconfig: {_yaml_reason(exc)}") from exc
        if not isinstance(data, Mapping):
            raise InvalidKubeconfig("kubeconfig is not a mapping")
        return cls(_configuration_from_dict(data), timeout=timeout)

    @classmethod
    def in_cluster(cls, *, timeout: float = 30.0) -> KubeClient:
        """A client from the pod's service account."""
        configuration = k8s_client.Configuration()
        try:
            k8s_config.load_incluster_config(client_configuration=configuration)
        except ConfigException as exc:
            raise InvalidKubeconfig(str(exc)) from exc
        return cls(configuration, timeout=timeout)

    @property
    def configuration(self) -> Any:
        """The ``kubernetes`` Configuration (host, TLS files, credentials) this client was built from."""
        return self._api.configuration

    @property
    def ca_data(self) -> str | None:
        """The server's CA bundle, base64-encoded as kubeconfigs carry it; None when there is none."""
        if not self._ca_file:
            return None
        try:
            with open(self._ca_file, "rb") as handle:
                return base64.b64encode(handle.read()).decode("ascii")
        except OSError:
            return None

    def close(self) -> None:
        """Close the connection pool."""
        self._api.close()

    def __enter__(self) -> KubeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def deadline(self, seconds: float) -> Iterator[None]:
        """This thread's requests through this client end within ``seconds`` from now, all together.

        Each request's timeout is cut to what is left; once nothing is left a request is not sent and
        raises :class:`Unreachable`.  Other threads and other clients are not affected.
        """
        outer = getattr(self._local, "until", None)
        until = time.monotonic() + seconds
        self._local.until = until if outer is None else min(outer, until)
        try:
            yield
        finally:
            self._local.until = outer

    # --- raw requests ---------------------------------------------------------------------------------

    def _send(
        self, method: str, path: str, body: Any, content_type: str, timeout: float | None
    ) -> tuple[Any, float]:
        """Send one request; the response with its body unread, and when the request started."""
        limit = timeout or self.timeout
        until = getattr(self._local, "until", None)
        if until is not None:
            left = until - time.monotonic()
            if left <= 0:
                raise Unreachable(f"{method} {self.host}{path}: deadline exceeded, request not sent")
            limit = min(limit, left)
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        _, url, headers, _, _ = self._api.param_serialize(
            method=method, resource_path=path, header_params=headers, auth_settings=["BearerToken"]
        )
        with self._lock:
            self.requests += 1
        started = time.perf_counter()
        try:
            response: Any = self._api.call_api(
                method, url, header_params=headers, body=body, _request_timeout=limit
            )
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise Unreachable(f"{method} {self.host}{path}: {exc}") from exc
        except k8s_client.ApiException as exc:  # the REST layer raises it for TLS failures only
            raise Unreachable(f"{method} {self.host}{path}: {exc.reason}") from exc
        return response, started

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float | None = None,
    ) -> bytes:
        """One HTTP request; the response body on 2xx, else :class:`ApiError` / :class:`Unreachable`."""
        if query:
            path = f"{path}?{urlencode(query)}"
        response, started = self._send(method, path, body, content_type, timeout)
        try:
            data: bytes = response.read()
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise Unreachable(f"{method} {self.host}{path}: {exc}") from exc
        finally:
            response.response.release_conn()
            with self._lock:
                self.request_seconds += time.perf_counter() - started
        if response.status >= 300:
            raise _error_from(response.status, data)
        return data

    def _body_chunks(self, response: Any, path: str, started: float) -> Iterator[bytes]:
        """The body of ``response`` in pieces of at most 1 MiB; time spent waiting for them is counted."""
        raw = response.response
        done = False
        try:
            while True:
                try:
                    chunk: bytes = raw.read(_CHUNK)
                except (urllib3.exceptions.HTTPError, OSError) as exc:
                    raise Unreachable(f"GET {self.host}{path}: {exc}") from exc
                finally:
                    with self._lock:
                        self.request_seconds += time.perf_counter() - started
                if not chunk:
                    done = True
                    return
                yield chunk
                started = time.perf_counter()
        finally:
            # A body read to its end gives the connection back; one abandoned halfway is closed.
            if done:
                raw.release_conn()
            else:
                raw.close()

    def get_json(self, path: str, *, timeout: float | None = None) -> Any:
        """GET a path and parse the JSON body."""
        return json.loads(self.request("GET", path, timeout=timeout))

    def get_text(self, path: str, *, timeout: float | None = None) -> str:
        """GET a path (``/readyz``) and return the body as text."""
        return self.request("GET", path, timeout=timeout).decode("utf-8", "replace")

    # --- object verbs ---------------------------------------------------------------------------------

    def list(
        self,
        resource: Resource,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
    ) -> tuple[list[Obj], str]:
        """All objects of ``resource`` in one request, and the list's resourceVersion."""
        query = {"labelSelector": label_selector} if label_selector else None
        body = self.request("GET", resource.path(namespace=namespace), query=query)
        with paused_gc():
            data = json.loads(body)
        items: list[Obj] = data.get("items") or []
        for item in items:
            # Lists omit apiVersion/kind on items; put them back so objects look the same as from a GET.
            item.setdefault("apiVersion", resource.api_version)
            if resource.kind:
                item.setdefault("kind", resource.kind)
        return items, str((data.get("metadata") or {}).get("resourceVersion", ""))

    def iter_list(self, resource: Resource) -> Iterator[Obj]:
        """All objects of ``resource`` in one request, parsed one at a time.

        For kinds with very many objects (workloads): the body is read and parsed in pieces, so
        neither it nor the parsed list ever exists as a whole and memory follows one object, not the
        list; items lack ``apiVersion`` and ``kind``.
        """
        path = resource.path()
        response, started = self._send("GET", path, None, "application/json", None)
        if response.status >= 300:
            data = b"".join(self._body_chunks(response, path, started))
            raise _error_from(response.status, data)
        with paused_gc():
            yield from iter_list_items(self._body_chunks(response, path, started))

    def get(self, resource: Resource, name: str, *, namespace: str | None = None) -> Obj:
        """One object; :class:`NotFound` when absent."""
        obj: Obj = json.loads(self.request("GET", resource.path(name, namespace)))
        return obj

    def create(self, resource: Resource, obj: Mapping[str, Any], *, namespace: str | None = None) -> Obj:
        """Create; :class:`Conflict` (AlreadyExists) when the name is taken."""
        created: Obj = json.loads(self.request("POST", resource.path(namespace=namespace), body=dict(obj)))
        return created

    def replace(self, resource: Resource, obj: Mapping[str, Any], *, subresource: str = "") -> Obj:
        """PUT the whole object; :class:`Conflict` when its resourceVersion is stale."""
        meta = obj["metadata"]
        path = resource.path(meta["name"], meta.get("namespace"), subresource)
        replaced: Obj = json.loads(self.request("PUT", path, body=dict(obj)))
        return replaced

    def merge_patch(
        self,
        resource: Resource,
        name: str,
        patch: Mapping[str, Any],
        *,
        namespace: str | None = None,
        subresource: str = "",
    ) -> Obj:
        """One JSON merge patch (RFC 7386) on the object or its subresource."""
        path = resource.path(name, namespace, subresource)
        body = self.request("PATCH", path, body=dict(patch), content_type="application/merge-patch+json")
        patched: Obj = json.loads(body)
        return patched

    def delete(self, resource: Resource, name: str, *, namespace: str | None = None) -> None:
        """Delete (background propagation); a missing object is not an error."""
        with suppress(NotFound):
            self.request(
                "DELETE",
                resource.path(name, namespace),
                body={"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"},
            )


_DECODER = json.JSONDecoder()
_SPACE = re.compile(r"[ \t\n\r]*")
_CHUNK = 1 << 20


class _Text:
    """The not yet parsed part of a JSON text arriving in pieces."""

    def __init__(self, pieces: Iterable[bytes | str]) -> None:
        self._pieces = iter(pieces)
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self.text = ""
        self.at = 0
        self._consumed = 0
        self._eof = False

    def _more(self) -> bool:
        """Append the next piece (dropping what was parsed); False at the end."""
        while not self._eof:
            piece = next(self._pieces, None)
            if piece is None:
                self._eof = True
                decoded = self._decoder.decode(b"", final=True)
            else:
                decoded = piece if isinstance(piece, str) else self._decoder.decode(piece)
            if decoded:
                self._consumed += self.at
                self.text = self.text[self.at :] + decoded
                self.at = 0
                return True
        return False

    def peek(self) -> str:
        """The next character that is not white space; ``""`` at the end."""
        while True:
            match = _SPACE.match(self.text, self.at)
            self.at = match.end() if match else self.at
            if self.at < len(self.text):
                return self.text[self.at]
            if not self._more():
                return ""

    def expect(self, chars: str) -> str:
        found = self.peek()
        if not found or found not in chars:
            offset = self._consumed + self.at
            raise ValueError(f"malformed list at offset {offset}: expected one of {chars!r}")
        return found

    def value(self) -> Any:
        """The next JSON value, by the C decoder; waits for more pieces while it is incomplete."""
        self.peek()
        while True:
            try:
                value, end = _DECODER.raw_decode(self.text, self.at)
            except json.JSONDecodeError:
                if self._more():
                    continue
                raise
            if end == len(self.text) and self._more():
                continue  # a number may go on in the next piece
            self.at = end
            return value


def iter_list_items(pieces: str | Iterable[bytes | str]) -> Iterator[Obj]:
    """The ``items`` of a serialized List, one parsed object at a time (:class:`ValueError` if malformed).

    ``pieces`` is the text, or the body in pieces as it arrives.  Only the top level is walked here;
    each value is parsed by the C decoder.
    """
    reader = _Text([pieces] if isinstance(pieces, str) else pieces)
    reader.expect("{")
    reader.at += 1
    if reader.peek() == "}":
        return
    while True:
        reader.expect('"')
        key = reader.value()
        reader.expect(":")
        reader.at += 1
        if key == "items" and reader.peek() == "[":
            reader.at += 1
            if reader.peek() == "]":
                reader.at += 1
            else:
                while True:
                    yield reader.value()
                    if reader.expect(",]") == "]":
                        reader.at += 1
                        break
                    reader.at += 1
        else:
            reader.value()
        if reader.expect(",}") == "}":
            return
        reader.at += 1


def _error_from(status: int, data: bytes) -> ApiError:
    reason, message = "", ""
    retry_after: float | None = None
    try:
        body = json.loads(data)
        if isinstance(body, Mapping):
            reason = str(body.get("reason") or "")
            message = str(body.get("message") or "")
            details = body.get("details")
            if isinstance(details, Mapping) and isinstance(details.get("retryAfterSeconds"), int):
                retry_after = float(details["retryAfterSeconds"])
    except ValueError:
        message = data[:200].decode("utf-8", "replace")
    if status == 404:
        return NotFound(status, reason or "NotFound", message)
    if status == 409:
        return Conflict(status, reason or "Conflict", message)
    return ApiError(status, reason or "Error", message, retry_after)


@contextmanager
def client_from_kubeconfig_text(text: str | bytes, *, timeout: float = 30.0) -> Iterator[KubeClient]:
    """A :class:`KubeClient` for kubeconfig content, closed on exit."""
    client = KubeClient.from_kubeconfig_text(text, timeout=timeout)
    try:
        yield client
    finally:
        client.close()
