"""Every value of the chart is in values.schema.json and explained in docs/installation.md.

The table there names values as `group.key` and continues a cell with `.other` for siblings; every
key of values.yaml down to the second level (the third for webhook.timeoutSeconds and the like, as
the table names them) must appear, and the schema must know every key of values.yaml, so that a
value cannot be added without its type and its explanation.
"""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from tests.charts.chart_kit import CHART, REPO


def _documented() -> set[str]:
    names: set[str] = set()
    for line in (REPO / "docs" / "installation.md").read_text(encoding="utf-8").splitlines():
        if not line.startswith("| `"):
            continue
        cell = line.split("|")[1]
        base = ""
        for token in re.findall(r"`([^`]+)`", cell):
            if token.startswith(".") and base:
                names.add(base.rsplit(".", 1)[0] + token)
            else:
                names.add(token)
                base = token
    return names


def _paths(values: dict[str, Any], prefix: str = "", depth: int = 2) -> set[str]:
    out: set[str] = set()
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and depth > 1:
            out |= _paths(value, f"{path}.", depth - 1)
        else:
            out.add(path)
    return out


def _covered(path: str, documented: set[str]) -> bool:
    # A value is explained by its own row or by a row naming one of its parents or children.
    return any(
        name == path or path.startswith(f"{name}.") or name.startswith(f"{path}.") for name in documented
    )


def test_every_value_is_explained_in_the_installation_guide() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    documented = _documented()
    missing = sorted(p for p in _paths(values) if not _covered(p, documented))
    assert missing == []
    unknown = sorted(
        n
        for n in documented
        if "." in n and n.split(".")[0] in values and not _covered(n, _paths(values, depth=4))
    )
    assert unknown == []


def _schema_keys(schema: dict[str, Any], prefix: str = "") -> set[str]:
    out: set[str] = set()
    for key, sub in schema.get("properties", {}).items():
        out.add(f"{prefix}{key}")
        out |= _schema_keys(sub, f"{prefix}{key}.")
    return out


def test_the_schema_knows_every_value() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    known = _schema_keys(schema)
    free = {"webhook.config", "webhook.resources", "reconciler.resources", "certs.jobResources",
            "podSecurityContext", "securityContext", "commonLabels"}  # fmt: skip
    missing = sorted(p for p in _paths(values, depth=3) if p not in known and not any(
        p == f or p.startswith(f"{f}.") for f in free))  # fmt: skip
    assert missing == []
