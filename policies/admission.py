"""Wire shapes of the admission protocol (``admission.k8s.io/v1`` and ``v1beta1``).

These are TypedDicts, as kopf does it: the JSON the apiserver sends is used as
it is, with no conversion into classes on the review path.  Field names are the
wire names.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

Operation = Literal["CREATE", "UPDATE", "DELETE", "CONNECT"]
OPERATIONS: tuple[Operation, ...] = ("CREATE", "UPDATE", "DELETE", "CONNECT")

ADMISSION_V1 = "admission.k8s.io/v1"
ADMISSION_V1BETA1 = "admission.k8s.io/v1beta1"
REVIEW_VERSIONS: tuple[str, ...] = (ADMISSION_V1, ADMISSION_V1BETA1)


class GroupVersionKind(TypedDict):
    """``metav1.GroupVersionKind``; the core group is the empty string."""

    group: str
    version: str
    kind: str


class GroupVersionResource(TypedDict):
    """``metav1.GroupVersionResource``; the core group is the empty string."""

    group: str
    version: str
    resource: str


class UserInfo(TypedDict, total=False):
    """``authenticationv1.UserInfo``: who made the request."""

    username: str
    uid: str
    groups: list[str]
    extra: dict[str, list[str]]


class AdmissionRequest(TypedDict, total=False):
    """``admission.k8s.io/v1`` ``AdmissionRequest``.

    ``object`` is absent or ``None`` on DELETE, ``oldObject`` on CREATE.
    ``subResource`` is absent for the main resource (``"status"`` for the
    status subresource).
    """

    uid: str
    kind: GroupVersionKind
    resource: GroupVersionResource
    subResource: str
    requestKind: GroupVersionKind
    requestResource: GroupVersionResource
    requestSubResource: str
    name: str
    namespace: str
    operation: Operation
    userInfo: UserInfo
    object: dict[str, Any] | None
    oldObject: dict[str, Any] | None
    dryRun: bool
    options: dict[str, Any] | None


class Status(TypedDict, total=False):
    """``metav1.Status`` as carried in an admission response."""

    apiVersion: str
    kind: str
    status: Literal["Success", "Failure"]
    code: int
    reason: str
    message: str
    metadata: dict[str, Any]
    details: dict[str, Any]


class AdmissionResponse(TypedDict, total=False):
    """``admission.k8s.io/v1`` ``AdmissionResponse``.

    ``patch`` is the base64 of a JSON Patch document; ``patchType`` is present
    exactly when ``patch`` is.
    """

    uid: str
    allowed: bool
    status: Status
    patch: str
    patchType: Literal["JSONPatch"]
    warnings: list[str]
    auditAnnotations: dict[str, str]


class AdmissionReview(TypedDict, total=False):
    """The envelope the apiserver posts, and the one we answer with."""

    apiVersion: str
    kind: Literal["AdmissionReview"]
    request: AdmissionRequest
    response: AdmissionResponse


class JsonPatchOperation(TypedDict, total=False):
    """One RFC 6902 operation. ``value`` for add/replace/test, ``from`` for move/copy."""

    op: Literal["add", "remove", "replace", "move", "copy", "test"]
    path: str
    value: Any
    # ``from`` is a Python keyword; build these with the helpers in
    # ``kcp_tmc.policies.patches`` or as plain dict literals.
