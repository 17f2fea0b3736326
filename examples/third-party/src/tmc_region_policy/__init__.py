"""``region-label``: every SyncTarget carries a ``region`` label, so that Locations can select by region.

A kcp-tmc policy plug-in: the entry point ``kcp_tmc.policies`` in ``pyproject.toml`` names this
module, and importing it registers the policy.
"""

from __future__ import annotations

from kcp_tmc.policies import SYNC_TARGET, PolicyRequest, Verdict, validating
from kcp_tmc.policies.validation import invalid, is_valid_label_value, type_invalid

__all__ = ["LABEL", "region_label"]

LABEL = "region"
_PATH = f"metadata.labels.{LABEL}"
_EXAMPLE = "region=us-east1"


@validating("region-label", kinds=[SYNC_TARGET], operations=["CREATE", "UPDATE"])
def region_label(req: PolicyRequest) -> Verdict | None:
    """Require a non-empty, valid ``region`` label on every SyncTarget."""
    meta = (req.object or {}).get("metadata")
    labels = meta.get("labels") if isinstance(meta, dict) else None
    value = labels.get(LABEL) if isinstance(labels, dict) else None
    if value is None:
        return Verdict.deny(_PATH, f"is required; add a label such as {_EXAMPLE}")
    if not isinstance(value, str):
        return Verdict(errors=[type_invalid(_PATH, value, f"a string, e.g. {_EXAMPLE}")])
    if value == "":
        return Verdict.deny(_PATH, f"must not be empty; set it to the SyncTarget's region, e.g. {_EXAMPLE}")
    problems = is_valid_label_value(value)
    if problems:
        detail = "; ".join(problems)
        return Verdict(errors=[invalid(_PATH, value, f"{detail}; use a region name such as us-east1")])
    return None
