"""The policy engine: which policies run on a request, in what order, and what the answer is.

One :class:`Engine` serves the webhook, the CLI and the pytest plugin, so a policy behaves the
same in all three.  For one request :meth:`Engine.evaluate`:

1. selects the policies that handle the request's group and kind, operation and subresource
   (and the phase: ``mutate``, ``validate`` or ``all``);
2. marks as ``exempted`` those whose global or per-policy exemptions match, and as ``skipped``
   those the configuration disables;
3. runs the **mutating** policies first, sorted by name (the order the apiserver uses for
   mutating webhook configurations), each on the object as the previous ones left it.  Patches
   apply copy-on-write: only the maps and lists on an operation's path are copied (once per
   request), never the whole object, and the request's object is never changed.  The combined
   JSON Patch is the policies' operations concatenated in that order, so it applies to the
   request's original object;
4. runs the **validating** policies, sorted by name, on the mutated object;
5. aggregates: every denial of an ``enforce`` policy is a line ``[policy] field.path: reason``
   of the message (all of them, not only the first); a ``warn`` policy's lines become
   warnings; an ``audit`` policy's lines become the audit annotation ``<policy>`` and a log
   record on ``kcp_tmc.policies.engine``.

A policy that raises, returns something other than a :class:`~kcp_tmc.policies.policy.Verdict`,
returns a patch although it validates, returns a patch that does not apply, or is still
running when the deadline passes, has *failed*.  Its failure mode decides: ``fail`` denies with
code 500 and ``[policy] policy failed: <ExceptionType>: <message>``; ``ignore`` allows with the
warning ``[policy] policy failed and was ignored: <ExceptionType>: <message>``.  The failure
mode applies whatever the policy's mode is.

Deadlines: without one, policies run inline on the caller's thread (no overhead).  With one (a
``clock()`` value, by default :func:`time.monotonic`: the apiserver's budget), the whole
evaluation runs on one thread of a small reusable pool and the caller waits until the deadline
at most: a policy still running then, and every policy not yet started, is treated as failed
with :class:`TimeoutError`, and ``evaluate`` returns in time.  The late policy's thread
finishes in the background, its result is dropped, and the thread returns to the pool.  The
cost is one hand-over between threads per review, not one per policy; ``Engine(...,
isolation="inline")`` trades the guarantee for no cost (see :class:`Engine`).  How the caller
waits is its own business (``Engine(..., waiter=...)``): a server on an event loop waits without
holding the loop, so its other connections go on while a policy waits on a lookup.
"""

from __future__ import annotations

import _thread
import base64
import copy
import json
import logging
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, TypeAlias

import jsonpatch

from kcp_tmc.policies.admission import AdmissionRequest, AdmissionResponse, JsonPatchOperation, UserInfo
from kcp_tmc.policies.clusters import cluster_of
from kcp_tmc.policies.config import EngineConfig, PolicyConfig
from kcp_tmc.policies.exemptions import Exemptions
from kcp_tmc.policies.policy import (
    EMPTY_LOOKUP,
    FailureMode,
    Lookup,
    Mode,
    Object,
    Policy,
    PolicyRequest,
    PolicyType,
    Reservation,
    Verdict,
)
from kcp_tmc.policies.registry import Registry

__all__ = [
    "Decision",
    "Engine",
    "Isolation",
    "Outcome",
    "Phase",
    "PolicyError",
    "PolicyResult",
    "UnknownPolicyError",
    "Waiter",
    "select_policies",
]

log = logging.getLogger("kcp_tmc.policies.engine")

Phase: TypeAlias = Literal["validate", "mutate", "all"]
Isolation: TypeAlias = Literal["thread", "inline"]
#: ``waiter(done, timeout)``: wait up to ``timeout`` seconds for the lock ``done`` to be released by
#: the pool thread; ``True`` when it was (the lock is then held).  The default blocks the thread.
Waiter: TypeAlias = Callable[["_thread.LockType", float], bool]
Decision: TypeAlias = Literal["allowed", "denied", "warned", "audited", "errored", "exempted", "skipped"]

_PHASES: frozenset[str] = frozenset({"validate", "mutate", "all"})
_PLAN_CACHE_LIMIT = 1024
_EMPTY_ANNOTATIONS: Mapping[str, str] = MappingProxyType({})


class UnknownPolicyError(LookupError):
    """:meth:`Engine.evaluate` was asked for a policy the engine does not hold."""

    def __init__(self, name: str, known: Iterable[str]) -> None:
        self.name = name
        listing = ", ".join(sorted(known)) or "none are registered"
        super().__init__(f"unknown policy {name!r} (known: {listing})")

    def __str__(self) -> str:
        # LookupError would print the repr of the message, quotes and all.
        return str(self.args[0])


def select_policies(registry: Registry, names: Iterable[str]) -> Registry:
    """A registry holding the policies ``names`` of ``registry``, in that order.

    Raises :class:`UnknownPolicyError` for a name ``registry`` does not hold.
    """
    chosen = Registry()
    for name in names:
        policy = registry.get(name)
        if policy is None:
            raise UnknownPolicyError(name, (p.name for p in registry))
        chosen.register(policy)
    return chosen


class PolicyError(Exception):
    """A policy broke the plug-in contract: a bad return value, or a patch it may not make or that fails."""


@dataclass(frozen=True, slots=True)
class PolicyResult:
    """What one policy did on one request, for metrics and logs.

    ``messages`` are the policy's denial lines without the ``[policy]`` prefix (for
    ``denied``, ``warned`` and ``audited``); ``error`` is ``"<ExceptionType>: <message>"`` for
    ``errored``; ``note`` says why a policy was ``exempted`` or ``skipped``.  ``duration`` is
    in seconds (0 for policies that did not run).
    """

    name: str
    type: PolicyType
    decision: Decision
    duration: float = 0.0
    mode: Mode = Mode.ENFORCE
    failure_mode: FailureMode = FailureMode.FAIL
    messages: tuple[str, ...] = ()
    error: str | None = None
    note: str | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """The engine's answer to one request.

    ``code`` is 200 when allowed, 403 when enforcing policies deny (``reason`` ``Forbidden``, or
    the reason all the denying verdicts gave, such as ``QuotaExceeded``), 500 (``InternalError``)
    when a policy with failure mode ``fail`` failed.  ``reservations`` are the quota use the
    allowing policies asked the caller to write (empty on a denial).  ``message`` is the
    ``denials`` joined with newlines.  ``patch`` is the combined JSON Patch against the
    request's object (kept on a denial for display, never sent then); ``patched`` is the object
    after it, only when asked for: it shares the unchanged parts with the request's object (it
    is that object when nothing was patched), so treat it as read-only.
    """

    allowed: bool
    code: int = 200
    reason: str = ""
    message: str = ""
    denials: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    audit_annotations: Mapping[str, str] = field(default_factory=lambda: _EMPTY_ANNOTATIONS)
    patch: Sequence[JsonPatchOperation] = ()
    patched: Object | None = None
    results: tuple[PolicyResult, ...] = ()
    reservations: tuple[Reservation, ...] = ()

    def to_response(self, uid: str, *, mutating: bool) -> AdmissionResponse:
        """The ``AdmissionResponse`` for this outcome, echoing ``uid``.

        A validating answer never carries a patch.  A mutating one carries ``patchType:
        JSONPatch`` and the base64 patch only when allowed and there are operations.  A denial
        carries ``status`` with ``code``, ``reason`` and ``message``.
        """
        response: AdmissionResponse = {"uid": uid, "allowed": self.allowed}
        if not self.allowed:
            response["status"] = {"code": self.code, "reason": self.reason, "message": self.message}
        elif mutating and self.patch:
            raw = json.dumps(list(self.patch), separators=(",", ":")).encode()
            response["patchType"] = "JSONPatch"
            response["patch"] = base64.b64encode(raw).decode("ascii")
        if self.warnings:
            response["warnings"] = list(self.warnings)
        if self.audit_annotations:
            response["auditAnnotations"] = dict(self.audit_annotations)
        return response


@dataclass(frozen=True, slots=True)
class _Bound:
    """A policy with its configuration resolved, as a plan holds it."""

    policy: Policy
    mode: Mode
    failure_mode: FailureMode
    exemptions: Exemptions
    settings: Mapping[str, Any]
    enabled: bool


@dataclass(slots=True)
class _Entry:
    """One policy's contribution to the outcome."""

    result: PolicyResult
    lines: tuple[str, ...] = ()  # with the [policy] prefix
    warnings: tuple[str, ...] = ()
    annotations: Mapping[str, str] = field(default_factory=lambda: _EMPTY_ANNOTATIONS)
    reason: str = ""
    reservations: tuple[Reservation, ...] = ()


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# jsonpointer puts the whole parent document in its messages; the path is enough.
_DOCUMENT_TAIL = re.compile(r" in [\[{].*\Z", re.DOTALL)


class _Run:
    """The evaluation of one request; shared between the caller and a pool thread under a deadline."""

    __slots__ = (
        "cancelled",
        "cluster",
        "current",
        "entries",
        "exempt_all",
        "finished",
        "lock",
        "lookup",
        "old",
        "original",
        "owned",
        "patch",
        "plan",
        "request",
        "started",
        "user",
        "working",
    )

    def __init__(
        self, request: AdmissionRequest, plan: Sequence[_Bound], lookup: Lookup, default_cluster: str
    ) -> None:
        self.request = request
        self.plan = plan
        self.lookup = lookup
        self.original: Object | None = request.get("object")
        self.old: Object | None = request.get("oldObject")
        self.working = self.original
        self.owned: set[int] = set()  # ids of the containers of ``working`` that we copied
        self.patch: list[JsonPatchOperation] = []
        self.entries: list[_Entry] = []
        self.user: UserInfo = request.get("userInfo") or {}
        self.cluster = cluster_of(self.original or self.old, default_cluster)
        self.lock = threading.Lock()
        self.cancelled = False
        self.finished = False
        self.current: _Bound | None = None
        self.started = 0.0
        self.exempt_all: str | None = None

    def execute(
        self, clock: Callable[[], float], global_exemptions: Exemptions, deadline: float | None = None
    ) -> None:
        """Run the plan, recording each policy's entry unless the caller gave up meanwhile.

        With ``deadline`` (inline isolation) the deadline is checked before and after each
        policy: one that ends late counts as still running at the deadline.
        """
        self.exempt_all = global_exemptions.exempt(self.request) if global_exemptions else None
        request = self.request
        operation = request.get("operation", "CREATE")
        sub_resource = request.get("subResource") or ""
        dry_run = bool(request.get("dryRun", False))
        for bound in self.plan:
            policy = bound.policy
            skip = self._skip(bound)
            if skip is not None:
                if not self._record(skip):  # pragma: no cover - the caller gave up between two policies
                    return
                continue
            if deadline is not None and clock() >= deadline:
                self.cancel(clock)
                return
            with self.lock:
                if self.cancelled:  # pragma: no cover - the caller gave up between two policies
                    return
                self.current = bound
                self.started = start = clock()
            preq = PolicyRequest(
                request=request,
                object=self.working,
                old_object=self.old,
                operation=operation,
                sub_resource=sub_resource,
                dry_run=dry_run,
                user=self.user,
                cluster=self.cluster,
                lookup=self.lookup,
                settings=bound.settings,
            )
            try:
                verdict = policy.func(preq)
                if verdict is not None and not isinstance(verdict, Verdict):
                    raise PolicyError(
                        f"returned {type(verdict).__name__}; a policy returns a Verdict or None"
                    )
            except Exception as exc:  # a policy's fault must not become the webhook's
                duration = clock() - start
                if deadline is not None and start + duration > deadline:
                    self.cancel(clock)
                    return
                log.error(
                    "policy %s failed: %s",
                    policy.name,
                    _describe(exc),
                    exc_info=exc,
                    extra={"policy": policy.name, "uid": request.get("uid", "")},
                )
                if not self._record(self._failed(bound, exc, duration), finished_current=True):
                    return
                continue
            duration = clock() - start
            if deadline is not None and start + duration > deadline:
                self.cancel(clock)
                return
            with self.lock:
                if self.cancelled:
                    return
                entry = self._judge(bound, verdict, duration)
                self.entries.append(entry)
                self.current = None
        with self.lock:
            self.finished = True

    def _record(self, entry: _Entry, *, finished_current: bool = False) -> bool:
        with self.lock:
            if self.cancelled:
                return False
            self.entries.append(entry)
            if finished_current:
                self.current = None
            return True

    def _skip(self, bound: _Bound) -> _Entry | None:
        policy = bound.policy
        if not bound.enabled:
            note = "disabled in the configuration"
            decision: Decision = "skipped"
        else:
            reason = self.exempt_all or (bound.exemptions.exempt(self.request) if bound.exemptions else None)
            if reason is None:
                return None
            note, decision = reason, "exempted"
        return _Entry(
            PolicyResult(policy.name, policy.type, decision, 0.0, bound.mode, bound.failure_mode, note=note)
        )

    def _failed(self, bound: _Bound, exc: BaseException, duration: float) -> _Entry:
        policy = bound.policy
        error = _describe(exc)
        result = PolicyResult(
            policy.name, policy.type, "errored", duration, bound.mode, bound.failure_mode, error=error
        )
        if bound.failure_mode is FailureMode.FAIL:
            return _Entry(result, lines=(f"[{policy.name}] policy failed: {error}",))
        return _Entry(result, warnings=(f"[{policy.name}] policy failed and was ignored: {error}",))

    def _judge(self, bound: _Bound, verdict: Verdict | None, duration: float) -> _Entry:
        """The entry for a verdict; applies a mutating policy's patch (called under the lock)."""
        policy = bound.policy
        name = policy.name
        if verdict is None:
            return _Entry(
                PolicyResult(name, policy.type, "allowed", duration, bound.mode, bound.failure_mode)
            )
        if verdict.patch:
            problem = self._apply(policy, verdict.patch)
            if problem is not None:
                log.error("policy %s failed: %s", name, _describe(problem), extra={"policy": name})
                return self._failed(bound, problem, duration)
        warnings = tuple(f"[{name}] {w}" for w in verdict.warnings)
        annotations = verdict.audit_annotations or _EMPTY_ANNOTATIONS
        if not verdict.errors:
            return _Entry(
                PolicyResult(name, policy.type, "allowed", duration, bound.mode, bound.failure_mode),
                warnings=warnings,
                annotations=annotations,
                reservations=tuple(verdict.reservations),
            )
        messages = tuple(str(e) for e in verdict.errors)
        lines = tuple(f"[{name}] {m}" for m in messages)
        mode = bound.mode
        decision: Decision
        if mode is Mode.ENFORCE:
            decision = "denied"
        elif mode is Mode.WARN:
            decision, warnings, lines = "warned", warnings + lines, ()
        else:
            decision, lines = "audited", ()
            joined = "; ".join(messages)
            annotations = {**annotations, name: joined}
            request = self.request
            log.info(
                "policy %s (audit mode) would deny %s %s: %s",
                name,
                request.get("kind", {}).get("kind", ""),
                request.get("name", ""),
                joined,
                extra={"policy": name, "uid": request.get("uid", "")},
            )
        result = PolicyResult(
            name, policy.type, decision, duration, bound.mode, bound.failure_mode, messages=messages
        )
        return _Entry(result, lines=lines, warnings=warnings, annotations=annotations, reason=verdict.reason)

    def _apply(self, policy: Policy, ops: Sequence[JsonPatchOperation]) -> PolicyError | None:
        """Apply ``ops`` to the working object; the reason it cannot be, or ``None``."""
        if policy.type is not PolicyType.MUTATING:
            return PolicyError("a validating policy may not return a patch; register it with @mutating")
        if self.working is None:
            return PolicyError("returned a patch but the request has no object to patch")
        try:
            self.working = _patch(self.working, ops, self.owned)
        except Exception:
            # The working object may be half patched: rebuild it from the good patches so far.
            self.working, self.owned = self._rebuild()
            return PolicyError(f"its patch does not apply: {self._locate(ops)}")
        self.patch.extend(ops)
        return None

    def _rebuild(self) -> tuple[Object, set[int]]:
        owned: set[int] = set()
        assert self.original is not None  # a patch was applied, so there is an object  # noqa: S101 (an invariant for the type checker, not a check of input)
        return _patch(self.original, self.patch, owned), owned

    def _locate(self, ops: Sequence[JsonPatchOperation]) -> str:
        """Which operation fails and why (on a copy-on-write view, so the working object is untouched)."""
        probe: Any = self.working
        owned: set[int] = set()
        for index, op in enumerate(ops):
            try:
                probe = _patch(probe, [op], owned)
            except Exception as exc:
                label = f"{op.get('op', '?')} {op.get('path', '?')}" if isinstance(op, Mapping) else repr(op)
                return f"operation {index} ({label}): {_DOCUMENT_TAIL.sub('', str(exc))}"
        return "the operations conflict with each other"  # pragma: no cover - each op applied alone

    def cancel(self, clock: Callable[[], float]) -> None:
        """Give up at the deadline: the running policy and those not started count as failed."""
        with self.lock:
            if self.finished:  # pragma: no cover - the run ended just as the caller's wait timed out
                return
            self.cancelled = True
            done = {e.result.name for e in self.entries}
            current = self.current
            now = clock()
            for bound in self.plan:
                if bound.policy.name in done:
                    continue
                if bound is current:
                    elapsed = now - self.started
                    exc = TimeoutError(f"still running when the deadline passed, after {elapsed:.3f}s")
                    duration = elapsed
                else:
                    skip = self._skip(bound)
                    if skip is not None:
                        self.entries.append(skip)
                        continue
                    exc = TimeoutError("not run: the deadline had passed")
                    duration = 0.0
                log.error(
                    "policy %s failed: %s",
                    bound.policy.name,
                    _describe(exc),
                    extra={"policy": bound.policy.name, "uid": self.request.get("uid", "")},
                )
                self.entries.append(self._failed(bound, exc, duration))

    def outcome(self, want_patched: bool) -> Outcome:
        denials: list[str] = []
        warnings: list[str] = []
        annotations: dict[str, str] = {}
        reservations: list[Reservation] = []
        reasons: set[str] = set()
        failed = False
        for entry in self.entries:
            reservations.extend(entry.reservations)
            if entry.lines:
                denials.extend(entry.lines)
                reasons.add(entry.reason)
                if entry.result.decision == "errored":
                    failed = True
            warnings.extend(entry.warnings)
            for key, value in entry.annotations.items():
                annotations[key] = f"{annotations[key]}; {value}" if key in annotations else value
        results = tuple(e.result for e in self.entries)
        patched = self.working if want_patched else None
        if not denials:
            return Outcome(
                allowed=True,
                code=200,
                warnings=tuple(warnings),
                audit_annotations=annotations,
                patch=self.patch,
                patched=patched,
                results=results,
                reservations=tuple(reservations),
            )
        shared = next(iter(reasons)) if len(reasons) == 1 else ""
        return Outcome(
            allowed=False,
            code=500 if failed else 403,
            reason="InternalError" if failed else shared or "Forbidden",
            message="\n".join(denials),
            denials=tuple(denials),
            warnings=tuple(warnings),
            audit_annotations=annotations,
            patch=self.patch,
            patched=patched,
            results=results,
        )


def _patch(doc: Any, ops: Sequence[JsonPatchOperation], owned: set[int]) -> Any:
    """Apply ``ops`` to ``doc`` copy-on-write, and return the result.

    Before each operation, the containers on its path (and on ``from`` for a move) that are not
    in ``owned`` are replaced by shallow copies, which are added to ``owned``; the operation then
    applies in place.  So the request's object is never changed, nothing is deep-copied, and
    the unchanged parts stay shared with it.  ``add``, ``replace`` and ``remove`` of a map
    member (labels, annotations, fields: nearly every patch) are done here directly; anything
    else goes through jsonpatch, which also reports every operation that does not apply
    (earlier operations stay applied).
    """
    for op in ops:
        if type(op) is dict:
            doc, parent, key = _own_path(doc, op.get("path"), owned)
            kind = op.get("op")
            if type(parent) is dict and kind in _MEMBER_OPS:
                if kind == "add" and "value" in op:
                    parent[key] = _copy_value(op["value"])
                    continue
                if kind == "replace" and "value" in op and key in parent:
                    parent[key] = _copy_value(op["value"])
                    continue
                if kind == "remove" and key in parent:
                    del parent[key]
                    continue
            if kind == "move":
                doc = _own_path(doc, op.get("from"), owned)[0]
        doc = jsonpatch.apply_patch(doc, _detached([op]), in_place=True)
    return doc


_MEMBER_OPS = frozenset({"add", "replace", "remove"})


def _copy_value(value: Any) -> Any:
    # The document must not share a map or list with the policy's patch (which we send).
    return copy.deepcopy(value) if isinstance(value, dict | list) else value


def _own_path(doc: Any, pointer: object, owned: set[int]) -> tuple[Any, Any, str]:
    """Copy the containers down to the parent of ``pointer`` unless already owned.

    Returns the document (a copy when its root was not owned yet), the parent container
    (``None`` when the path does not lead to one) and the last reference token, unescaped.
    """
    if not isinstance(pointer, str) or not pointer.startswith("/") or not isinstance(doc, dict | list):
        return doc, None, ""  # a malformed pointer is jsonpatch's to report; "" is the whole document
    if id(doc) not in owned:
        doc = doc.copy()
        owned.add(id(doc))
    node: Any = doc
    *parents, last = (t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/"))
    for token in parents:
        key: str | int
        if isinstance(node, dict):
            key = token
            child = node.get(key)
        elif token.isdigit() and int(token) < len(node):
            key = int(token)
            child = node[key]
        else:
            return doc, None, last  # an index that does not exist: jsonpatch reports it
        if not isinstance(child, dict | list):
            return doc, None, last
        if id(child) not in owned:
            child = child.copy()
            owned.add(id(child))
            node[key] = child
        node = child
    return doc, node, last


def _detached(ops: Sequence[JsonPatchOperation]) -> list[JsonPatchOperation]:
    """The operations with their container values copied.

    Patches apply in place to one working copy; without this, a later patch could change a
    value that an earlier policy's operation holds (and so the combined patch we send).
    """
    out: list[JsonPatchOperation] = []
    for op in ops:
        value = op.get("value") if type(op) is dict else None
        if isinstance(value, dict | list):
            detached = dict(op)
            detached["value"] = copy.deepcopy(value)
            out.append(detached)  # type: ignore[arg-type]
        else:
            out.append(op)
    return out


def _block(done: _thread.LockType, timeout: float) -> bool:
    return done.acquire(timeout=timeout)


class _Worker:
    """One pool thread.  Hand-over uses bare locks: the cheapest wake-up CPython offers."""

    __slots__ = ("job", "pool", "thread", "wake")

    def __init__(self, pool: _Workers, index: int) -> None:
        self.pool = pool
        self.job: tuple[Callable[[], None], _thread.LockType] | None = None
        self.wake = _thread.allocate_lock()
        self.wake.acquire()
        self.thread = threading.Thread(target=self._loop, name=f"{pool.name}-{index}", daemon=True)
        self.thread.start()

    def give(self, job: tuple[Callable[[], None], _thread.LockType] | None) -> None:
        self.job = job
        self.wake.release()

    def _loop(self) -> None:
        while True:
            self.wake.acquire()
            job, self.job = self.job, None
            if job is None:
                return
            func, done = job
            try:
                func()
            except Exception:  # pragma: no cover - _Run.execute handles policy errors itself
                log.exception("policy evaluation crashed")
            # Back to the idle list before waking the caller, so that its next review reuses us.
            # Drop the finished job before waiting for the next: it holds the request.
            del func, job
            stay = self.pool.release(self)
            done.release()
            if not stay:
                return


class _Workers:
    """A small pool of reusable threads, one evaluation at a time each.

    A thread held by a policy running past its deadline rejoins the pool when it finishes;
    meanwhile another thread is started if needed, up to ``limit`` threads in all.
    """

    def __init__(self, name: str, limit: int) -> None:
        self.name = name
        self.limit = limit
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []
        self._all: list[_Worker] = []
        self._started = 0
        self._closed = False

    def submit(self, func: Callable[[], None]) -> _thread.LockType | None:
        """Hand ``func`` to an idle thread and return a lock released when it is done.

        ``None`` when all ``limit`` threads are busy (with policies running late), or when the
        pool was closed meanwhile by :meth:`Engine.close`.
        """
        with self._lock:
            if self._closed:  # pragma: no cover - a review racing Engine.close()
                return None
            if self._idle:
                worker = self._idle.pop()
            elif len(self._all) < self.limit:
                self._started += 1
                worker = _Worker(self, self._started)
                self._all.append(worker)
            else:
                return None
        done = _thread.allocate_lock()
        done.acquire()
        worker.give((func, done))
        return done

    def release(self, worker: _Worker) -> bool:
        """Put ``worker`` back on the idle list; ``False`` when the pool is closed and it must stop."""
        with self._lock:
            if self._closed:
                self._all.remove(worker)
                return False
            self._idle.append(worker)
            return True

    @property
    def threads(self) -> int:
        """Threads alive in the pool, idle or busy."""
        with self._lock:
            return len(self._all)

    def close(self, timeout: float) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            for worker in idle:
                self._all.remove(worker)
        for worker in idle:
            worker.give(None)
        for worker in idle:
            worker.thread.join(timeout)


class Engine:
    """Evaluates admission requests against the policies of a registry, as configured.

    The engine takes a snapshot of ``registry`` when it is built: policies registered later
    are not seen.  ``config`` is checked against it first (:class:`~kcp_tmc.policies.config.ConfigError`
    names the line of an unknown policy).  ``clock`` gives the time in the unit of the
    ``deadline`` of :meth:`evaluate` (default :func:`time.monotonic`).

    ``isolation`` says how a deadline is kept.  ``"thread"`` (the default) runs an evaluation
    that has a deadline on a pool thread (at most ``max_threads``) and returns at the deadline
    whatever the policies do: the guarantee costs one hand-over between threads per review
    (about 17 µs of CPU when the process is pinned to one core, about 30 µs when it is not).
    ``"inline"`` runs on the caller's thread and checks the deadline between policies: no
    cost, but a policy that hangs holds the caller.  Without a deadline both run inline, and so
    does a request whose policies all declared ``isolate=False`` (pure and quick, as the
    built-ins are).  ``waiter`` says how the caller waits for the pool thread (:data:`Waiter`).
    Thread-safe; call :meth:`close` (or use it as a context manager) to stop the pool's threads.
    """

    def __init__(
        self,
        registry: Registry,
        config: EngineConfig | None = None,
        clock: Callable[[], float] = time.monotonic,
        *,
        isolation: Isolation = "thread",
        max_threads: int = 64,
        waiter: Waiter | None = None,
    ) -> None:
        if isolation not in ("thread", "inline"):
            raise ValueError(f"isolation must be thread or inline (got {isolation!r})")
        if max_threads < 1:
            raise ValueError(f"max_threads must be at least 1 (got {max_threads})")
        self._isolation = isolation
        self._config = config if config is not None else EngineConfig()
        self._config.check(registry)
        self._clock = clock
        self._bound: dict[str, _Bound] = {p.name: self._bind(p) for p in registry}
        ordered = sorted(self._bound.values(), key=lambda b: b.policy.name)
        self._mutating = tuple(b for b in ordered if b.policy.type is PolicyType.MUTATING)
        self._validating = tuple(b for b in ordered if b.policy.type is PolicyType.VALIDATING)
        self._plans: dict[tuple[str, str, str, str, str], tuple[_Bound, ...]] = {}
        self._max_threads = max_threads
        #: How :meth:`evaluate` waits for a pool thread (see :data:`Waiter`); may be replaced later,
        #: by a server that learns only once it runs that it is on an event loop.
        self.waiter: Waiter = waiter if waiter is not None else _block
        self._workers: _Workers | None = None
        self._workers_lock = threading.Lock()

    def _bind(self, policy: Policy) -> _Bound:
        cfg: PolicyConfig = self._config.policy(policy.name)
        return _Bound(
            policy=policy,
            mode=cfg.mode or policy.default_mode,
            failure_mode=cfg.failure_mode or policy.failure_mode,
            exemptions=cfg.exemptions,
            settings=cfg.settings,
            enabled=self._config.is_enabled(policy.name),
        )

    @property
    def config(self) -> EngineConfig:
        """The configuration the engine was built with."""
        return self._config

    @property
    def policies(self) -> tuple[Policy, ...]:
        """The engine's policies, mutating ones first, each group sorted by name (evaluation order)."""
        return tuple(b.policy for b in self._mutating + self._validating)

    def mode_of(self, name: str) -> Mode:
        """The effective mode of policy ``name`` (configured, else the policy's default)."""
        return self._get(name).mode

    def failure_mode_of(self, name: str) -> FailureMode:
        """The effective failure mode of policy ``name``."""
        return self._get(name).failure_mode

    def _get(self, name: str) -> _Bound:
        try:
            return self._bound[name]
        except KeyError:
            raise UnknownPolicyError(name, self._bound) from None

    def select(self, request: AdmissionRequest, phase: Phase = "all") -> tuple[Policy, ...]:
        """The policies that handle ``request`` in ``phase``, in evaluation order (disabled ones included)."""
        return tuple(b.policy for b in self._plan(request, phase))

    def _plan(self, request: AdmissionRequest, phase: str) -> tuple[_Bound, ...]:
        kind: Mapping[str, str] = request.get("kind") or {}  # type: ignore[assignment]
        group = kind.get("group", "")
        kind_name = kind.get("kind", "")
        operation = request.get("operation", "")
        sub_resource = request.get("subResource") or ""
        key = (group, kind_name, operation, sub_resource, phase)
        plan = self._plans.get(key)
        if plan is None:
            if phase not in _PHASES:
                raise ValueError(f"phase must be one of validate, mutate, all (got {phase!r})")
            candidates: tuple[_Bound, ...] = ()
            if phase in ("mutate", "all"):
                candidates += self._mutating
            if phase in ("validate", "all"):
                candidates += self._validating
            plan = tuple(b for b in candidates if b.policy.handles(group, kind_name, operation, sub_resource))
            if len(self._plans) >= _PLAN_CACHE_LIMIT:  # requests of arbitrary kinds must not grow it forever
                self._plans.clear()
            self._plans[key] = plan
        return plan

    def evaluate(
        self,
        request: AdmissionRequest,
        *,
        phase: Phase = "all",
        policy: str | None = None,
        lookup: Lookup | None = None,
        deadline: float | None = None,
        want_patched: bool = False,
    ) -> Outcome:
        """Evaluate ``request`` and return the :class:`Outcome` (see the module documentation).

        ``policy`` restricts the evaluation to one policy (:class:`UnknownPolicyError` when the
        engine has none of that name; a disabled one is still skipped).  ``lookup`` gives the
        policies read access to other objects (default: none).  ``deadline`` is a ``clock()``
        value by which the answer must be ready.  ``want_patched`` fills ``Outcome.patched``.
        """
        plan = self._plan(request, phase)
        if policy is not None:
            self._get(policy)
            plan = tuple(b for b in plan if b.policy.name == policy)
        if not plan:
            obj = request.get("object") if want_patched else None
            return Outcome(allowed=True, patched=obj)
        run = _Run(
            request, plan, lookup if lookup is not None else EMPTY_LOOKUP, self._config.default_cluster
        )
        exemptions = self._config.exemptions
        if deadline is None or self._isolation == "inline" or not any(b.policy.isolate for b in plan):
            # Policies that declared themselves pure and quick (isolate=False) cannot hold
            # the answer past the deadline, so they skip the hand-over to a pool thread.
            run.execute(self._clock, exemptions, deadline)
            return run.outcome(want_patched)
        remaining = deadline - self._clock()
        if remaining > 0:
            clock = self._clock  # the job must not hold the engine (see Engine._pool)
            done = self._pool().submit(lambda: run.execute(clock, exemptions))
            if done is None:
                log.error(
                    "no thread free to evaluate a request: all %d are held by policies running late",
                    self._max_threads,
                )
            elif self.waiter(done, remaining):
                return run.outcome(want_patched)
        run.cancel(self._clock)
        return run.outcome(want_patched)

    def _pool(self) -> _Workers:
        workers = self._workers
        if workers is None:
            with self._workers_lock:
                if self._workers is None:
                    self._workers = _Workers("kcp-tmc-policy", self._max_threads)
                    # An engine dropped without close() must not leave its idle threads behind.
                    weakref.finalize(self, self._workers.close, 0.0)
                workers = self._workers
        return workers

    def close(self, timeout: float = 1.0) -> None:
        """Stop the idle pool threads (threads still running a late policy stop when it ends)."""
        with self._workers_lock:
            workers, self._workers = self._workers, None
        if workers is not None:
            workers.close(timeout)

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
