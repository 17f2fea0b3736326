"""Shapes shared by the fake API server and the admission dispatcher plugged into it.

The fake server (``kcp_tmc.testing.server``) owns this module; the admission
module (``kcp_tmc.testing.admission``) codes against it.  The contract:

* Before it persists a write, the server builds one :class:`AdmissionAttributes`
  and calls ``dispatcher.admit(attrs)`` in a worker thread (never on the event
  loop, so a dispatcher may block on HTTP calls to webhooks).  That happens for
  CREATE, UPDATE (update and every patch type) and DELETE, on the main resource
  and on subresources (``subresource="status"`` or ``"scale"``), and for dry-run
  requests too (``dry_run=True``; the dispatcher skips webhooks whose
  ``sideEffects`` forbid dry runs, as the apiserver does).
* ``attrs.object`` is the object as it would be stored: defaults applied, for
  CREATE with ``metadata.name`` filled from ``generateName``, ``uid`` and
  ``creationTimestamp`` set, without a new ``resourceVersion``.  For UPDATE,
  ``attrs.old_object`` is the stored object.  For DELETE, ``object`` is ``None``
  and ``old_object`` is the stored object.  The dispatcher owns nothing it is
  given: it may mutate a deep copy and return it.
* The dispatcher returns an :class:`AdmissionResult`.  When ``status`` is set the
  server refuses the request with that ``metav1.Status`` body and its ``code``
  (nothing is written).  Otherwise, when ``object`` is not ``None`` it replaces
  the object the server goes on to validate (schema) and store; the server then
  re-applies its own invariants (name, namespace, uid, resourceVersion, and on a
  status write everything but ``status``).  ``warnings`` reach the client as
  ``Warning: 299 - "<text>"`` headers whether or not the request is allowed.
* Mutating then validating order, ``failurePolicy``, ``namespaceSelector`` and the
  rest are the dispatcher's job.  To read cluster state (the namespace of the
  request for ``namespaceSelector``, the webhook configurations themselves) it
  uses the :class:`StoreReader` it was built with; reading through it never goes
  over HTTP and never blocks on the server's event loop.
"""

from __future__ import annotations

import builtins
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, Protocol

from kcp_tmc.policies.admission import UserInfo

Object = dict[str, Any]
AdmissionOperation = Literal["CREATE", "UPDATE", "DELETE"]


@dataclass(slots=True)
class AdmissionAttributes:
    """Everything an admission step needs to know about one write.

    The fields map one to one onto ``admission.k8s.io/v1`` ``AdmissionRequest``:
    ``group``/``version``/``resource`` make ``resource``, :attr:`kind_group_version`
    and ``kind`` make ``kind`` (they differ only for ``scale``), ``subresource`` is
    ``subResource`` (``""`` for the main resource), ``user`` is ``userInfo``,
    ``options`` is the ``CreateOptions``,
    ``UpdateOptions`` or ``DeleteOptions`` object (with ``apiVersion`` and
    ``kind`` filled in, as the apiserver sends it; ``PATCH`` sends
    ``UpdateOptions`` with operation ``UPDATE`` like the apiserver, or
    ``CreateOptions`` for a patch that creates).  The fake serves one version
    per resource, so ``requestKind``/``requestResource`` equal ``kind``/``resource``.
    ``namespaced`` tells whether the resource is namespaced (``namespace`` is
    ``""`` for cluster-scoped ones).
    """

    operation: AdmissionOperation
    group: str
    version: str
    kind: str
    resource: str
    subresource: str
    namespace: str
    name: str
    object: Object | None
    old_object: Object | None
    user: UserInfo
    dry_run: bool = False
    options: Object | None = None
    namespaced: bool = True
    #: Group and version of ``kind`` when they differ from those of the resource: a write to
    #: ``deployments/scale`` has resource ``apps/v1`` ``deployments`` (``group``/``version``,
    #: what webhook rules match) and kind ``autoscaling/v1`` ``Scale``.  ``None`` means "same as
    #: ``group``/``version``"; read them through :attr:`kind_group_version`.
    kind_group: str | None = None
    kind_version: str | None = None
    #: A unique id for this request (``AdmissionRequest.uid``).
    uid: str = ""
    #: Free-form extras; the server leaves it empty.
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def kind_group_version(self) -> tuple[str, str]:
        """``(group, version)`` of ``kind`` (``AdmissionRequest.kind``)."""
        group = self.group if self.kind_group is None else self.kind_group
        version = self.version if self.kind_version is None else self.kind_version
        return group, version

    @property
    def api_version(self) -> str:
        """``group/version``, or ``version`` for the core group."""
        return f"{self.group}/{self.version}" if self.group else self.version


class AdmissionResult(NamedTuple):
    """What admission decided.

    ``object``: the object after mutation, or ``None`` for "unchanged".
    ``status``: a full ``metav1.Status`` body (``kind``, ``apiVersion``,
    ``status: Failure``, ``message``, ``reason``, ``code``) to refuse the write
    with, or ``None`` to allow it.  ``warnings``: texts for ``Warning`` headers.
    """

    object: Object | None = None
    status: Object | None = None
    warnings: Sequence[str] = ()


# The constructor NamedTuple generates has no module globals, so its string annotations (this module
# postpones them) cannot be resolved by documentation tools; give it the resolved ones.
AdmissionResult.__new__.__annotations__ = {
    **typing.get_type_hints(AdmissionResult),
    "return": AdmissionResult,
}


class StoreReader(Protocol):
    """Read access to the fake server's store, by group, version and plural.

    ``get`` returns a deep copy of the object or ``None``; ``list`` returns deep
    copies of every object of the resource (in ``namespace`` only, when given).
    """

    def get(self, group: str, version: str, resource: str, name: str, namespace: str = "") -> Object | None:
        """One object, or ``None`` when it does not exist."""
        ...

    def list(
        self, group: str, version: str, resource: str, namespace: str | None = None
    ) -> builtins.list[Object]:
        """All objects of a resource, optionally in one namespace."""
        ...


class AdmissionHook(Protocol):
    """The interface the server calls; ``WebhookDispatcher`` implements it."""

    def admit(self, attrs: AdmissionAttributes) -> AdmissionResult:
        """Decide on one write; may block (it runs in a worker thread)."""
        ...


#: A plain function may stand in for an :class:`AdmissionHook` too.
AdmissionFunction = Callable[[AdmissionAttributes], AdmissionResult]
