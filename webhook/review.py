"""The review path: from a WSGI environ to the bytes of the answer.

:class:`ReviewService` is the one implementation; it is reached either through
:class:`ReviewDispatcher`, a thin WSGI layer in front of Flask that serves the four review
routes itself (the default, it saves most of Flask's per-request cost), or through the
``review`` blueprint's views (``fast_path=False``).  Both give byte-identical answers.

What the path does, in order, and nothing more: check the method, content type and length;
read the body (never more than the limit); ``json.loads`` it once; check the envelope
(:func:`~kcp_tmc.policies.reviews.parse_review`); skip kinds no policy handles; evaluate with the
apiserver's deadline; ``json.dumps`` the answer once.  No copies of the object, no diffing.

Bad input gets a ``metav1.Status``-shaped JSON body: 400 (not JSON, not an AdmissionReview, no
``request.uid``), 413 (body over the limit, refused from ``Content-Length`` before reading it),
415 (content type), 404 (unknown policy), 405 (not POST), 408 (the body did not arrive within the
server's read deadline).  Once the uid is known the answer is always a well-formed review with
HTTP 200: an ill-typed field is a denial with code 400, and an unexpected error of this server a
denial with code 500 (never an HTTP 5xx, which the apiserver would hand to ``failurePolicy``; a
bug fails closed, as kopf and Gatekeeper do).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any
from urllib.parse import parse_qs

import gevent
from flask import Blueprint, Response, current_app
from flask import request as flask_request
from gevent.threadpool import ThreadPool

from kcp_tmc.policies.admission import AdmissionRequest, AdmissionResponse
from kcp_tmc.policies.engine import Engine, Outcome, UnknownPolicyError
from kcp_tmc.policies.policy import FailureMode, Lookup, PolicyType, Reserver
from kcp_tmc.policies.reviews import ReviewError, parse_review, review_response
from kcp_tmc.policies.timefmt import parse_go_duration_ns
from kcp_tmc.webhook import slicedjson
from kcp_tmc.webhook.logs import review_log
from kcp_tmc.webhook.metrics import Metrics

__all__ = ["BodyTimeout", "ReviewDispatcher", "ReviewService", "blueprint", "parse_timeout"]

log = logging.getLogger("kcp_tmc.webhook")

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
Answer = tuple[str, list[tuple[str, str]], bytes]

_STATUS_LINE = {
    200: "200 OK",
    400: "400 Bad Request",
    404: "404 Not Found",
    405: "405 Method Not Allowed",
    408: "408 Request Timeout",
    413: "413 Content Too Large",
    415: "415 Unsupported Media Type",
}
_REASON = {
    400: "BadRequest",
    404: "NotFound",
    405: "MethodNotAllowed",
    408: "Timeout",
    413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType",
    500: "InternalError",
}
_READ_STEP = 64 * 1024
# The rest of a refused body is never read, so the connection cannot carry another request.
_CLOSE = [("Connection", "close")]
#: Bodies from this size on are decoded in slices that yield to the worker's event loop, and
#: evaluated on a thread of their own.  Below it the C decoder holds the loop for at most about
#: 15 ms, less than slicing and hand-overs would cost.
OFFLOAD_BYTES = 256 * 1024
#: Longest a large body is decoded before the other connections get a turn.
SLICE_SECONDS = 0.002
_pools: dict[int, ThreadPool] = {}  # by process id


def _offloader() -> Callable[[Callable[[], Any]], Any] | None:
    """Runs a function on this process's thread for large reviews, when on a gevent server's greenlet.

    Elsewhere (Flask's test client, a plain thread) there is no event loop to keep free: ``None``.
    One thread: with one GIL more would not evaluate faster, and every CPU-bound thread makes the
    event loop wait longer for the GIL (later large reviews queue, their deadlines running).  The
    pool is made on first use in each process, so a gunicorn worker never inherits its master's.
    """
    if not isinstance(gevent.getcurrent(), gevent.Greenlet):
        return None
    pid = os.getpid()
    pool = _pools.get(pid)
    if pool is None:
        pool = _pools[pid] = ThreadPool(1)
    apply: Callable[[Callable[[], Any]], Any] = pool.apply
    return apply


def _yield_to_loop() -> None:
    gevent.idle()


class BodyTimeout(Exception):
    """Raised by the server's ``wsgi.input`` when the body has not arrived by the read deadline."""


def parse_timeout(query: str) -> float | None:
    """The ``timeout`` of a query string in seconds, read as Go's ``time.ParseDuration``, else ``None``.

    The apiserver sends ``timeout=10s``; ``500ms`` and ``1m30s`` read too.  Anything unreadable is
    ignored, since refusing a review over its budget hint would be worse than using the default.
    """
    values = parse_qs(query, keep_blank_values=True).get("timeout")
    if not values:
        return None
    try:
        seconds = parse_go_duration_ns(values[0].strip()) / 1e9
    except ValueError:
        return None
    if not 0 < seconds < 3600:
        return None
    return seconds


def error_body(code: int, message: str) -> bytes:
    """A ``metav1.Status`` failure as JSON: the reason for an HTTP error answer."""
    status = {
        "apiVersion": "v1",
        "kind": "Status",
        "status": "Failure",
        "code": code,
        "reason": _REASON.get(code, "BadRequest"),
        "message": message,
    }
    return json.dumps(status, separators=(",", ":")).encode()


def _json_answer(code: int, body: bytes, extra: list[tuple[str, str]] | None = None) -> Answer:
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    if extra:
        headers.extend(extra)
    return _STATUS_LINE[code], headers, body


class _Refused(Exception):
    """An HTTP error answer decided while reading the request."""

    def __init__(self, code: int, message: str, extra: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.extra = extra


@dataclass(frozen=True, slots=True)
class _Judged:
    """A review decoded and evaluated; ``outcome`` is ``None`` for a kind no policy handles or when
    the engine raised ``error``."""

    version: str
    request: AdmissionRequest
    outcome: Outcome | None
    deadline: float
    error: Exception | None = None


@dataclass(frozen=True, slots=True)
class Route:
    """Which review route a path names: validating or mutating, all policies or one."""

    mutating: bool
    policy: str | None

    @property
    def webhook(self) -> str:
        base = "/mutate" if self.mutating else "/validate"
        return f"{base}/{self.policy}" if self.policy else base


def route_of(path: str) -> Route | None:
    """The review route of ``path``, or ``None`` when it is not one."""
    if path.startswith("/validate"):
        mutating, rest = False, path[9:]
    elif path.startswith("/mutate"):
        mutating, rest = True, path[7:]
    else:
        return None
    if not rest:
        return Route(mutating, None)
    if rest[0] != "/" or len(rest) == 1 or "/" in rest[1:]:
        return None
    return Route(mutating, rest[1:])


class ReviewService:
    """Answers AdmissionReviews with an :class:`~kcp_tmc.policies.engine.Engine`.

    ``enabled_kinds`` are the ``(group, kind)`` pairs at least one enabled policy handles;
    reviews of any other kind are allowed unchanged without reaching the engine.  ``reserver``
    writes the quota reservations of an allowed review that is not a dry run (see
    :meth:`_reserve`); without one they are dropped.
    """

    def __init__(
        self,
        engine: Engine,
        metrics: Metrics,
        *,
        enabled_kinds: Iterable[tuple[str, str]],
        max_body_bytes: int,
        default_timeout: float,
        deadline_margin: float,
        lookup: Lookup | None = None,
        reserver: Reserver | None = None,
        log_reviews: bool = True,
        clock: Callable[[], float] = time.monotonic,
        offload_bytes: int = OFFLOAD_BYTES,
    ) -> None:
        self.engine = engine
        self.metrics = metrics
        self.enabled_kinds = frozenset(enabled_kinds)
        self.max_body_bytes = max_body_bytes
        self.default_timeout = default_timeout
        self.deadline_margin = deadline_margin
        self.lookup = lookup
        self.reserver = reserver
        self.log_reviews = log_reviews
        self.clock = clock
        self.offload_bytes = offload_bytes
        self.policy_types: Mapping[str, PolicyType] = {p.name: p.type for p in engine.policies}

    # -- reading ---------------------------------------------------------------------------

    def _read_body(self, environ: Mapping[str, Any]) -> bytes:
        ctype = environ.get("CONTENT_TYPE") or ""
        media = ctype.split(";", 1)[0].strip().lower()
        if media != "application/json":
            got = f"got {ctype!r}" if ctype else "it is missing"
            raise _Refused(415, f"Content-Type must be application/json, {got}")
        stream = environ["wsgi.input"]
        limit = self.max_body_bytes
        length = environ.get("CONTENT_LENGTH")
        try:
            if length:
                try:
                    size = int(length)
                except ValueError:
                    raise _Refused(400, f"Content-Length must be a number of bytes, got {length!r}") from None
                if size < 0:
                    raise _Refused(400, f"Content-Length must be a number of bytes, got {length!r}")
                if size > limit:
                    raise _Refused(413, f"the body is {size} bytes, over the limit of {limit} bytes", _CLOSE)
                body: bytes = stream.read(size)
                if len(body) < size:
                    raise _Refused(400, f"the body ended after {len(body)} of {size} bytes", _CLOSE)
                return body
            # No length: a chunked body.  Read in steps and stop one byte past the limit.
            parts: list[bytes] = []
            total = 0
            while True:
                chunk = stream.read(min(_READ_STEP, limit + 1 - total))
                if not chunk:
                    return b"".join(parts)
                parts.append(chunk)
                total += len(chunk)
                if total > limit:
                    raise _Refused(413, f"the body is over the limit of {limit} bytes", _CLOSE)
        except _Refused:
            raise
        except BodyTimeout as exc:
            raise _Refused(408, str(exc), _CLOSE) from None
        except Exception as exc:  # a reset, a timeout, a malformed chunk: the body is unusable
            raise _Refused(400, f"cannot read the body: {exc or type(exc).__name__}", _CLOSE) from None

    # -- answering -------------------------------------------------------------------------

    def serve(self, environ: Mapping[str, Any], route: Route) -> Answer:
        """The answer to one request on a review route (never raises)."""
        try:
            return self._serve(environ, route)
        except Exception as exc:  # before the uid was known: nothing to echo, so a plain 400
            log.exception("cannot answer a request on %s", route.webhook)
            return _json_answer(
                400, error_body(400, f"cannot handle the request: {type(exc).__name__}"), _CLOSE
            )

    def _serve(self, environ: Mapping[str, Any], route: Route) -> Answer:
        started = self.clock()
        webhook = "/mutate" if route.mutating else "/validate"
        try:
            if environ.get("REQUEST_METHOD") != "POST":
                raise _Refused(405, "send AdmissionReviews with POST", [("Allow", "POST")])
            if route.policy is not None:
                self._check_policy(route)
                webhook = route.webhook
            body = self._read_body(environ)
        except _Refused as refused:
            self.metrics.observe_review(webhook, "", "", "invalid", self.clock() - started)
            return _json_answer(refused.code, error_body(refused.code, refused.message), refused.extra)
        offload = _offloader() if len(body) >= self.offload_bytes else None
        judged = self._judge(environ, route, webhook, body, started, offload)
        if isinstance(judged, tuple):
            return judged
        return self._finish(route, webhook, judged, started)

    def _judge(
        self,
        environ: Mapping[str, Any],
        route: Route,
        webhook: str,
        body: bytes,
        started: float,
        offload: Callable[[Callable[[], Any]], Any] | None,
    ) -> Answer | _Judged:
        """Decode, check the envelope and evaluate: the CPU-bound part, no network I/O.

        An answer when the body is refused; otherwise what :meth:`_finish` needs to answer it.
        With ``offload`` (a large body on the event loop) the body is decoded in slices that let
        the loop serve other connections in between, and the engine runs on the offload thread.
        """
        try:
            data = (
                json.loads(body) if offload is None else slicedjson.loads(body, _yield_to_loop, SLICE_SECONDS)
            )
        except ValueError as exc:  # includes bodies that are not UTF-8
            return self._bad(webhook, started, f"the body is not valid JSON: {exc}")
        except RecursionError:
            return self._bad(webhook, started, "the body is not valid JSON: it is nested too deeply")
        try:
            version, request = parse_review(data)
        except ReviewError as exc:
            if exc.uid is None:
                return self._bad(webhook, started, str(exc))
            # The uid is known, so the apiserver gets an answer it can match.
            response: AdmissionResponse = {
                "uid": exc.uid,
                "allowed": False,
                "status": {"code": 400, "reason": "BadRequest", "message": str(exc)},
            }
            self.metrics.observe_review(webhook, "", "", "invalid", self.clock() - started)
            return self._review(data["apiVersion"], response)
        gvk = request["kind"]
        if (gvk.get("group", ""), gvk["kind"]) not in self.enabled_kinds:
            return _Judged(version, request, None, 0.0)
        budget = parse_timeout(environ.get("QUERY_STRING") or "") or self.default_timeout
        deadline = started + budget - min(self.deadline_margin, budget / 10)
        evaluate = partial(
            self.engine.evaluate,
            request,
            phase="mutate" if route.mutating else "validate",
            policy=route.policy,
            lookup=self.lookup,
            deadline=deadline,
        )
        try:
            outcome: Outcome = evaluate() if offload is None else offload(evaluate)
        except Exception as exc:  # a bug of ours: answered by _finish, closed
            return _Judged(version, request, None, deadline, exc)
        return _Judged(version, request, outcome, deadline)

    def _finish(self, route: Route, webhook: str, judged: _Judged, started: float) -> Answer:
        try:
            if judged.error is not None:
                raise judged.error
            return self._evaluated(route, webhook, judged, started)
        except Exception as exc:  # a bug of ours: answer the review, closed, and say where to look
            uid = judged.request["uid"]
            log.error("internal error answering review %s", uid, extra={"uid": uid}, exc_info=exc)
            response: AdmissionResponse = {
                "uid": uid,
                "allowed": False,
                "status": {
                    "code": 500,
                    "reason": "InternalError",
                    "message": f"internal error in the webhook ({type(exc).__name__}); "
                    f"its log has the details under uid {uid}",
                },
            }
            self.metrics.observe_review(webhook, "", "", "error", self.clock() - started)
            return self._review(judged.version, response)

    def _check_policy(self, route: Route) -> None:
        assert route.policy is not None  # noqa: S101 (an invariant for the type checker, not a check of input)
        ptype = self.policy_types.get(route.policy)
        if ptype is None:
            raise _Refused(404, str(UnknownPolicyError(route.policy, self.policy_types)))
        if (ptype is PolicyType.MUTATING) != route.mutating:
            right = "/mutate" if ptype is PolicyType.MUTATING else "/validate"
            raise _Refused(
                404,
                f"policy {route.policy!r} is a {ptype.value} policy: "
                f"send its reviews to {right}/{route.policy}",
            )

    def _bad(self, webhook: str, started: float, message: str) -> Answer:
        self.metrics.observe_review(webhook, "", "", "invalid", self.clock() - started)
        return _json_answer(400, error_body(400, message))

    @staticmethod
    def _review(version: str, response: AdmissionResponse) -> Answer:
        body = json.dumps(review_response(version, response), separators=(",", ":")).encode()
        return _json_answer(200, body)

    def _evaluated(self, route: Route, webhook: str, judged: _Judged, started: float) -> Answer:
        version, request, outcome = judged.version, judged.request, judged.outcome
        uid = request["uid"]
        kind = request["kind"]["kind"]
        operation = request["operation"]
        if outcome is None:  # a kind no enabled policy handles
            self.metrics.observe_review(webhook, operation, kind, "unknown_kind", self.clock() - started)
            answer = self._review(version, {"uid": uid, "allowed": True})
            self._log(webhook, request, "allowed", 200, None, started)
            return answer
        if outcome.reservations and outcome.allowed and not request.get("dryRun"):
            outcome = self._reserve(outcome, judged.deadline)
        answer = self._review(version, outcome.to_response(uid, mutating=route.mutating))
        decision = "allowed" if outcome.allowed else "error" if outcome.code >= 500 else "denied"
        elapsed = self.clock() - started
        metrics = self.metrics
        metrics.observe_review(webhook, operation, kind, decision, elapsed)
        for result in outcome.results:
            if result.duration or result.decision == "errored":
                metrics.observe_policy(result.name, result.duration, result.decision == "errored")
        self._log(webhook, request, decision, outcome.code, outcome, started)
        return answer

    def _reserve(self, outcome: Outcome, deadline: float) -> Outcome:
        """Write the outcome's reservations in order; the outcome as they leave it.

        A reservation that no longer fits (concurrent requests used the room up) turns the answer
        into the policy's denial, 403 ``QuotaExceeded``.  One that cannot be written (the
        apiserver does not answer in time) follows the policy's failure mode: ``fail`` denies
        with 500, ``ignore`` allows with a warning.  Reservations already written stay: the
        quota manager's next recomputation of true use releases them.
        """
        if self.reserver is None:
            return outcome
        warnings = list(outcome.warnings)
        for reservation in outcome.reservations:
            name = reservation.policy
            try:
                denial = self.reserver.reserve(reservation, deadline)
            except Exception as exc:  # the apiserver's fault, not the request's: the failure mode decides
                quota = f"{reservation.namespace}/{reservation.name}"
                error = f"cannot reserve quota {quota}: {type(exc).__name__}: {exc}"
                log.error("policy %s failed: %s", name, error, extra={"policy": name})
                if self.engine.failure_mode_of(name) is FailureMode.FAIL:
                    line = f"[{name}] policy failed: {error}"
                    return dataclasses.replace(
                        outcome,
                        allowed=False,
                        code=500,
                        reason="InternalError",
                        message=line,
                        denials=(line,),
                    )
                warnings.append(f"[{name}] policy failed and was ignored: {error}")
                continue
            if denial is not None:
                line = f"[{name}] {denial}"
                return dataclasses.replace(
                    outcome, allowed=False, code=403, reason="QuotaExceeded", message=line, denials=(line,)
                )
        return dataclasses.replace(outcome, warnings=tuple(warnings))

    def _log(
        self,
        webhook: str,
        request: AdmissionRequest,
        decision: str,
        code: int,
        outcome: Outcome | None,
        started: float,
    ) -> None:
        if not self.log_reviews or not review_log.isEnabledFor(logging.INFO):
            return
        denied: list[str] = []
        warned: list[str] = []
        errored: list[str] = []
        if outcome is not None:
            for result in outcome.results:
                if result.decision == "denied":
                    denied.append(result.name)
                elif result.decision in ("warned", "audited"):
                    warned.append(result.name)
                elif result.decision == "errored":
                    errored.append(result.name)
        user = request.get("userInfo") or {}
        review_log.info(
            "review",
            extra={
                "fields": {
                    "uid": request["uid"],
                    "webhook": webhook,
                    "kind": request["kind"]["kind"],
                    "namespace": request.get("namespace") or "",
                    "name": request.get("name") or "",
                    "operation": request["operation"],
                    "subResource": request.get("subResource") or "",
                    "user": user.get("username", ""),
                    "dryRun": bool(request.get("dryRun")),
                    "decision": decision,
                    "code": code,
                    "denied": denied,
                    "warned": warned,
                    "errored": errored,
                    "durationMs": round((self.clock() - started) * 1000, 3),
                }
            },
        )


class ReviewDispatcher:
    """WSGI middleware: review routes go straight to the service, everything else to Flask.

    Installed as ``app.wsgi_app`` so that ``app.test_client()`` and gunicorn both pass
    through it.
    """

    def __init__(self, app: WSGIApp, service: ReviewService) -> None:
        self.app = app
        self.service = service

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        route = route_of(environ.get("PATH_INFO") or "")
        if route is None:
            return self.app(environ, start_response)
        status, headers, body = self.service.serve(environ, route)
        start_response(status, headers)
        return (body,)


blueprint = Blueprint("review", __name__)


def _flask_view(route: Route) -> Response:
    service: ReviewService = current_app.extensions["kcp_tmc.webhook"].service
    status, headers, body = service.serve(flask_request.environ, route)
    return Response(body, status=status, headers=headers)


@blueprint.route("/validate", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
def validate() -> Response:
    """All validating policies."""
    return _flask_view(Route(False, None))


@blueprint.route("/mutate", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
def mutate() -> Response:
    """All mutating policies."""
    return _flask_view(Route(True, None))


@blueprint.route("/validate/<policy>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
def validate_one(policy: str) -> Response:
    """One validating policy (a webhook registration of its own)."""
    return _flask_view(Route(False, policy))


@blueprint.route("/mutate/<policy>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
def mutate_one(policy: str) -> Response:
    """One mutating policy."""
    return _flask_view(Route(True, policy))
