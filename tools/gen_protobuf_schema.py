"""Write testing/protobuf_schema.json: the protobuf layout of the built-in kinds the fake serves.

kubectl 1.35 (client-go's typed clients) sends built-in kinds as ``application/vnd.kubernetes.protobuf``
and never falls back to JSON, so the fake API server has to read those bodies.  The field numbers
are facts of the wire format; they live in the Go struct tags of k8s.io/api and
k8s.io/apimachinery next to the JSON names, ``omitempty`` and pointer-ness that decide what the
same object looks like as JSON.  This script reads those Go files and keeps, for every message
reachable from the kinds below, what kcp_tmc.testing.protobuf needs to turn a body into the JSON
kubectl would have sent.

    python tools/gen_protobuf_schema.py --api K8S_IO_API_DIR --apimachinery K8S_IO_APIMACHINERY_DIR \
        > testing/protobuf_schema.json

Run it again (with checkouts of the same release line) when the fake serves another kind.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

API = "k8s.io/api"
MACHINERY = "k8s.io/apimachinery"

#: (apiVersion, kind) -> Go package path and type name, for every kind the fake reads as protobuf.
ROOTS: tuple[tuple[str, str, str], ...] = (
    ("v1", "Namespace", f"{API}/core/v1"),
    ("v1", "ConfigMap", f"{API}/core/v1"),
    ("v1", "Secret", f"{API}/core/v1"),
    ("v1", "ServiceAccount", f"{API}/core/v1"),
    ("v1", "Node", f"{API}/core/v1"),
    ("v1", "Pod", f"{API}/core/v1"),
    ("v1", "Service", f"{API}/core/v1"),
    ("v1", "Event", f"{API}/core/v1"),
    ("v1", "ResourceQuota", f"{API}/core/v1"),
    ("apps/v1", "Deployment", f"{API}/apps/v1"),
    ("apps/v1", "ReplicaSet", f"{API}/apps/v1"),
    ("apps/v1", "StatefulSet", f"{API}/apps/v1"),
    ("apps/v1", "DaemonSet", f"{API}/apps/v1"),
    ("batch/v1", "Job", f"{API}/batch/v1"),
    ("batch/v1", "CronJob", f"{API}/batch/v1"),
    ("coordination.k8s.io/v1", "Lease", f"{API}/coordination/v1"),
    ("authentication.k8s.io/v1", "TokenReview", f"{API}/authentication/v1"),
    ("authorization.k8s.io/v1", "SubjectAccessReview", f"{API}/authorization/v1"),
    ("authorization.k8s.io/v1", "SelfSubjectAccessReview", f"{API}/authorization/v1"),
    ("rbac.authorization.k8s.io/v1", "ClusterRole", f"{API}/rbac/v1"),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", f"{API}/rbac/v1"),
    ("rbac.authorization.k8s.io/v1", "Role", f"{API}/rbac/v1"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding", f"{API}/rbac/v1"),
    ("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration", f"{API}/admissionregistration/v1"),
    ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration", f"{API}/admissionregistration/v1"),
    ("autoscaling/v1", "Scale", f"{API}/autoscaling/v1"),
    ("v1", "DeleteOptions", f"{MACHINERY}/pkg/apis/meta/v1"),
)


#: Types with their own wire and JSON forms (custom Marshal methods in apimachinery).
SPECIAL = {
    f"{MACHINERY}/pkg/apis/meta/v1.Time": "Time",
    f"{MACHINERY}/pkg/apis/meta/v1.MicroTime": "MicroTime",
    f"{MACHINERY}/pkg/apis/meta/v1.Duration": "Duration",
    f"{MACHINERY}/pkg/apis/meta/v1.FieldsV1": "FieldsV1",
    f"{MACHINERY}/pkg/api/resource.Quantity": "Quantity",
    f"{MACHINERY}/pkg/util/intstr.IntOrString": "IntOrString",
    f"{MACHINERY}/pkg/runtime.RawExtension": "RawExtension",
}
SCALARS = {
    "string": "string",
    "bool": "bool",
    "int": "int",
    "int32": "int",
    "int64": "int",
    "uint32": "int",
    "uint64": "int",
    "float64": "double",
}

_TYPE_START = re.compile(r"^type (\w+) struct \{\s*$")
_TYPE_OTHER = re.compile(r"^type (\w+) (\S.*?)\s*(//.*)?$")
_FIELD = re.compile(r"^\s*(?:(\w+)\s+)?([\w\.\*\[\]]+)\s+`([^`]*)`")
_TAG = re.compile(r'(\w+):"([^"]*)"')
_IMPORT = re.compile(r'^\s*(?:(\w+)\s+)?"([^"]+)"\s*$')


class Package:
    """The struct and named types of one Go package, with each file's import aliases."""

    def __init__(self, path: str, directory: Path) -> None:
        self.path = path
        self.structs: dict[str, tuple[list[tuple[str, str, dict[str, str]]], dict[str, str]]] = {}
        self.named: dict[str, tuple[str, dict[str, str]]] = {}
        for source in sorted(directory.glob("*.go")):
            if source.name.endswith("_test.go") or source.name.startswith("zz_generated"):
                continue
            self._read(source.read_text(encoding="utf-8"))

    def _read(self, text: str) -> None:
        imports: dict[str, str] = {}
        lines = text.splitlines()
        in_import = False
        current: str | None = None
        fields: list[tuple[str, str, dict[str, str]]] = []
        for line in lines:
            if line.startswith("import ("):
                in_import = True
                continue
            if in_import:
                if line.startswith(")"):
                    in_import = False
                    continue
                found = _IMPORT.match(line)
                if found:
                    path = found.group(2)
                    imports[found.group(1) or path.rsplit("/", 1)[-1]] = path
                continue
            if line.startswith('import "'):
                path = line.split('"')[1]
                imports[path.rsplit("/", 1)[-1]] = path
                continue
            if current is None:
                start = _TYPE_START.match(line)
                if start:
                    current, fields = start.group(1), []
                    continue
                other = _TYPE_OTHER.match(line)
                if other and not other.group(2).startswith(("struct", "interface", "=")):
                    self.named[other.group(1)] = (other.group(2).split()[0], imports)
                continue
            if line.startswith("}"):
                self.structs[current] = (fields, dict(imports))
                current = None
                continue
            field = _FIELD.match(line)
            if field and not line.lstrip().startswith("//"):
                name, go_type, tag = field.groups()
                fields.append((name or "", go_type, dict(_TAG.findall(tag))))


class Generator:
    def __init__(self, api: Path, apimachinery: Path) -> None:
        self.roots = {API: api, MACHINERY: apimachinery}
        self.packages: dict[str, Package] = {}
        self.messages: dict[str, dict[str, Any]] = {}

    def package(self, path: str) -> Package | None:
        """The Go package at ``path`` (read on first use), or None outside k8s.io/api and apimachinery."""
        if path not in self.packages:
            for prefix, root in self.roots.items():
                if path.startswith(prefix + "/") and (root / path[len(prefix) + 1 :]).is_dir():
                    self.packages[path] = Package(path, root / path[len(prefix) + 1 :])
                    break
            else:
                return None
        return self.packages[path]

    def qualify(self, go_type: str, package: str, imports: dict[str, str]) -> str:
        if "." in go_type:
            alias, name = go_type.split(".", 1)
            return f"{imports[alias]}.{name}"
        return f"{package}.{go_type}"

    def describe(self, go_type: str, package: str, imports: dict[str, str]) -> dict[str, Any]:
        """The wire and JSON shape of one Go type (without pointer or slice of the field itself)."""
        if go_type in SCALARS:
            return {"t": SCALARS[go_type]}
        if go_type == "[]byte":
            return {"t": "bytes"}
        if go_type.startswith("map["):
            key, value = go_type[4:].split("]", 1)
            return {
                "t": "map",
                "k": self.describe(key, package, imports),
                "v": self.describe(value, package, imports),
            }
        if go_type.startswith("[]"):
            # A named slice type becomes a wrapper message {repeated items = 1} on the wire.
            return {"t": "wrapper", "v": self.describe(go_type[2:], package, imports)}
        full = self.qualify(go_type, package, imports)
        if full in SPECIAL:
            return {"t": SPECIAL[full]}
        owner, name = full.rsplit(".", 1)
        source = self.package(owner)
        if source is None:
            raise SystemExit(f"type {full} is in a package this script does not read")
        if name in source.structs:
            self.message(full)
            return {"t": "message", "r": full}
        if name in source.named:
            underlying, named_imports = source.named[name]
            return self.describe(underlying, owner, named_imports)
        raise SystemExit(f"type {full} is not declared in {owner}")

    def message(self, full: str) -> None:
        if full in self.messages:
            return
        owner, name = full.rsplit(".", 1)
        source = self.package(owner)
        if source is None:
            raise SystemExit(f"type {full} is in a package this script does not read")
        fields, imports = source.structs[name]
        described: dict[str, Any] = {}
        self.messages[full] = described
        for field_name, go_type, tags in fields:
            wire = tags.get("protobuf", "")
            if not wire or wire == "-":
                continue
            parts = wire.split(",")
            json_tag = tags.get("json", field_name).split(",")
            options = set(json_tag[1:])
            entry: dict[str, Any] = {"n": json_tag[0] or field_name}
            if json_tag[0] == "" and "inline" in options:
                entry["inline"] = True
            base = go_type
            if base.startswith("*"):
                entry["ptr"] = True
                base = base[1:]
            if base.startswith("[]") and base != "[]byte":
                entry["rep"] = True
                base = base[2:]
            entry.update(self.describe(base.lstrip("*"), owner, imports))
            if "omitempty" in options:
                entry["oe"] = True
            if "omitzero" in options:
                entry["oz"] = True
            described[parts[1]] = entry


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api", type=Path, required=True, help="a checkout of k8s.io/api")
    parser.add_argument("--apimachinery", type=Path, required=True, help="a checkout of k8s.io/apimachinery")
    args = parser.parse_args(argv)
    generator = Generator(args.api, args.apimachinery)
    kinds = {}
    for api_version, kind, package in ROOTS:
        full = f"{package}.{kind}"
        generator.message(full)
        kinds[f"{api_version}/{kind}"] = full
    document = {"kinds": kinds, "messages": dict(sorted(generator.messages.items()))}
    json.dump(document, sys.stdout, indent=0, sort_keys=True, separators=(",", ":"))
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
