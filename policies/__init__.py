"""kcp-tmc policies: the domain core and the plug-in API third parties write against.

Pure functions of their input: no HTTP, no Flask, no cluster access.  The
public names are re-exported here; import them as
``from kcp_tmc.policies import validating, Verdict, PolicyRequest``.
"""

from kcp_tmc.policies.admission import (
    AdmissionRequest,
    AdmissionResponse,
    AdmissionReview,
    JsonPatchOperation,
    Operation,
    UserInfo,
)
from kcp_tmc.policies.kinds import (
    CLUSTER,
    FEDERATED_QUOTA,
    LOCATION,
    RESOURCE_QUOTA,
    SYNC_TARGET,
    ResourceType,
)
from kcp_tmc.policies.policy import (
    FailureMode,
    FieldError,
    Lookup,
    Mode,
    Policy,
    PolicyRequest,
    PolicyType,
    Reservation,
    Reserver,
    StaticLookup,
    Verdict,
)
from kcp_tmc.policies.registry import REGISTRY, PolicyConflictError, Registry, mutating, validating

__all__ = [
    "CLUSTER",
    "FEDERATED_QUOTA",
    "LOCATION",
    "REGISTRY",
    "RESOURCE_QUOTA",
    "SYNC_TARGET",
    "AdmissionRequest",
    "AdmissionResponse",
    "AdmissionReview",
    "FailureMode",
    "FieldError",
    "JsonPatchOperation",
    "Lookup",
    "Mode",
    "Operation",
    "Policy",
    "PolicyConflictError",
    "PolicyRequest",
    "PolicyType",
    "Registry",
    "Reservation",
    "Reserver",
    "ResourceType",
    "StaticLookup",
    "UserInfo",
    "Verdict",
    "mutating",
    "validating",
]
