"""Admission webhooks for the fake API server, dispatched the way kube-apiserver does it.

:class:`WebhookDispatcher` is the :class:`~kcp_tmc.testing.types.AdmissionHook`
the fake server calls before it persists a write.  For each write it reads the
current ``admissionregistration.k8s.io/v1`` Mutating- and
ValidatingWebhookConfigurations from the store, and:

1. calls the matching **mutating** webhooks one after the other (configurations
   sorted by name, webhooks in their order), applying each JSON patch before the
   next call; when a patch changed the object, webhooks with
   ``reinvocationPolicy: IfNeeded`` that ran before it are called once more
   (round 1), as the apiserver's reinvocation does;
2. calls the matching **validating** webhooks with the final object.  The
   apiserver calls them in parallel and returns the first error it collects; we
   call them in order and return the first one (the same text, and a
   deterministic choice when several reject).

Matching follows ``namespaceSelector`` (cluster-scoped objects other than
Namespaces are never exempted; a Namespace matches its own labels),
``objectSelector`` (the new or the old object), and ``rules`` (operations,
groups, versions, ``resource/subresource`` with ``*``, scope).  ``matchPolicy``
is treated as ``Exact``: the fake serves one version per resource, so
``Equivalent`` has nothing to convert.  ``matchConditions`` (CEL) are not
evaluated: a webhook that has them is called as if they matched.

Every call carries an ``admission.k8s.io/v1`` AdmissionReview (``v1beta1`` when
that is the only version the webhook accepts), a fresh ``uid``, and the
``?timeout=Ns`` query parameter.  Failures are reported with the apiserver's
messages: a denial is ``admission webhook "<name>" denied the request: <msg>``
with the webhook's code (at least 400); a call failure under
``failurePolicy: Fail`` is a 500 ``Internal error occurred: failed calling
webhook "<name>": ...``, and under ``Ignore`` the webhook is skipped.  A patch
that does not apply is a 500 that ``failurePolicy`` does not soften.

The fake cannot reach Services: a ``clientConfig.service`` webhook fails as one
whose Service does not exist (``service "<name>" not found``), unless the
dispatcher is given ``services={(namespace, name): "127.0.0.1:8443"}``; then it
dials that address and checks the certificate for ``<name>.<namespace>.svc``.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import logging
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import jsonpatch

from kcp_tmc.policies.selectors import Selector, SelectorError, label_selector_from_dict
from kcp_tmc.testing.types import AdmissionAttributes, AdmissionResult, Object, StoreReader
from kcp_tmc.testing.webhook_calls import (
    CallError,
    Connections,
    WebhookCallFailed,
    post_review,
    resolve_endpoint,
)

__all__ = ["WebhookDispatcher", "status_body"]

log = logging.getLogger(__name__)

GROUP = "admissionregistration.k8s.io"
DEFAULT_TIMEOUT_SECONDS = 10
_EXEMPT_KINDS = frozenset(
    {
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
        "MutatingAdmissionPolicy",
        "MutatingAdmissionPolicyBinding",
    }
)
_NO_SIDE_EFFECTS = ("None", "NoneOnDryRun")


def status_body(code: int, reason: str, message: str, details: Mapping[str, Any] | None = None) -> Object:
    """A ``metav1.Status`` failure body as the apiserver writes it (empty fields left out)."""
    body: Object = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
    }
    if reason:
        body["reason"] = reason
    if details:
        body["details"] = dict(details)
    body["code"] = code
    return body


def _internal_error(message: str) -> Object:
    # apierrors.NewInternalError: the cause repeats the bare error text.
    return status_body(
        500, "InternalError", f"Internal error occurred: {message}", {"causes": [{"message": message}]}
    )


class _Refused(Exception):
    """Stops admission with a Status body."""

    def __init__(self, status: Object) -> None:
        super().__init__(status.get("message", ""))
        self.status = status


class _CallFailed(Exception):
    """A webhook call failed; ``failurePolicy`` decides what happens (``ErrCallingWebhook``)."""


@dataclass
class _Hook:
    """One webhook of one configuration, with the v1 defaults filled in."""

    configuration: str
    index: int
    spec: Mapping[str, Any]
    mutating: bool

    @property
    def name(self) -> str:
        return str(self.spec.get("name", ""))

    @property
    def uid(self) -> tuple[str, int]:
        return (self.configuration, self.index)

    @property
    def fails_open(self) -> bool:
        return bool(self.spec.get("failurePolicy", "Fail") == "Ignore")

    @property
    def timeout(self) -> int:
        value = self.spec.get("timeoutSeconds")
        return DEFAULT_TIMEOUT_SECONDS if value is None else int(value)

    @property
    def reinvocable(self) -> bool:
        return self.mutating and self.spec.get("reinvocationPolicy", "Never") == "IfNeeded"


@dataclass
class _State:
    """What one admission accumulates: the object as mutated so far, and the warnings."""

    attrs: AdmissionAttributes
    obj: Object | None
    warnings: list[str] = field(default_factory=list)
    changed: bool = False


class WebhookDispatcher:
    """Calls the webhooks registered in the store, as kube-apiserver's admission plugins do.

    ``store`` reads the webhook configurations and namespaces (it is the fake
    server's store); ``services`` maps ``(namespace, name)`` of a Service
    reference to the ``"host:port"`` where the webhook really listens.  The
    dispatcher keeps nothing between calls but idle keep-alive connections to
    the webhooks (as kube-apiserver does), so one instance serves every worker
    thread of the server; :meth:`close` closes those.
    """

    def __init__(self, store: StoreReader, *, services: Mapping[tuple[str, str], str] | None = None) -> None:
        self._store = store
        self.services: dict[tuple[str, str], str] = dict(services or {})
        self.connections = Connections()

    def close(self) -> None:
        """Closes the idle connections to webhooks."""
        self.connections.close()

    def admit(self, attrs: AdmissionAttributes) -> AdmissionResult:
        """Runs mutating then validating webhooks for one write."""
        if attrs.group == GROUP and attrs.kind in _EXEMPT_KINDS:
            # Webhooks never see their own configurations: a broken webhook must stay removable.
            return AdmissionResult()
        state = _State(attrs, copy.deepcopy(attrs.object))
        try:
            self._mutate(state)
            self._validate(state)
        except _Refused as refused:
            return AdmissionResult(status=refused.status, warnings=tuple(state.warnings))
        return AdmissionResult(object=state.obj if state.changed else None, warnings=tuple(state.warnings))

    # --- configurations ---

    def _hooks(self, resource: str, mutating: bool) -> Iterator[_Hook]:
        configurations = self._store.list(GROUP, "v1", resource)
        for configuration in sorted(configurations, key=lambda c: c.get("metadata", {}).get("name", "")):
            name = configuration.get("metadata", {}).get("name", "")
            for index, spec in enumerate(configuration.get("webhooks") or ()):
                yield _Hook(name, index, spec, mutating)

    # --- mutating ---

    def _mutate(self, state: _State) -> None:
        hooks = list(self._hooks("mutatingwebhookconfigurations", mutating=True))
        previously_invoked: set[tuple[str, int]] = set()
        to_reinvoke: set[tuple[str, int]] = set()
        reinvoke = False
        for hook in hooks:
            if not self._should_call(hook, state):
                continue
            changed = self._call_mutating(hook, state)
            if changed:
                # Everything reinvocable that ran before this change must see the new object.
                to_reinvoke |= previously_invoked
                previously_invoked = set()
                reinvoke = True
            if hook.reinvocable:
                previously_invoked.add(hook.uid)
        if not reinvoke:
            return
        for hook in hooks:
            # Round 1 never calls a webhook for the first time.
            if hook.uid in to_reinvoke and self._should_call(hook, state):
                self._call_mutating(hook, state)

    def _call_mutating(self, hook: _Hook, state: _State) -> bool:
        try:
            response = self._call(hook, state)
        except _CallFailed as failure:
            self._fail(hook, str(failure))
            return False
        patch_b64 = response.get("patch")
        if not patch_b64:
            return False
        try:
            operations = _decode_patch(patch_b64)
        except ValueError as err:
            self._fail(
                hook,
                f'failed calling webhook "{hook.name}": '
                f"received undecodable patch in webhook response: {err}",
            )
            return False
        if not operations:
            return False
        if response.get("patchType", "JSONPatch") != "JSONPatch":
            self._fail(
                hook,
                f'failed calling webhook "{hook.name}": unsupported patch type "{response["patchType"]}"',
            )
            return False
        if state.obj is None:
            raise _Refused(
                _internal_error(
                    f'admission webhook "{hook.name}" attempted to modify the object, '
                    "which is not supported for this operation"
                )
            )
        try:
            patched = jsonpatch.JsonPatch(operations).apply(state.obj)
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError, KeyError) as err:
            # Applying is the apiserver's own work: a failure here is not subject to failurePolicy.
            raise _Refused(_internal_error(str(err))) from None
        if not isinstance(patched, dict):
            raise _Refused(_internal_error("Object 'Kind' is missing in the patched object"))
        if patched == state.obj:
            return False
        state.obj = patched
        state.changed = True
        return True

    # --- validating ---

    def _validate(self, state: _State) -> None:
        for hook in self._hooks("validatingwebhookconfigurations", mutating=False):
            if not self._should_call(hook, state):
                continue
            try:
                self._call(hook, state)
            except _CallFailed as failure:
                self._fail(hook, str(failure))

    # --- shared ---

    def _fail(self, hook: _Hook, message: str) -> None:
        """Applies ``failurePolicy`` to a failed call."""
        if hook.fails_open:
            log.warning("Failed calling webhook, failing open %s: %s", hook.name, message)
            return
        raise _Refused(_internal_error(message))

    def _should_call(self, hook: _Hook, state: _State) -> bool:
        """``ShouldCallHook``: selectors first, then rules; selector errors only count for a matching rule."""
        attrs = state.attrs
        ns_match, ns_error = self._namespace_matches(hook, state)
        if not ns_match and ns_error is None:
            return False
        obj_match, obj_error = _object_matches(hook, state)
        if not obj_match and obj_error is None:
            return False
        if not any(_rule_matches(rule, attrs) for rule in hook.spec.get("rules") or ()):
            return False
        if ns_error is not None:
            raise _Refused(ns_error)
        if obj_error is not None:
            raise _Refused(obj_error)
        return True

    def _namespace_matches(self, hook: _Hook, state: _State) -> tuple[bool, Object | None]:
        attrs = state.attrs
        is_namespace = attrs.group == "" and attrs.resource == "namespaces"
        namespace = attrs.namespace or (attrs.name if is_namespace else "")
        if not namespace and not is_namespace:
            return True, None
        try:
            selector = _selector(hook.spec, "namespaceSelector")
        except SelectorError as err:
            return False, _internal_error(str(err))
        if selector.empty:
            return True, None
        if is_namespace and not attrs.subresource and attrs.operation in ("CREATE", "UPDATE"):
            # The namespace being written is not stored yet: its own new labels decide.
            labels = ((state.obj or {}).get("metadata") or {}).get("labels") or {}
            return selector.matches(labels), None
        stored = self._store.get("", "v1", "namespaces", namespace)
        if stored is None:
            message = f'namespaces "{namespace}" not found'
            return False, status_body(404, "NotFound", message, {"name": namespace, "kind": "namespaces"})
        return selector.matches((stored.get("metadata") or {}).get("labels") or {}), None

    def _call(self, hook: _Hook, state: _State) -> Mapping[str, Any]:
        """Sends one review and returns its verified ``response``; raises :class:`_CallFailed` or refuses."""
        attrs = state.attrs
        side_effects = hook.spec.get("sideEffects")
        if attrs.dry_run:
            if side_effects is None:
                raise _CallFailed(f'failed calling webhook "{hook.name}": Webhook SideEffects is nil')
            if side_effects not in _NO_SIDE_EFFECTS:
                message = f'admission webhook "{hook.name}" does not support dry run'
                raise _Refused(status_body(400, "BadRequest", message))
        version = next(
            (v for v in hook.spec.get("admissionReviewVersions") or () if v in ("v1", "v1beta1")), None
        )
        if version is None:
            raise _CallFailed(
                f'failed calling webhook "{hook.name}": could not create admission objects: '
                "webhook does not accept known AdmissionReview versions (v1, v1beta1)"
            )
        uid = str(uuid.uuid4())
        review = {
            "kind": "AdmissionReview",
            "apiVersion": f"admission.k8s.io/{version}",
            "request": _request(uid, attrs, state.obj),
        }
        try:
            endpoint = resolve_endpoint(hook.spec.get("clientConfig") or {}, self.services)
            answer = post_review(endpoint, review, hook.timeout, self.connections)
        except CallError as err:
            raise _CallFailed(
                f'failed calling webhook "{hook.name}": failed to call webhook: {err}'
            ) from None
        except WebhookCallFailed as err:
            raise _CallFailed(f'failed calling webhook "{hook.name}": {err}') from None
        try:
            response = _verify(answer, uid, version, hook.mutating)
        except ValueError as err:
            raise _CallFailed(
                f'failed calling webhook "{hook.name}": received invalid webhook response: {err}'
            ) from None
        state.warnings.extend(str(w) for w in response.get("warnings") or ())
        if not response.get("allowed"):
            raise _Refused(_rejection(hook.name, response.get("status")))
        return response


# --- matching helpers ---


def _selector(spec: Mapping[str, Any], key: str) -> Selector:
    # The apiserver defaults both selectors to {} (everything) when they are left out.
    value = spec.get(key)
    return label_selector_from_dict({} if value is None else value)


def _object_matches(hook: _Hook, state: _State) -> tuple[bool, Object | None]:
    try:
        selector = _selector(hook.spec, "objectSelector")
    except SelectorError as err:
        return False, _internal_error(str(err))
    if selector.empty:
        return True, None
    candidates = (state.obj, state.attrs.old_object)
    return any(
        obj is not None and selector.matches((obj.get("metadata") or {}).get("labels") or {})
        for obj in candidates
    ), None


def _exact_or_wildcard(items: Any, wanted: str) -> bool:
    return any(item in ("*", wanted) for item in items or ())


def _rule_matches(rule: Mapping[str, Any], attrs: AdmissionAttributes) -> bool:
    is_namespace = attrs.group == "" and attrs.version == "v1" and attrs.resource == "namespaces"
    scope = rule.get("scope") or "*"
    if scope == "Namespaced":
        in_scope = not is_namespace and attrs.namespaced and bool(attrs.namespace)
    elif scope == "Cluster":
        in_scope = is_namespace or not attrs.namespace
    else:
        in_scope = scope == "*"
    if not in_scope:
        return False
    if not any(op in ("*", attrs.operation) for op in rule.get("operations") or ()):
        return False
    if not _exact_or_wildcard(rule.get("apiGroups"), attrs.group):
        return False
    if not _exact_or_wildcard(rule.get("apiVersions"), attrs.version):
        return False
    for entry in rule.get("resources") or ():
        resource, _, subresource = str(entry).partition("/")
        if resource in ("*", attrs.resource) and subresource in ("*", attrs.subresource):
            return True
    return False


# --- wire helpers ---


def _request(uid: str, attrs: AdmissionAttributes, obj: Object | None) -> Object:
    """``AdmissionRequest`` with the apiserver's field order; empty optional fields left out."""
    # A scale write is reviewed as an autoscaling/v1 Scale on apps/v1 deployments, say.
    kind_group, kind_version = attrs.kind_group_version
    kind = {"group": kind_group, "version": kind_version, "kind": attrs.kind}
    resource = {"group": attrs.group, "version": attrs.version, "resource": attrs.resource}
    request: Object = {"uid": uid, "kind": kind, "resource": resource}
    if attrs.subresource:
        request["subResource"] = attrs.subresource
    request["requestKind"] = dict(kind)
    request["requestResource"] = dict(resource)
    if attrs.subresource:
        request["requestSubResource"] = attrs.subresource
    if attrs.name:
        request["name"] = attrs.name
    namespace = attrs.namespace
    if not namespace and attrs.group == "" and attrs.resource == "namespaces" and attrs.operation != "CREATE":
        # The apiserver files requests for /api/v1/namespaces/<name> under that namespace.
        namespace = attrs.name
    if namespace:
        request["namespace"] = namespace
    request["operation"] = attrs.operation
    user: Object = {}
    for key in ("username", "uid", "groups", "extra"):
        if attrs.user.get(key):
            user[key] = copy.deepcopy(attrs.user.get(key))
    request["userInfo"] = user
    request["object"] = copy.deepcopy(obj)
    request["oldObject"] = copy.deepcopy(attrs.old_object)
    request["dryRun"] = attrs.dry_run
    request["options"] = copy.deepcopy(attrs.options)
    return request


def _verify(answer: Mapping[str, Any], uid: str, version: str, mutating: bool) -> Mapping[str, Any]:
    """``VerifyAdmissionResponse``: raises ``ValueError`` with the apiserver's reason."""
    response = answer.get("response")
    if not isinstance(response, Mapping):
        raise ValueError("webhook response was absent")
    if version == "v1beta1":
        # v1beta1 never checked uid, kind or patchType; a patch is taken as a JSON patch.
        if not mutating:
            return {k: v for k, v in response.items() if k not in ("patch", "patchType")}
        return response
    if response.get("uid", "") != uid:
        raise ValueError(f'expected response.uid="{uid}", got "{response.get("uid", "")}"')
    api_version, kind = str(answer.get("apiVersion", "")), str(answer.get("kind", ""))
    if (api_version, kind) != ("admission.k8s.io/v1", "AdmissionReview"):
        group, _, ver = api_version.rpartition("/")
        raise ValueError(
            "expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, "
            f"got {group}/{ver}, Kind={kind}"
        )
    has_patch = bool(response.get("patch"))
    patch_type = response.get("patchType")
    if mutating:
        if has_patch and patch_type is None:
            raise ValueError("webhook returned response.patch but not response.patchType")
        if not has_patch and patch_type is not None:
            raise ValueError("webhook returned response.patchType but not response.patch")
        if patch_type is not None and not patch_type:
            raise ValueError('webhook returned invalid response.patchType of ""')
    else:
        if has_patch:
            raise ValueError("validating webhook may not return response.patch")
        if patch_type is not None:
            raise ValueError("validating webhook may not return response.patchType")
    return response


def _decode_patch(patch_b64: Any) -> list[Any]:
    try:
        raw = base64.b64decode(patch_b64, validate=True)
    except (binascii.Error, ValueError, TypeError) as err:
        raise ValueError(f"illegal base64 data: {err}") from None
    try:
        operations = json.loads(raw)
    except ValueError as err:
        raise ValueError(str(err)) from None
    if not isinstance(operations, list):
        json_type = {dict: "object", str: "string", bool: "bool"}.get(type(operations), "number")
        raise ValueError(f"json: cannot unmarshal {json_type} into Go value of type jsonpatch.Patch")
    return operations


def _rejection(name: str, status: Any) -> Object:
    """``ToStatusErr``: the webhook's Status, forced to a failure of code >= 400, message prefixed."""
    result: dict[str, Any] = dict(status) if isinstance(status, Mapping) else {}
    denied = f'admission webhook "{name}" denied the request'
    code = result.get("code")
    code = code if isinstance(code, int) and code >= 400 else 400
    if result.get("message"):
        message = f"{denied}: {result['message']}"
    elif result.get("reason"):
        message = f"{denied}: {result['reason']}"
    else:
        message = f"{denied} without explanation"
    return status_body(code, str(result.get("reason") or ""), message, result.get("details"))
