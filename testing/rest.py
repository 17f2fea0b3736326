"""REST semantics of the fake server: what each verb does to the store, as kube-apiserver does it.

Everything here is synchronous and thread-safe (the store lock makes each
read-modify-write atomic); the HTTP layer runs it in worker threads, so an
admission hook may block on webhook calls.  Every refusal is a
:class:`~kcp_tmc.testing.errors.StatusError` carrying the apiserver's body.
"""

from __future__ import annotations

import base64
import binascii
import copy
import datetime
import json
import secrets
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from kcp_tmc.policies.documents import JsonLoader
from kcp_tmc.policies.selectors import (
    Selector,
    SelectorError,
    parse_field_selector,
    parse_selector,
)
from kcp_tmc.policies.validation import is_dns1123_label, is_dns1123_subdomain
from kcp_tmc.testing import errors, patching, protobuf, schema
from kcp_tmc.testing.auth import Authorizer, User, access_review, token_review
from kcp_tmc.testing.errors import FieldError, StatusError
from kcp_tmc.testing.fieldlabels import FieldFilter, FieldLabelError, field_filter
from kcp_tmc.testing.instruments import Counters, Faults, WriteLog, WriteRecord
from kcp_tmc.testing.resources import CRD_KEY, VIRTUAL, ResourceInfo, infos_from_crd
from kcp_tmc.testing.store import Store
from kcp_tmc.testing.types import AdmissionAttributes, AdmissionResult

Object = dict[str, Any]

PROTECTED_NAMESPACES = ("default", "kube-system", "kube-public")
# Create and update word it alike: the check runs before the object reaches the registry.
NAMESPACE_MISMATCH = "the namespace of the provided object does not match the namespace sent on the request"
_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"
_SERVER_SET_META = ("uid", "creationTimestamp", "resourceVersion", "generation", "managedFields", "selfLink")

AdmissionCallable = Callable[[AdmissionAttributes], AdmissionResult]


def now_rfc3339() -> str:
    """The current time as the apiserver writes timestamps (seconds, UTC, ``Z``)."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Call:
    """One resource request, decoded from HTTP (or made by a test helper)."""

    verb: str
    info: ResourceInfo
    namespace: str = ""
    name: str = ""
    subresource: str = ""
    query: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    content_type: str = "application/json"
    user: User = field(default_factory=lambda: User("admin", ("system:masters", "system:authenticated")))
    #: Test helpers skip admission, counters and the write log.
    direct: bool = False
    #: Admission already ran (a scale write admits the Scale, then updates the object).
    admitted: bool = False

    @property
    def dry_run(self) -> bool:
        """``?dryRun=All``."""
        return self.query.get("dryRun", "") == "All"

    @property
    def resource_label(self) -> str:
        """``plural`` or ``plural/subresource``."""
        return f"{self.info.plural}/{self.subresource}" if self.subresource else self.info.plural


class EncodedJSON(bytes):
    """A JSON body encoded already: a list put together from its items' cached encodings."""


@dataclass
class Reply:
    """What to answer: status code, JSON body (or one encoded already), warnings."""

    code: int
    body: Object | EncodedJSON
    warnings: list[str] = field(default_factory=list)

    @property
    def obj(self) -> Object:
        """The body as an object (decoded, when it was encoded already)."""
        if isinstance(self.body, EncodedJSON):
            decoded: Object = json.loads(self.body)
            return decoded
        return self.body


#: What kube-apiserver lists when it refuses a body's media type (custom resources included).
BODY_MEDIA_TYPES = ["application/json", "application/yaml", protobuf.MEDIA_TYPE]


def body_kind(call: Call) -> tuple[str, str]:
    """``(apiVersion, kind)`` of the object a request body must hold."""
    if call.verb in ("delete", "deletecollection"):
        return "v1", "DeleteOptions"
    if call.subresource == "scale":
        return "autoscaling/v1", "Scale"
    info = call.info
    return (f"{info.group}/{info.version}" if info.group else info.version), info.kind


def decode_body(call: Call) -> Any:
    """The request body as JSON (sent as JSON, YAML or protobuf); 400 when it does not parse."""
    media_type = call.content_type.split(";")[0].strip().lower()
    if media_type == protobuf.MEDIA_TYPE:
        api_version, kind = body_kind(call)
        if call.info.custom or f"{api_version}/{kind}" not in protobuf.known_kinds():
            # Custom resources have no protobuf form (client-go never sends them so).
            raise errors.unsupported_media_type(BODY_MEDIA_TYPES[:2])
        return protobuf.decode(call.body, api_version, kind)
    if media_type not in ("application/json", "application/yaml", ""):
        raise errors.unsupported_media_type(BODY_MEDIA_TYPES)
    if not call.body:
        return None
    text = call.body.decode("utf-8", errors="replace")
    try:
        if "yaml" in media_type:
            return yaml.load(text, Loader=JsonLoader)  # noqa: S506 (JsonLoader is a SafeLoader subclass)
        return json.loads(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise errors.bad_request(f"couldn't get version/kind; json parse error: {exc}") from exc


def _meta(obj: Object) -> Object:
    meta = obj.get("metadata")
    if meta is None:
        meta = obj["metadata"] = {}
    if not isinstance(meta, dict):
        raise errors.bad_request("metadata must be an object")
    return meta


def _jsonpath_get(obj: Object, path: str) -> Any:
    current: Any = obj
    for part in path.strip(".").split("."):
        if not isinstance(current, dict):
            return None
        current = current.get(part)
    return current


def _jsonpath_set(obj: Object, path: str, value: Any) -> None:
    parts = path.strip(".").split(".")
    current = obj
    for part in parts[:-1]:
        current = current.setdefault(part, {})
    current[parts[-1]] = value


def selector_string(selector: Any) -> str:
    """A ``metav1.LabelSelector`` printed the way ``Scale.status.selector`` shows it."""
    if not isinstance(selector, dict):
        return ""
    terms = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        op = expr.get("operator", "")
        values = ",".join(sorted(expr.get("values") or []))
        key = expr.get("key", "")
        if op == "In":
            terms.append(f"{key} in ({values})")
        elif op == "NotIn":
            terms.append(f"{key} notin ({values})")
        elif op == "Exists":
            terms.append(key)
        elif op == "DoesNotExist":
            terms.append(f"!{key}")
    return ",".join(sorted(terms))


class Rest:
    """The verbs, applied to the store."""

    def __init__(
        self,
        store: Store,
        authorizer: Authorizer,
        tokens: Mapping[str, User],
        counters: Counters,
        write_log: WriteLog,
        faults: Faults,
    ) -> None:
        self.store = store
        #: (resource, namespace, name) -> (stored object, apiVersion, its list-item encoding).
        self._encoded: dict[tuple[Any, str, str], tuple[Object, str, bytes]] = {}
        self.authorizer = authorizer
        self.tokens = tokens
        self.counters = counters
        self.write_log = write_log
        self.faults = faults
        self.admission: Any = None

    # --- dispatch ---------------------------------------------------------------------------------

    def handle(self, call: Call) -> Reply:
        """Runs one request; raises :class:`StatusError` to refuse it."""
        info = call.info
        dry_run = call.query.get("dryRun")
        if dry_run not in (None, "All") and call.verb in (
            "create",
            "update",
            "patch",
            "delete",
            "deletecollection",
        ):
            kind = {"create": "CreateOptions", "update": "UpdateOptions", "patch": "PatchOptions"}.get(
                call.verb, "DeleteOptions"
            )
            raise errors.invalid(
                "meta.k8s.io", kind, "", [FieldError.not_supported("dryRun", [dry_run], ["All"])]
            )
        if call.verb not in info.verbs and not call.subresource:
            raise errors.method_not_supported(info.group, info.plural, call.verb)
        if info.key in VIRTUAL:
            return self._review(call)
        if call.subresource:
            return self._subresource(call)
        verb = call.verb
        if verb == "get":
            return Reply(200, self._served(info, self._existing(call)))
        if verb == "list":
            return Reply(200, self.list_encoded(call))
        if verb == "create":
            return self.create(call)
        if verb == "update":
            return self.update(call)
        if verb == "patch":
            return self.patch(call)
        if verb == "delete":
            return self.delete(call)
        if verb == "deletecollection":
            return self.delete_collection(call)
        raise errors.method_not_supported(info.group, info.plural, verb)

    def _subresource(self, call: Call) -> Reply:
        info, sub = call.info, call.subresource
        allowed: tuple[str, ...] = ("get", "update", "patch")
        if sub == "finalize" and "finalize" in info.extra_subresources:
            allowed = ("update",)
        elif sub not in info.subresources:
            raise errors.not_found_path()
        if call.verb not in allowed:
            raise errors.method_not_supported(info.group, f"{info.plural}/{sub}", call.verb)
        if sub == "scale":
            return self._scale(call)
        if call.verb == "get":
            return Reply(200, self._served(info, self._existing(call)))
        if call.verb == "update":
            return self.update(call)
        return self.patch(call)

    # --- helpers -------------------------------------------------------------------------------------

    def _existing(self, call: Call) -> Object:
        with self.store.lock:
            obj = self.store.read(call.info.key, call.namespace, call.name)
            if obj is None:
                raise errors.not_found(call.info.group, call.info.plural, call.name)
            return copy.deepcopy(obj)

    def _served(self, info: ResourceInfo, obj: Object, in_list: bool = False, shared: bool = False) -> Object:
        # ``shared``: a shallow copy.  Safe only for a reply that is encoded and not changed, because the
        # store never changes an object in place once committed (every write commits a new one).
        out = dict(obj) if shared else copy.deepcopy(obj)
        if in_list and not info.custom:
            out.pop("apiVersion", None)
            out.pop("kind", None)
            return out
        body = {"apiVersion": info.api_version, "kind": info.kind}
        body.update({k: v for k, v in out.items() if k not in ("apiVersion", "kind")})
        return body

    def _check_namespace(self, call: Call, creating: bool) -> None:
        if not call.info.namespaced:
            return
        ns = self.store.read(("", "namespaces"), "", call.namespace)
        if ns is None:
            raise errors.not_found("", "namespaces", call.namespace)
        if creating and (ns.get("metadata") or {}).get("deletionTimestamp"):
            error = errors.forbidden(
                call.info.group,
                call.info.plural,
                call.name,
                f"unable to create new content in namespace {call.namespace} because it is being terminated",
            )
            error.body["details"]["causes"] = [
                {
                    "reason": "NamespaceTerminating",
                    "message": f"namespace {call.namespace} is being terminated",
                    "field": "metadata.namespace",
                }
            ]
            raise error

    def _admit(
        self,
        call: Call,
        operation: str,
        obj: Object | None,
        old: Object | None,
        options: Object,
        scale: bool = False,
    ) -> tuple[Object | None, list[str]]:
        if call.direct or call.admitted or self.admission is None:
            return obj, []
        info = call.info
        meta = (obj or old or {}).get("metadata") or {}
        # A scale write is admitted as what it is: an autoscaling/v1 Scale on the subresource.
        kind = "Scale" if scale else info.kind

        def shown(value: Object | None) -> Object | None:
            if value is None:
                return None
            return copy.deepcopy(value) if scale else self._served(info, value)

        attrs = AdmissionAttributes(
            operation=operation,  # type: ignore[arg-type]
            group=info.group,
            version=info.version,
            kind=kind,
            resource=info.plural,
            subresource=call.subresource,
            namespace=call.namespace if info.namespaced else "",
            name=str(meta.get("name", call.name)),
            object=shown(obj),
            old_object=shown(old),
            kind_group="autoscaling" if scale else None,
            kind_version="v1" if scale else None,
            user=call.user.info(),  # type: ignore[arg-type]
            dry_run=call.dry_run,
            options=options,
            namespaced=info.namespaced,
            uid=str(uuid.uuid4()),
        )
        result = self.admission(attrs)
        warnings = list(result.warnings or ())
        if result.status is not None:
            body = dict(result.status)
            body.setdefault("kind", "Status")
            body.setdefault("apiVersion", "v1")
            body.setdefault("metadata", {})
            body.setdefault("status", "Failure")
            body.setdefault("code", 403)
            error = StatusError(body)
            error.headers["_warnings"] = json.dumps(warnings)
            raise error
        if result.object is not None and obj is not None:
            return copy.deepcopy(result.object), warnings
        return obj, warnings

    def _record(self, call: Call, verb: str, name: str) -> None:
        if call.direct or call.dry_run:
            return
        self.counters.record_write(verb, call.info.group, call.info.plural, call.subresource)
        self.write_log.add(WriteRecord(call.user.name, verb, call.resource_label, name, time.time()))

    @staticmethod
    def _options(kind: str, call: Call) -> Object:
        options: Object = {"kind": kind, "apiVersion": "meta.k8s.io/v1"}
        if call.dry_run:
            options["dryRun"] = ["All"]
        if call.query.get("fieldManager"):
            options["fieldManager"] = call.query["fieldManager"]
        return options

    def _schema_pass(self, call: Call, obj: Object, warnings: list[str]) -> None:
        """Prune, default and validate a custom resource (or the built-in defaults)."""
        info = call.info
        if info.custom:
            pruned = schema.prune(obj, info.schema)
            if pruned:
                directive = call.query.get("fieldValidation", "Warn")
                messages = schema.unknown_field_messages(pruned)
                if directive == "Strict":
                    raise errors.bad_request("strict decoding error: " + ", ".join(messages))
                if directive != "Ignore":
                    warnings.extend(messages)
            schema.apply_defaults(obj, info.schema)
        else:
            self._builtin_defaults(info, obj)

    def _validate(self, call: Call, obj: Object, old: Object | None) -> None:
        info = call.info
        meta = obj.get("metadata") or {}
        for key in ("labels", "annotations", "finalizers", "ownerReferences"):
            # ObjectMeta fields are omitempty: an emptied map or list is not stored.
            if key in meta and not meta[key]:
                del meta[key]
        name = str(meta.get("name", ""))
        problems: list[FieldError] = []
        if old is None:
            # Namespaces are DNS labels, everything else a DNS subdomain (ValidateObjectMeta).
            check = is_dns1123_label if info.key == ("", "namespaces") else is_dns1123_subdomain
            problems.extend(FieldError.invalid("metadata.name", name, message) for message in check(name))
        if old is not None and (old.get("metadata") or {}).get("deletionTimestamp"):
            new_finalizers = set(meta.get("finalizers") or []) - set(old["metadata"].get("finalizers") or [])
            if new_finalizers:
                problems.append(
                    FieldError.forbidden(
                        "metadata.finalizers", "no new finalizers can be added if the object is being deleted"
                    )
                )
        if info.custom:
            problems.extend(schema.validate(obj, info.schema))
            if info.scale is not None:
                problems.extend(_scale_spec_problems(obj, info.scale.spec_replicas))
        if info.key == CRD_KEY:
            problems.extend(self._validate_crd(obj, old))
        if problems:
            raise errors.invalid(info.group, info.kind, name, problems)

    def _generation_changed(self, info: ResourceInfo, old: Object, new: Object) -> bool:
        if info.custom:
            drop = {"metadata", "status"} if info.status else {"metadata"}
            return {k: v for k, v in old.items() if k not in drop | {"apiVersion", "kind"}} != {
                k: v for k, v in new.items() if k not in drop | {"apiVersion", "kind"}
            }
        if info.key in (
            ("admissionregistration.k8s.io", "validatingwebhookconfigurations"),
            ("admissionregistration.k8s.io", "mutatingwebhookconfigurations"),
        ):
            return old.get("webhooks") != new.get("webhooks")
        return old.get("spec") != new.get("spec")

    # --- create ------------------------------------------------------------------------------------

    def _decode_object(self, call: Call) -> Object:
        body = decode_body(call)
        if not isinstance(body, dict):
            raise errors.bad_request(
                f"the object provided is unrecognized (must be of type {call.info.kind}): "
                "couldn't get version/kind; json parse error: expected an object"
            )
        return body

    def _check_type(self, call: Call, obj: Object) -> None:
        info = call.info
        api_version = obj.get("apiVersion")
        kind = obj.get("kind")
        if api_version and api_version != info.api_version:
            group = api_version.rpartition("/")[0]
            if group != info.group:
                raise errors.bad_request(
                    f"the API version in the data ({api_version}) does not match the expected API version "
                    f"({info.api_version})"
                )
        if kind and kind != info.kind:
            raise errors.bad_request(
                f"{kind} in version {json.dumps(info.version)} cannot be handled as a {info.kind}: "
                f"no kind {json.dumps(kind)} is registered for version {json.dumps(info.api_version)}"
            )
        obj["apiVersion"], obj["kind"] = info.api_version, info.kind

    def create(self, call: Call, obj: Object | None = None) -> Reply:
        """POST: a new object (201), or 409 AlreadyExists."""
        info = call.info
        obj = copy.deepcopy(obj) if obj is not None else self._decode_object(call)
        self._check_type(call, obj)
        meta = _meta(obj)
        if info.namespaced:
            if meta.get("namespace") and call.namespace and meta["namespace"] != call.namespace:
                raise errors.bad_request(NAMESPACE_MISMATCH)
            call.namespace = call.namespace or str(meta.get("namespace", ""))
            meta["namespace"] = call.namespace
        else:
            meta.pop("namespace", None)
        if meta.get("resourceVersion"):
            # The storage layer refuses this before anything is written (reason Unknown, code 500).
            raise StatusError(
                errors.status(500, "Unknown", "resourceVersion should not be set on objects to be created")
            )
        name = str(meta.get("name") or "")
        if not name and meta.get("generateName"):
            name = str(meta["generateName"]) + "".join(secrets.choice(_NAME_CHARS) for _ in range(5))
        if not name:
            raise errors.invalid(
                info.group,
                info.kind,
                "",
                [FieldError.required("metadata.name", "name or generateName is required")],
            )
        meta["name"] = call.name = name
        for key in _SERVER_SET_META:
            meta.pop(key, None)
        meta.pop("deletionTimestamp", None)
        meta.pop("deletionGracePeriodSeconds", None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_rfc3339()
        if info.generation:
            meta["generation"] = 1
        if info.status:
            obj.pop("status", None)
        warnings: list[str] = []
        self._schema_pass(call, obj, warnings)
        self._prepare_create(info, obj)
        with self.store.lock:
            self._check_namespace(call, creating=True)
            if self.store.read(info.key, call.namespace, name) is not None:
                raise errors.already_exists(info.group, info.plural, name)
        admitted, more = self._admit(call, "CREATE", obj, None, self._options("CreateOptions", call))
        warnings.extend(more)
        assert admitted is not None  # noqa: S101 (an invariant for the type checker, not a check of input)
        obj = admitted
        meta = _meta(obj)
        meta["name"], meta["uid"] = name, meta.get("uid") or str(uuid.uuid4())
        if info.namespaced:
            meta["namespace"] = call.namespace
        self._check_type(call, obj)
        if info.custom and self.admission is not None and not call.direct:
            schema.prune(obj, info.schema)
            schema.apply_defaults(obj, info.schema)
        self._validate(call, obj, None)
        with self.store.lock:
            self._check_namespace(call, creating=True)
            if self.store.read(info.key, call.namespace, name) is not None:
                raise errors.already_exists(info.group, info.plural, name)
            if call.dry_run:
                meta.pop("resourceVersion", None)
                return Reply(201, self._served(info, obj), warnings)
            stored = self.store.commit(info.key, obj, None)
            self._after_write(info, stored, None)
            out = self._served(info, stored)
        self._record(call, "create", name)
        return Reply(201, out, warnings)

    def _prepare_create(self, info: ResourceInfo, obj: Object) -> None:
        meta = obj["metadata"]
        if info.key == ("", "namespaces"):
            labels = meta.setdefault("labels", {})
            labels["kubernetes.io/metadata.name"] = meta["name"]
            obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
            obj["status"] = {"phase": "Active"}
        elif info.key == CRD_KEY:
            obj["status"] = self._crd_status(obj)
        elif info.key == ("", "pods"):
            obj["status"] = {"phase": "Pending", "qosClass": "BestEffort"}

    def _builtin_defaults(self, info: ResourceInfo, obj: Object) -> None:
        if info.key == ("", "secrets"):
            obj.setdefault("type", "Opaque")
            string_data = obj.pop("stringData", None)
            if isinstance(string_data, dict):
                data = obj.setdefault("data", {})
                for key, value in string_data.items():
                    data[key] = base64.b64encode(str(value).encode()).decode()
        elif info.key in (("apps", "deployments"), ("apps", "statefulsets"), ("apps", "replicasets")):
            spec = obj.setdefault("spec", {})
            spec.setdefault("replicas", 1)
            spec.setdefault("revisionHistoryLimit", 10)
            if info.plural == "deployments":
                spec.setdefault("progressDeadlineSeconds", 600)
                spec.setdefault(
                    "strategy",
                    {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
                )
        elif info.key == ("", "services"):
            spec = obj.setdefault("spec", {})
            spec.setdefault("type", "ClusterIP")
            spec.setdefault("sessionAffinity", "None")
        elif info.key == CRD_KEY:
            names = (obj.get("spec") or {}).get("names") or {}
            if isinstance(names, dict) and names.get("kind"):
                names.setdefault("singular", str(names["kind"]).lower())
                names.setdefault("listKind", f"{names['kind']}List")

    # --- update and patch ----------------------------------------------------------------------

    def update(self, call: Call, obj: Object | None = None) -> Reply:
        """PUT: replace the object (or its status) under a resourceVersion precondition."""
        info = call.info
        new = copy.deepcopy(obj) if obj is not None else self._decode_object(call)
        self._check_type(call, new)
        meta = _meta(new)
        body_name = meta.get("name")
        if body_name and body_name != call.name:
            raise errors.bad_request(
                f"the name of the object ({body_name}) does not match the name on the URL ({call.name})"
            )
        if info.namespaced and meta.get("namespace") and meta["namespace"] != call.namespace:
            raise errors.bad_request(NAMESPACE_MISMATCH)
        requested_rv = str(meta.get("resourceVersion") or "")
        if not requested_rv and not info.unconditional_update and call.subresource != "finalize":
            # The registry names the resource where a kind belongs (GroupKind{Kind: resource}), so this
            # reads `synctargets.workload.kcp.io "x" is invalid` with details.kind "synctargets".
            raise errors.invalid(
                info.group,
                info.plural,
                call.name,
                [FieldError.invalid("metadata.resourceVersion", 0, "must be specified for an update")],
            )
        return self._apply_update(call, lambda old: new, requested_rv, "update")

    def patch(self, call: Call) -> Reply:
        """PATCH with JSON patch, merge patch or (built-ins) strategic merge patch."""
        info = call.info
        content_type = call.content_type.split(";")[0].strip()
        accepted = patching.accepted_patch_types(info.custom)
        if content_type not in accepted or content_type == patching.APPLY_PATCH:
            if content_type == patching.APPLY_PATCH:
                return self._apply_patch(call)
            # Custom resources list what they take; built-in kinds answer with the bare HTTP reason.
            raise errors.unsupported_media_type(accepted) if info.custom else errors.unsupported_patch_type()
        try:
            patch_doc = json.loads(call.body.decode("utf-8") or "null")
        except ValueError as exc:
            raise errors.bad_request(f"error decoding patch: {exc}") from exc

        def patched(old: Object) -> Object:
            base = self._served(info, old)
            if content_type == patching.JSON_PATCH:
                return patching.json_patch(base, patch_doc)
            if not isinstance(patch_doc, dict):
                raise errors.bad_request("error decoding patch: a merge patch must be a JSON object")
            if content_type == patching.MERGE_PATCH:
                result = patching.merge_patch(base, patch_doc)
            else:
                result = patching.strategic_merge_patch(base, patch_doc)
            assert isinstance(result, dict)  # noqa: S101 (an invariant for the type checker, not a check of input)
            return result

        return self._apply_update(call, patched, None, "patch")

    def _apply_patch(self, call: Call) -> Reply:
        """Server-side apply, simplified: create when absent, else a recursive merge (no field ownership)."""
        info = call.info
        if not call.query.get("fieldManager"):
            raise errors.invalid(
                "meta.k8s.io",
                "PatchOptions",
                "",
                [FieldError.required("fieldManager", "is required for apply patch")],
            )
        try:
            applied = yaml.load(call.body.decode("utf-8"), Loader=JsonLoader)  # noqa: S506 (JsonLoader is a SafeLoader subclass)
        except yaml.YAMLError as exc:
            raise errors.bad_request(f"error decoding YAML: {exc}") from exc
        if not isinstance(applied, dict):
            raise errors.bad_request("error decoding YAML: the applied configuration must be an object")
        with self.store.lock:
            exists = self.store.read(info.key, call.namespace, call.name) is not None
        if not exists:
            applied.setdefault("metadata", {})["name"] = call.name
            return self.create(call, applied)
        applied.get("metadata", {}).pop("resourceVersion", None)
        return self._apply_update(
            call, lambda old: patching.merge_patch(self._served(info, old), applied), None, "patch"
        )

    def _apply_update(
        self, call: Call, change: Callable[[Object], Object], requested_rv: str | None, verb: str
    ) -> Reply:
        info = call.info
        old = self._existing(call)
        if self.faults.take_conflict(info.plural) and not call.direct:
            raise errors.conflict(info.group, info.plural, call.name)
        new = change(copy.deepcopy(old))
        if not isinstance(new, dict):
            raise patching.unprocessable()
        self._check_type(call, new)
        meta = _meta(new)
        if requested_rv is None:
            requested_rv = str(meta.get("resourceVersion") or "")
        if requested_rv and requested_rv != old["metadata"]["resourceVersion"]:
            raise errors.conflict(info.group, info.plural, call.name)
        if meta.get("uid") and meta["uid"] != old["metadata"]["uid"]:
            raise errors.conflict(
                info.group,
                info.plural,
                call.name,
                f"Precondition failed: UID in precondition: {meta['uid']}, "
                f"UID in object meta: {old['metadata']['uid']}",
            )
        new = self._shape_update(call, old, new)
        warnings: list[str] = []
        self._schema_pass(call, new, warnings)
        if info.key == CRD_KEY:
            new["status"] = self._crd_status(new, old.get("status"))
        admitted, more = self._admit(call, "UPDATE", new, old, self._options("UpdateOptions", call))
        warnings.extend(more)
        assert admitted is not None  # noqa: S101 (an invariant for the type checker, not a check of input)
        new = self._shape_update(call, old, admitted)
        if info.custom and self.admission is not None and not call.direct:
            schema.prune(new, info.schema)
            schema.apply_defaults(new, info.schema)
        self._validate(call, new, old)
        if info.generation and self._generation_changed(info, old, new):
            new["metadata"]["generation"] = int(old["metadata"].get("generation") or 0) + 1
        with self.store.lock:
            current = self.store.read(info.key, call.namespace, call.name)
            if current is None:
                raise errors.not_found(info.group, info.plural, call.name)
            if current["metadata"]["resourceVersion"] != old["metadata"]["resourceVersion"]:
                # Someone wrote in between: an explicit precondition loses, an unconditional write retries.
                if requested_rv:
                    raise errors.conflict(info.group, info.plural, call.name)
                return self._apply_update(call, change, None, verb)
            unchanged = {k: v for k, v in new.items() if k != "apiVersion"} == {
                k: v for k, v in old.items() if k != "apiVersion"
            }
            if call.dry_run or unchanged:
                result = self._served(info, new if call.dry_run else old)
                if not call.dry_run:
                    self._record(call, verb, call.name)
                return Reply(200, result, warnings)
            if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
                if info.key == ("", "namespaces"):
                    stored = self.store.commit(info.key, new, old)
                    out = self._served(info, stored)
                else:
                    gone = self.store.remove(info.key, new)
                    self._after_delete(info, gone)
                    out = self._served(info, gone)
            else:
                stored = self.store.commit(info.key, new, old)
                self._after_write(info, stored, old)
                out = self._served(info, stored)
        self._record(call, verb, call.name)
        return Reply(200, out, warnings)

    def _shape_update(self, call: Call, old: Object, new: Object) -> Object:
        """Applies what the strategies keep from the stored object."""
        info = call.info
        new = copy.deepcopy(new)
        if call.subresource == "status":
            shaped = copy.deepcopy(old)
            if "status" in new:
                shaped["status"] = new["status"]
            else:
                shaped.pop("status", None)
            new = shaped
        elif call.subresource == "finalize":
            shaped = copy.deepcopy(old)
            shaped.setdefault("spec", {})["finalizers"] = (new.get("spec") or {}).get("finalizers") or []
            if not shaped["spec"]["finalizers"]:
                shaped["spec"].pop("finalizers")
            new = shaped
        elif info.status:
            if "status" in old:
                new["status"] = copy.deepcopy(old["status"])
            else:
                new.pop("status", None)
        meta = _meta(new)
        old_meta = old["metadata"]
        for key in (
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
        ):
            if key in old_meta:
                meta[key] = old_meta[key]
            else:
                meta.pop(key, None)
        meta["name"] = old_meta["name"]
        if info.namespaced:
            meta["namespace"] = old_meta.get("namespace", "")
        meta["resourceVersion"] = old_meta["resourceVersion"]
        meta.pop("managedFields", None)
        meta.pop("selfLink", None)
        if info.key == ("", "namespaces"):
            meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = old_meta["name"]
            if call.subresource != "status":
                new["status"] = copy.deepcopy(old.get("status", {}))
        return new

    # --- scale -----------------------------------------------------------------------------------------

    def _scale_of(self, info: ResourceInfo, obj: Object) -> Object:
        paths = info.scale
        assert paths is not None  # noqa: S101 (an invariant for the type checker, not a check of input)
        meta = obj["metadata"]
        scale: Object = {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                k: meta[k]
                for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                if k in meta
            },
            "spec": {},
            "status": {"replicas": int(_jsonpath_get(obj, paths.status_replicas) or 0)},
        }
        replicas = _jsonpath_get(obj, paths.spec_replicas)
        if replicas is not None:
            scale["spec"]["replicas"] = replicas
        if paths.selector_from_spec:
            selector = selector_string((obj.get("spec") or {}).get("selector"))
        elif paths.label_selector:
            selector = str(_jsonpath_get(obj, paths.label_selector) or "")
        else:
            selector = ""
        if selector:
            scale["status"]["selector"] = selector
        return scale

    def _scale(self, call: Call) -> Reply:
        info = call.info
        paths = info.scale
        assert paths is not None  # noqa: S101 (an invariant for the type checker, not a check of input)
        old = self._existing(call)
        if call.verb == "get":
            return Reply(200, self._scale_of(info, old))
        current = self._scale_of(info, old)
        if call.verb == "update":
            body = self._decode_object(call)
        else:
            content_type = call.content_type.split(";")[0].strip()
            try:
                patch_doc = json.loads(call.body.decode("utf-8") or "null")
            except ValueError as exc:
                raise errors.bad_request(f"error decoding patch: {exc}") from exc
            if content_type == patching.JSON_PATCH:
                body = patching.json_patch(current, patch_doc)
            elif content_type in (patching.MERGE_PATCH, patching.STRATEGIC_MERGE_PATCH):
                body = patching.merge_patch(current, patch_doc)
            else:
                raise errors.unsupported_media_type(patching.accepted_patch_types(False))
        replicas = (body.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise errors.invalid(
                "autoscaling",
                "Scale",
                call.name,
                [
                    FieldError.invalid(
                        "spec.replicas",
                        replicas if replicas is not None else 0,
                        "must be greater than or equal to 0",
                    )
                ],
            )
        rv = str((body.get("metadata") or {}).get("resourceVersion") or "")
        wanted = copy.deepcopy(current)
        wanted["spec"]["replicas"] = replicas
        options = self._options("UpdateOptions", call)
        _, warnings = self._admit(call, "UPDATE", wanted, current, options, scale=True)

        def rescale(obj: Object) -> Object:
            _jsonpath_set(obj, paths.spec_replicas, replicas)
            return obj

        # The write itself is an update of the main object that only touches the replicas field.
        write = Call(
            call.verb, info, call.namespace, call.name, "scale", call.query, b"", "", call.user, call.direct
        )
        write.admitted = True
        reply = self._apply_update(write, rescale, rv or None, call.verb)
        return Reply(200, self._scale_of(info, reply.obj), warnings + reply.warnings)

    # --- delete -----------------------------------------------------------------------------------------

    def _delete_options(self, call: Call) -> Object:
        options: Object = {}
        if call.body:
            body = decode_body(call)
            if isinstance(body, dict):
                options = body
        if "gracePeriodSeconds" in call.query:
            options["gracePeriodSeconds"] = int(call.query["gracePeriodSeconds"])
        if "propagationPolicy" in call.query:
            options["propagationPolicy"] = call.query["propagationPolicy"]
        if call.dry_run or "All" in (options.get("dryRun") or []):
            call.query = {**call.query, "dryRun": "All"}
        return options

    def delete(self, call: Call) -> Reply:
        """DELETE: gone at once (a Success Status), or marked for deletion while finalizers remain."""
        info = call.info
        options = self._delete_options(call)
        old = self._existing(call)
        preconditions = options.get("preconditions") or {}
        meta = old["metadata"]
        if preconditions.get("uid") and preconditions["uid"] != meta["uid"]:
            raise errors.precondition_conflict(
                info.group,
                info.kind,
                call.name,
                f"the UID in the precondition ({preconditions['uid']}) does not match the UID in record "
                f"({meta['uid']}). The object might have been deleted and then recreated",
            )
        if (
            preconditions.get("resourceVersion")
            and preconditions["resourceVersion"] != meta["resourceVersion"]
        ):
            raise errors.precondition_conflict(
                info.group,
                info.kind,
                call.name,
                f"the ResourceVersion in the precondition ({preconditions['resourceVersion']}) does not "
                f"match the ResourceVersion in record ({meta['resourceVersion']}). "
                "The object might have been modified",
            )
        if info.key == ("", "namespaces") and call.name in PROTECTED_NAMESPACES:
            raise errors.forbidden("", "namespaces", call.name, "this namespace may not be deleted")
        admission_options: Object = {"kind": "DeleteOptions", "apiVersion": "meta.k8s.io/v1"}
        admission_options.update({k: v for k, v in options.items() if k not in ("kind", "apiVersion")})
        if call.dry_run:
            admission_options["dryRun"] = ["All"]
        _, warnings = self._admit(call, "DELETE", None, old, admission_options)
        reply = self._delete_now(call, old)
        reply.warnings = warnings + reply.warnings
        return reply

    def _delete_now(self, call: Call, old: Object) -> Reply:
        info = call.info
        with self.store.lock:
            current = self.store.read(info.key, call.namespace, call.name)
            if current is None:
                raise errors.not_found(info.group, info.plural, call.name)
            meta = current["metadata"]
            graceful = bool(meta.get("finalizers")) or info.key == ("", "namespaces")
            if graceful:
                if meta.get("deletionTimestamp"):
                    return Reply(200, self._served(info, current))
                marked = copy.deepcopy(current)
                marked["metadata"]["deletionTimestamp"] = now_rfc3339()
                marked["metadata"]["deletionGracePeriodSeconds"] = 0
                if info.key == ("", "namespaces"):
                    marked.setdefault("status", {})["phase"] = "Terminating"
                if call.dry_run:
                    return Reply(200, self._served(info, marked))
                stored = self.store.commit(info.key, marked, current)
                out = self._served(info, stored)
            else:
                if call.dry_run:
                    return Reply(200, self._served(info, current))
                gone = self.store.remove(info.key, current)
                self._after_delete(info, gone)
                out = errors.success(
                    {"name": call.name, "group": info.group, "kind": info.plural, "uid": meta.get("uid")}
                )
        self._record(call, "delete", call.name)
        return Reply(200, out)

    def delete_collection(self, call: Call) -> Reply:
        """DELETE on a collection: every matching object; answers with the list of what was deleted."""
        info = call.info
        self._delete_options(call)
        listing = self.list_objects(call)
        deleted: list[Object] = []
        warnings: list[str] = []
        for item in listing["items"]:
            meta = item["metadata"]
            one = Call(
                "delete",
                info,
                meta.get("namespace", ""),
                meta["name"],
                "",
                call.query,
                b"",
                call.content_type,
                call.user,
                call.direct,
            )
            try:
                old = self._existing(one)
                _, more = self._admit(
                    one, "DELETE", None, old, {"kind": "DeleteOptions", "apiVersion": "meta.k8s.io/v1"}
                )
                warnings.extend(more)
                self._delete_now(one, old)
            except StatusError as exc:
                if exc.code != 404:
                    raise
                continue
            deleted.append(item)
        body = {
            "apiVersion": info.api_version,
            "kind": info.list_kind,
            "metadata": {"resourceVersion": str(self.store.resource_version)},
            "items": deleted,
        }
        return Reply(200, body, warnings)

    # --- list --------------------------------------------------------------------------------------------

    def selectors(self, call: Call) -> tuple[Selector, FieldFilter]:
        """Parses ``labelSelector`` and ``fieldSelector``; 400 with apimachinery's message when invalid.

        Each field goes through the kind's field-label conversion (:mod:`kcp_tmc.testing.fieldlabels`),
        so a refused field is worded as that kind's conversion words it.
        """
        try:
            labels = parse_selector(call.query.get("labelSelector", ""))
        except SelectorError as exc:
            raise errors.bad_request(str(exc)) from exc
        try:
            parsed = parse_field_selector(call.query.get("fieldSelector", ""), None)
        except SelectorError as exc:
            raise errors.bad_request(str(exc)) from exc
        try:
            fields = field_filter(call.info, parsed)
        except FieldLabelError as exc:
            raise errors.bad_request(str(exc)) from exc
        return labels, fields

    def list_objects(self, call: Call, shared: bool = False) -> Object:
        """GET on a collection: items in key order, with ``limit``/``continue`` pagination.

        ``shared`` items are shallow copies of the stored objects, for a reply that is only encoded.
        """
        info, page, list_meta = self._list_page(call)
        items = [self._served(info, o, in_list=True, shared=shared) for o in page]
        return {"apiVersion": info.api_version, "kind": info.list_kind, "metadata": list_meta, "items": items}

    def list_encoded(self, call: Call) -> EncodedJSON:
        """:meth:`list_objects` as the JSON sent, each item's encoding reused while it is unchanged.

        The store never changes a committed object in place (a write commits a new one), so an
        encoding stays right for as long as the object it was made from is the one stored.
        """
        info, page, list_meta = self._list_page(call)
        cache = self._encoded
        parts = []
        for obj in page:
            meta = obj["metadata"]
            key = (info.key, meta.get("namespace", ""), meta["name"])
            hit = cache.get(key)
            if hit is None or hit[0] is not obj or hit[1] != info.api_version:
                served = self._served(info, obj, in_list=True, shared=True)
                hit = (obj, info.api_version, json.dumps(served, separators=(",", ":")).encode())
                cache[key] = hit
            parts.append(hit[2])
        head = json.dumps(
            {"apiVersion": info.api_version, "kind": info.list_kind, "metadata": list_meta},
            separators=(",", ":"),
        ).encode()
        return EncodedJSON(head[:-1] + b',"items":[' + b",".join(parts) + b"]}")

    def _list_page(self, call: Call) -> tuple[ResourceInfo, list[Object], Object]:
        info = call.info
        labels, fields = self.selectors(call)
        limit = 0
        if call.query.get("limit"):
            try:
                limit = max(0, int(call.query["limit"]))
            except ValueError as exc:
                raise errors.bad_request(f"limit: invalid value {call.query['limit']!r}") from exc
        start = ""
        snapshot: int | None = None
        token = call.query.get("continue", "")
        if token:
            try:
                decoded = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
                start, snapshot = str(decoded["start"]), int(decoded["rv"])
            except (binascii.Error, ValueError, KeyError, TypeError) as exc:
                raise errors.bad_request(f"continue key is not valid: {exc}") from exc
        with self.store.lock:
            if snapshot is None:
                rv = self.store.resource_version
                candidates = self.store.scan(info.key, call.namespace or None)
            else:
                # Every page of a paginated list shows the state at the first page's resourceVersion.
                rv = snapshot
                candidates = self.store.scan_at(info.key, call.namespace or None, snapshot)
            matching: list[Object] = []
            for obj in candidates:
                meta = obj["metadata"]
                if start and f"{meta.get('namespace', '')}/{meta['name']}" <= start:
                    continue
                if labels.matches(meta.get("labels") or {}) and fields.matches(obj):
                    matching.append(obj)
        page = matching[:limit] if limit else matching
        list_meta: Object = {"resourceVersion": str(rv)}
        if limit and len(matching) > limit:
            last = page[-1]["metadata"]
            next_token = {
                "v": "meta.k8s.io/v1",
                "rv": rv,
                "start": f"{last.get('namespace', '')}/{last['name']}",
            }
            list_meta["continue"] = (
                base64.urlsafe_b64encode(json.dumps(next_token).encode()).decode().rstrip("=")
            )
            list_meta["remainingItemCount"] = len(matching) - limit
        return info, page, list_meta

    # --- side effects ----------------------------------------------------------------------------------

    def _after_write(self, info: ResourceInfo, obj: Object, old: Object | None) -> None:
        if info.key == CRD_KEY:
            self.store.table.set_crd(obj["metadata"]["name"], infos_from_crd(obj))

    def _after_delete(self, info: ResourceInfo, obj: Object) -> None:
        meta = obj.get("metadata") or {}
        self._encoded.pop((info.key, meta.get("namespace", ""), meta.get("name", "")), None)
        if info.key == CRD_KEY:
            spec = obj.get("spec") or {}
            key = (str(spec.get("group", "")), str((spec.get("names") or {}).get("plural", "")))
            self.store.drop_resource(key)
            self.store.table.set_crd(obj["metadata"]["name"], [])

    def terminating_namespaces(self) -> list[str]:
        """Names of namespaces being deleted."""
        with self.store.lock:
            return [
                ns["metadata"]["name"]
                for ns in self.store.scan(("", "namespaces"))
                if ns["metadata"].get("deletionTimestamp")
            ]

    def reconcile_namespaces(self) -> None:
        """The namespace controller: empties terminating namespaces, then removes them."""
        for name in self.terminating_namespaces():
            with self.store.lock:
                for key, obj in self.store.namespaces_in_use(name):
                    meta = obj["metadata"]
                    if meta.get("finalizers"):
                        if not meta.get("deletionTimestamp"):
                            marked = copy.deepcopy(obj)
                            marked["metadata"]["deletionTimestamp"] = now_rfc3339()
                            marked["metadata"]["deletionGracePeriodSeconds"] = 0
                            self.store.commit(key, marked, obj)
                        continue
                    self.store.remove(key, obj)
                if self.store.namespaces_in_use(name):
                    continue
                ns = self.store.read(("", "namespaces"), "", name)
                if ns is None or ns["metadata"].get("finalizers"):
                    continue
                self.store.remove(("", "namespaces"), ns)

    # --- CRDs --------------------------------------------------------------------------------------------

    def _crd_status(self, crd: Object, previous: Any = None) -> Object:
        spec = crd.get("spec") or {}
        names = dict(spec.get("names") or {})
        if names.get("kind"):
            names.setdefault("singular", str(names["kind"]).lower())
            names.setdefault("listKind", f"{names['kind']}List")
        stamp = now_rfc3339()
        old_conditions = {c.get("type"): c for c in ((previous or {}).get("conditions") or [])}

        def condition(kind: str, reason: str, message: str) -> Object:
            kept = old_conditions.get(kind)
            return {
                "type": kind,
                "status": "True",
                "lastTransitionTime": kept.get("lastTransitionTime", stamp) if kept else stamp,
                "reason": reason,
                "message": message,
            }

        stored = [v.get("name") for v in spec.get("versions") or [] if v.get("storage")]
        previous_stored = list((previous or {}).get("storedVersions") or [])
        for version in stored:
            if version not in previous_stored:
                previous_stored.append(version)
        return {
            "conditions": [
                condition("NamesAccepted", "NoConflicts", "no conflicts found"),
                condition("Established", "InitialNamesAccepted", "the initial names have been accepted"),
            ],
            "acceptedNames": names,
            "storedVersions": previous_stored,
        }

    def _validate_crd(self, crd: Object, old: Object | None) -> list[FieldError]:
        spec = crd.get("spec") or {}
        names = spec.get("names") or {}
        problems: list[FieldError] = []
        group = spec.get("group") or ""
        plural = names.get("plural") or ""
        if not group:
            problems.append(FieldError.required("spec.group"))
        if not plural:
            problems.append(FieldError.required("spec.names.plural"))
        if not names.get("kind"):
            problems.append(FieldError.required("spec.names.kind"))
        if spec.get("scope") not in ("Namespaced", "Cluster"):
            problems.append(
                FieldError.not_supported("spec.scope", spec.get("scope", ""), ["Cluster", "Namespaced"])
            )
        versions = spec.get("versions") or []
        if not versions or sum(1 for v in versions if v.get("storage")) != 1:
            problems.append(
                FieldError.invalid(
                    "spec.versions", versions, "must have exactly one version marked as storage version"
                )
            )
        name = crd["metadata"]["name"]
        if group and plural and name != f"{plural}.{group}":
            problems.append(
                FieldError.invalid("metadata.name", name, 'must be spec.names.plural+"."+spec.group')
            )
        if old is not None:
            old_spec = old.get("spec") or {}
            if old_spec.get("group") != group:
                problems.append(FieldError.invalid("spec.group", group, "field is immutable"))
        return problems

    # --- reviews -------------------------------------------------------------------------------------------

    def _review(self, call: Call) -> Reply:
        info = call.info
        if call.verb != "create" or call.subresource:
            raise errors.method_not_supported(info.group, info.plural, call.verb)
        review = self._decode_object(call)
        self._check_type(call, review)
        if info.plural == "tokenreviews":
            body = token_review(self.tokens, review)
        elif info.plural == "subjectaccessreviews":
            body = access_review(self.authorizer, review)
        else:
            body = access_review(self.authorizer, review, requester=call.user)
        body.setdefault("metadata", {}).setdefault("creationTimestamp", None)
        return Reply(201, body)


_MAX_INT32 = 2**31 - 1


def _scale_spec_problems(obj: Object, spec_replicas_path: str) -> list[FieldError]:
    """The scale subresource's own check of the replicas field, under the path as the CRD spells it."""
    replicas = _jsonpath_get(obj, spec_replicas_path)
    if not isinstance(replicas, int) or isinstance(replicas, bool):
        return []
    if replicas < 0:
        return [FieldError.invalid(spec_replicas_path, replicas, "should be a non-negative integer")]
    if replicas > _MAX_INT32:
        return [
            FieldError.invalid(spec_replicas_path, replicas, f"should be less than or equal to {_MAX_INT32}")
        ]
    return []
