"""The plug-in API: what a policy declares, what it receives, what it returns.

A policy is a plain function ``(PolicyRequest) -> Verdict | None`` plus a
:class:`Policy` record that says which requests it wants.  It does no I/O of
its own: whatever it must look up comes through :attr:`PolicyRequest.lookup`,
which the caller (webhook, CLI, test fixture) provides.
"""

from __future__ import annotations

import builtins
import enum
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from kcp_tmc.policies.admission import AdmissionRequest, JsonPatchOperation, Operation, UserInfo
from kcp_tmc.policies.gofmt import go_quote, go_value
from kcp_tmc.policies.kinds import ResourceType
from kcp_tmc.policies.quantities import Quantity

Object = dict[str, Any]


class PolicyType(enum.Enum):
    """Validating policies may only allow or deny; mutating ones may also patch."""

    VALIDATING = "validating"
    MUTATING = "mutating"


class Mode(enum.Enum):
    """What a denial of the policy does.

    ``enforce`` denies the request; ``warn`` allows it and turns the message
    into a warning for the client; ``audit`` allows it and records the message
    as an audit annotation and a log line.
    """

    ENFORCE = "enforce"
    WARN = "warn"
    AUDIT = "audit"


class FailureMode(enum.Enum):
    """What happens when a policy raises or runs out of time.

    ``fail`` denies with code 500 and names the policy; ``ignore`` allows and
    adds a warning that the policy failed.
    """

    FAIL = "fail"
    IGNORE = "ignore"


@dataclass(frozen=True, slots=True)
class FieldError:
    """One reason to deny: the field path (``spec.cells[region]``) and what to do about it.

    Write ``message`` so that it tells the user the fix, not only the fault:
    ``"must be an RFC 3339 time such as 2024-01-02T15:04:05Z"``.
    Use an empty ``path`` for a rule about the request as a whole.
    """

    path: str
    message: str
    #: apimachinery's ``field.ErrorType`` (the ``reason`` of a Status cause); not part of equality.
    type: str = field(default="FieldValueInvalid", compare=False)

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message

    # Constructors named after apimachinery's ``field`` package; each message reads as its ErrorBody().

    @classmethod
    def invalid(cls, path: str, value: object, detail: str = "") -> FieldError:
        """``field.Invalid``: ``Invalid value: <value>[: <detail>]``."""
        return cls(path, _with_detail(f"Invalid value: {go_value(value)}", detail), "FieldValueInvalid")

    @classmethod
    def type_invalid(cls, path: str, value: object, detail: str = "") -> FieldError:
        """``field.TypeInvalid``: worded as ``Invalid value``, with its own reason."""
        return cls(path, _with_detail(f"Invalid value: {go_value(value)}", detail), "FieldValueTypeInvalid")

    @classmethod
    def required(cls, path: str, detail: str = "") -> FieldError:
        """``field.Required``: ``Required value[: <detail>]``."""
        return cls(path, _with_detail("Required value", detail), "FieldValueRequired")

    @classmethod
    def forbidden(cls, path: str, detail: str) -> FieldError:
        """``field.Forbidden``: ``Forbidden: <detail>``."""
        return cls(path, _with_detail("Forbidden", detail), "FieldValueForbidden")

    @classmethod
    def duplicate(cls, path: str, value: object, detail: str = "") -> FieldError:
        """``field.Duplicate``: ``Duplicate value: <value>[: <detail>]``."""
        return cls(path, _with_detail(f"Duplicate value: {go_value(value)}", detail), "FieldValueDuplicate")

    @classmethod
    def not_supported(cls, path: str, value: object, supported: Iterable[str]) -> FieldError:
        """``field.NotSupported``: ``Unsupported value: "x": supported values: "A", "B"``."""
        listed = ", ".join(go_quote(str(s)) for s in supported)
        detail = f"supported values: {listed}" if listed else ""
        body = _with_detail(f"Unsupported value: {go_value(value)}", detail)
        return cls(path, body, "FieldValueNotSupported")

    @classmethod
    def too_long(cls, path: str, max_length: int, detail: str = "") -> FieldError:
        """``field.TooLong``: ``Too long: may not be more than <n> bytes[; <detail>]`` (no value shown)."""
        if max_length >= 0:
            body = f"Too long: may not be more than {max_length} {'byte' if max_length == 1 else 'bytes'}"
        else:
            body = "Too long: value is too long"
        return cls(path, f"{body}; {detail}" if detail else body, "FieldValueTooLong")

    @classmethod
    def too_many(cls, path: str, actual: int, maximum: int) -> FieldError:
        """``field.TooMany``: ``Too many: 3: must have at most 2 items`` (a negative count is not shown)."""
        body = f"Too many: {actual}" if actual >= 0 else "Too many"
        unit = "item" if maximum == 1 else "items"
        detail = f"must have at most {maximum} {unit}" if maximum >= 0 else "has too many items"
        return cls(path, f"{body}: {detail}", "FieldValueTooMany")


def _with_detail(body: str, detail: str) -> str:
    return f"{body}: {detail}" if detail else body


@dataclass(frozen=True, slots=True)
class Reservation:
    """Use that an admitted request adds to one quota's status: the policy's request to the caller.

    A policy stays pure: it decides from the quota its :class:`Lookup` gave it, and when it
    allows a request that consumes quota it returns one ``Reservation`` per quota in
    :attr:`Verdict.reservations`.  The caller (the webhook) writes them once the whole review is
    allowed and the request is not a dry run: it re-reads the quota, checks the reservation
    against the fresh status with :func:`kcp_tmc.policies.quota.apply_reservation` (which denies
    it in the policy's words when concurrent requests used the room up meanwhile), and writes the
    status with the quota's ``resourceVersion`` as precondition, retrying on a conflict.  So
    several workers and replicas never admit more than the quota, whatever their caches show.

    ``overall`` is keyed by the quota's own resource names (as its spec writes them) and holds
    only increases; ``per_target`` maps the name of a SyncTarget with a static assignment to the
    increase on it, of the assignment's resources and of the overall ones its status entry
    shows.  ``path`` is the field path the denial names, should the reservation fail.
    """

    policy: str
    quota: ResourceType
    namespace: str
    name: str
    overall: Mapping[str, Quantity]
    per_target: Mapping[str, Mapping[str, Quantity]] = field(default_factory=dict)
    path: str = ""


class Reserver(Protocol):
    """Writes :class:`Reservation` s: provided by the caller that performs I/O (the webhook)."""

    def reserve(self, reservation: Reservation, deadline: float | None = None) -> FieldError | None:
        """Add the reservation to the quota's status; the denial when it no longer fits, else ``None``.

        Raises when the quota cannot be read or written in time; the caller then applies the
        policy's failure mode.
        """
        ...


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a policy returns.

    The request is allowed when ``errors`` is empty.  ``warnings`` reach the
    client whatever the decision; ``audit_annotations`` reach the audit log
    (the apiserver prefixes each key with the webhook name).  ``patch`` is a
    list of JSON Patch operations against the object as the policy received
    it; only mutating policies may return one.  ``reason`` is the ``status.reason`` of a denial
    (``Forbidden`` when empty; quota policies say ``QuotaExceeded``).  ``reservations`` are the
    quota use an allowed request consumes, for the caller to write (see :class:`Reservation`).
    """

    errors: Sequence[FieldError] = ()
    warnings: Sequence[str] = ()
    audit_annotations: Mapping[str, str] = field(default_factory=dict)
    patch: Sequence[JsonPatchOperation] = ()
    reason: str = ""
    reservations: Sequence[Reservation] = ()

    @property
    def allowed(self) -> bool:
        """True when the verdict has no errors."""
        return not self.errors

    @classmethod
    def allow(cls, *warnings: str) -> Verdict:
        """An allowing verdict, optionally with warnings."""
        return cls(warnings=warnings)

    @classmethod
    def deny(cls, path: str, message: str) -> Verdict:
        """A verdict with one field error."""
        return cls(errors=(FieldError(path, message),))

    @classmethod
    def mutate(cls, *operations: JsonPatchOperation) -> Verdict:
        """An allowing verdict that carries JSON Patch operations."""
        return cls(patch=operations)


class Lookup(Protocol):
    """Read access to other objects, provided by the caller of the engine.

    Implementations: :class:`StaticLookup` (a fixed list of objects, for the
    CLI and tests) and the webhook's cached client.  Neither call may raise for
    a missing object: ``get`` returns ``None`` and ``list`` returns ``[]``.
    """

    def get(self, rtype: ResourceType, name: str, namespace: str = "") -> Object | None:
        """The object of that type, name (and namespace), or ``None``."""
        ...

    def list(
        self, rtype: ResourceType, namespace: str = "", labels: Mapping[str, str] | None = None
    ) -> builtins.list[Object]:
        """Objects of that type (in that namespace, when given) whose labels include ``labels``."""
        ...


class StaticLookup:
    """A :class:`Lookup` over a fixed set of objects (CLI ``--resource`` files, tests)."""

    def __init__(self, objects: Sequence[Object] = ()) -> None:
        self._objects = list(objects)

    @staticmethod
    def _is(obj: Object, rtype: ResourceType) -> bool:
        return obj.get("apiVersion") == rtype.api_version and obj.get("kind") == rtype.kind

    def get(self, rtype: ResourceType, name: str, namespace: str = "") -> Object | None:
        for obj in self._objects:
            meta = obj.get("metadata") or {}
            if (
                self._is(obj, rtype)
                and meta.get("name") == name
                and (meta.get("namespace") or "") == namespace
            ):
                return obj
        return None

    def list(
        self, rtype: ResourceType, namespace: str = "", labels: Mapping[str, str] | None = None
    ) -> builtins.list[Object]:
        found = []
        for obj in self._objects:
            meta = obj.get("metadata") or {}
            if not self._is(obj, rtype):
                continue
            if namespace and (meta.get("namespace") or "") != namespace:
                continue
            have = meta.get("labels") or {}
            if labels and any(have.get(k) != v for k, v in labels.items()):
                continue
            found.append(obj)
        return found


EMPTY_LOOKUP = StaticLookup()


@dataclass(frozen=True, slots=True)
class PolicyRequest:
    """What a policy receives.

    ``object`` is the object as the previous mutating policies left it (the
    request's object for the first one, and for every validating policy the
    fully mutated object); ``None`` on DELETE.  ``old_object`` is ``None`` on
    CREATE.  ``cluster`` is the logical cluster of the object (the
    ``kcp.io/cluster`` annotation, else the configured default).
    ``settings`` are this policy's settings from the configuration file.
    """

    request: AdmissionRequest
    object: Object | None
    old_object: Object | None
    operation: Operation
    sub_resource: str
    dry_run: bool
    user: UserInfo
    cluster: str
    lookup: Lookup
    settings: Mapping[str, Any]

    @property
    def name(self) -> str:
        """The object's name (from the object, else from the request)."""
        for obj in (self.object, self.old_object):
            # Policies see the object before any schema check: metadata may be of any type.
            metadata = obj.get("metadata") if isinstance(obj, Mapping) else None
            name = metadata.get("name") if isinstance(metadata, Mapping) else None
            if name:
                return str(name)
        return self.request.get("name", "")

    @property
    def namespace(self) -> str:
        """The request's namespace; empty for cluster-scoped objects."""
        return self.request.get("namespace", "")


PolicyFunc = Callable[[PolicyRequest], Verdict | None]


@dataclass(frozen=True, slots=True)
class Policy:
    """A registered policy: its declaration plus the function that decides.

    ``subresources`` holds ``""`` for the main resource and e.g. ``"status"``.
    ``source`` says where it came from (a module, or an entry point) so that a
    conflict can name both sides.  ``isolate`` (the default) lets the engine run
    the policy on a pool thread when the request has a deadline, so that a policy
    that hangs cannot hold the answer past it; a pure policy whose running time is
    bounded by the size of its input (the built-ins) declares ``isolate=False``
    and runs on the caller's thread, saving the hand-over.
    """

    name: str
    type: PolicyType
    kinds: tuple[ResourceType, ...]
    operations: frozenset[Operation]
    func: PolicyFunc
    subresources: frozenset[str] = frozenset({""})
    default_mode: Mode = Mode.ENFORCE
    failure_mode: FailureMode = FailureMode.FAIL
    side_effects: bool = False
    description: str = ""
    source: str = ""
    isolate: bool = True

    def handles(self, group: str, kind: str, operation: str, sub_resource: str) -> bool:
        """True when this policy wants a request of that kind, operation and subresource."""
        return (
            operation in self.operations
            and sub_resource in self.subresources
            and any(t.matches(group, kind) for t in self.kinds)
        )
