"""Rewrite the schemas of the shipped ``kubernetes`` export from a real kube-apiserver's OpenAPI v3.

``KUBEBUILDER_ASSETS=... python -m tests.reconcilers.regenerate_kubernetes_export`` starts etcd and
kube-apiserver on loopback, reads the OpenAPI v3 of services, deployments and ingresses, writes each
as a CRD schema the way the Cluster controller writes the APIResourceImports of a physical cluster
(:func:`kcp_tmc.reconcilers.imports.structural_schema`), and stores them in
``reconcilers/kubernetes-export.yaml``.  A physical cluster of that Kubernetes version is then
compatible with the export; a newer one is too unless it drops or retypes a field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from kcp_tmc.reconcilers.exports import EXPORT_FILE, kubernetes_export
from kcp_tmc.reconcilers.imports import inline_schema, structural_schema

HEADER = """\
# The `kubernetes` APIExport that SyncTargets support by default (spec.supportedAPIExports defaults to
# [{export: kubernetes}]), with APIResourceSchemas for services, deployments.apps and
# ingresses.networking.k8s.io. Named as kcp's root compute export names them (v124.<plural>.<group|core>).
# The schemas are kube-apiserver {version}'s OpenAPI v3 written as CRD schemas, as the Cluster controller
# writes a physical cluster's APIResourceImports, so that the compatibility check accepts a cluster of
# that version. Regenerate with `python -m tests.reconcilers.regenerate_kubernetes_export`.
"""


def kind_schemas(openapi: dict[str, Any], group: str, version: str, kind: str) -> Any:
    components = openapi["components"]["schemas"]
    for schema in components.values():
        for gvk in schema.get("x-kubernetes-group-version-kind") or []:
            if (gvk.get("group", ""), gvk.get("version"), gvk.get("kind")) == (group, version, kind):
                return structural_schema(inline_schema(schema, components))
    raise LookupError(f"{group}/{version} {kind} is not in the OpenAPI document")


def main() -> None:
    from kcp_tmc.testing.envtest import RealAPIServer

    documents = kubernetes_export()
    with RealAPIServer() as server:
        git_version = server.request_json("GET", "/version")["gitVersion"]
        for doc in documents[1:]:
            spec = doc["spec"]
            for version in spec["versions"]:
                path = (
                    f"/openapi/v3/apis/{spec['group']}/{version['name']}"
                    if spec["group"]
                    else "/openapi/v3/api/v1"
                )
                openapi = server.request_json("GET", path)
                version["schema"] = kind_schemas(
                    openapi, spec["group"], version["name"], spec["names"]["kind"]
                )
    target = Path(__file__).resolve().parents[2] / "reconcilers" / EXPORT_FILE
    body = yaml.safe_dump_all(documents, sort_keys=False, default_flow_style=False, width=110)
    target.write_text(HEADER.replace("{version}", git_version) + body, encoding="utf-8")
    print(f"wrote {target} from kube-apiserver {git_version}")


if __name__ == "__main__":
    main()
