"""``tmc-policy``: every command, every bad input with its exact message, and the exit codes."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from kcp_tmc.policies import SYNC_TARGET, PolicyRequest, Registry, Verdict, cli, mutating, validating
from kcp_tmc.policies.patches import set_map_entry
from kcp_tmc.policies.plugins import PluginError, load_builtins
from kcp_tmc.policies.reviews import make_review

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
ST_KEY = "6ohB8yeXhwqTQVuBzJRgqcRJTpRjX7yTZu5g5g"  # root:org:ws / us-west1
ROOT_KEY = "4PDIY5fHYyzNMVHhV3gZFv60V0eF3tjm3PUEj3"  # root / us-west1

#: The built-in policies, as an unknown-policy message lists them.
KNOWN_POLICIES = (
    "cluster-defaults, cluster-validation, federatedquota-validation, location-validation, "
    "quota-enforcement, resourcequota-validation, synctarget-defaults, synctarget-deletion-protection, "
    "synctarget-validation"
)


def builtins() -> Registry:
    registry = Registry()
    load_builtins(registry)
    return registry


def probe() -> Registry:
    """A policy that echoes what it received as warnings, and one that patches."""
    registry = Registry()

    @validating(
        "probe",
        kinds=[SYNC_TARGET],
        operations=["CREATE", "UPDATE", "DELETE"],
        subresources=["", "status"],
        registry=registry,
    )
    def echo(req: PolicyRequest) -> Verdict | None:
        seen = [
            f"operation={req.operation}",
            f"user={req.user.get('username')}",
            f"groups={','.join(req.user.get('groups') or [])}",
            f"dryRun={req.dry_run}",
            f"subResource={req.sub_resource}",
            f"namespace={req.namespace}",
            f"object={(req.object or {}).get('metadata', {}).get('labels')}",
            f"old={req.old_object is not None}",
            f"lookup={sorted(o['metadata']['name'] for o in req.lookup.list(SYNC_TARGET))}",
        ]
        return Verdict(warnings=seen)

    @mutating("owner", kinds=[SYNC_TARGET], registry=registry)
    def owner(req: PolicyRequest) -> Verdict | None:
        assert req.object is not None
        return Verdict(patch=set_map_entry(req.object, ("metadata", "labels"), "owner", "me"))

    return registry


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> Callable[[Registry, list[PluginError] | None], None]:
    def use(reg: Registry, errors: list[PluginError] | None = None) -> None:
        monkeypatch.setattr(cli, "load_registry", lambda: (reg, list(errors or [])))

    use(builtins())
    return use


Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, registry: Any) -> Run:
    def call(*args: str | Path, stdin: str | None = None) -> tuple[int, str, str]:
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        code = cli.main([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    return call


def write(tmp_path: Path, name: str, content: Any) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    return path


def patch_of(response: dict[str, Any]) -> list[dict[str, Any]]:
    assert response["patchType"] == "JSONPatch"
    return json.loads(base64.b64decode(response["patch"]))


def sync_target(name: str = "us-west1", **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "workload.kcp.io/v1alpha1",
        "kind": "SyncTarget",
        "metadata": {"name": name, **meta},
    }


# --- evaluate ----------------------------------------------------------------------------------------


def test_evaluate_the_readme_example(run: Run) -> None:
    code, out, err = run("evaluate", EXAMPLES / "objects" / "synctarget.yaml", "--operation", "CREATE")
    assert (code, err) == (0, "")
    review = json.loads(out)
    assert (review["apiVersion"], review["kind"]) == ("admission.k8s.io/v1", "AdmissionReview")
    response = review["response"]
    uuid.UUID(response["uid"])  # a fresh uid, as the apiserver would send
    assert response["allowed"] is True
    assert set(response) == {"uid", "allowed", "patchType", "patch"}
    assert patch_of(response) == [
        {"op": "add", "path": "/spec/unschedulable", "value": False},
        {"op": "add", "path": "/metadata/labels/internal.workload.kcp.io~1key", "value": ST_KEY},
    ]


def test_evaluate_prints_yaml_too(run: Run) -> None:
    code, out, _ = run("evaluate", EXAMPLES / "objects" / "synctarget.yaml", "-o", "yaml", "--uid", "u-1")
    assert code == 0
    review = yaml.safe_load(out)
    assert review["response"]["uid"] == "u-1"
    assert patch_of(review["response"])[1]["value"] == ST_KEY


def test_evaluate_a_review_echoes_its_version_and_uid(run: Run, tmp_path: Path) -> None:
    review = make_review(sync_target(), uid="abc", api_version="admission.k8s.io/v1beta1")
    code, out, _ = run("evaluate", write(tmp_path, "review.json", review))
    assert code == 0
    answer = json.loads(out)
    assert answer["apiVersion"] == "admission.k8s.io/v1beta1"
    assert answer["response"]["uid"] == "abc"
    assert patch_of(answer["response"])[-1] == {
        "op": "add",
        "path": "/metadata/labels",
        "value": {"internal.workload.kcp.io/key": ROOT_KEY},
    }


def test_evaluate_reads_a_yaml_review_from_stdin(run: Run) -> None:
    review = make_review(sync_target(), uid="from-stdin")
    code, out, _ = run("evaluate", "-", "-o", "yaml", stdin=yaml.safe_dump(review))
    assert code == 0
    assert yaml.safe_load(out)["response"]["uid"] == "from-stdin"


def test_evaluate_a_denied_object_lists_every_error(run: Run) -> None:
    code, out, err = run("evaluate", EXAMPLES / "objects" / "synctarget-invalid.yaml", "--uid", "u")
    assert (code, err) == (1, "")
    response = json.loads(out)["response"]
    assert response["allowed"] is False
    assert "patch" not in response  # a denial carries no patch
    assert response["status"]["code"] == 403
    assert response["status"]["reason"] == "Forbidden"
    lines = response["status"]["message"].split("\n")
    assert [line.split(":")[0] for line in lines] == [
        "[synctarget-validation] metadata.name",
        "[synctarget-validation] spec.evictAfter",
        "[synctarget-validation] spec.supportedAPIExports[0].export",
        "[synctarget-validation] spec.cells",
    ]
    assert lines[1] == (
        '[synctarget-validation] spec.evictAfter: Invalid value: "tomorrow": must be an RFC 3339 time '
        "such as "
        "2024-01-02T15:04:05Z"
    )


def test_validating_policies_see_the_mutated_object(run: Run, tmp_path: Path) -> None:
    wrong_key = write(tmp_path, "st.yaml", sync_target(labels={"internal.workload.kcp.io/key": "stale"}))
    code, out, _ = run("evaluate", wrong_key)
    response = json.loads(out)["response"]
    assert code == 0
    assert response["warnings"] == [
        '[synctarget-defaults] metadata.labels[internal.workload.kcp.io/key]: replaced "stale" with '
        f'"{ROOT_KEY}", the key of SyncTarget "us-west1" in logical cluster "root"'
    ]
    # Validation alone sees the stale label and denies; no patch is ever sent by a validating run.
    code, out, _ = run("evaluate", wrong_key, "--validate-only")
    response = json.loads(out)["response"]
    assert code == 1
    assert response["status"]["message"].startswith(
        '[synctarget-validation] metadata.labels[internal.workload.kcp.io/key]: Invalid value: "stale": '
        "must be "
        f'"{ROOT_KEY}"'
    )
    code, out, _ = run("evaluate", EXAMPLES / "objects" / "synctarget.yaml", "--validate-only")
    assert code == 0
    assert set(json.loads(out)["response"]) == {"uid", "allowed"}


def test_mutate_only_skips_validation(run: Run) -> None:
    code, out, _ = run("evaluate", EXAMPLES / "objects" / "synctarget-invalid.yaml", "--mutate-only")
    response = json.loads(out)["response"]
    assert code == 0
    assert response["allowed"] is True
    assert patch_of(response)[0] == {"op": "add", "path": "/spec/unschedulable", "value": False}


def test_evaluate_delete_of_a_protected_sync_target(run: Run) -> None:
    code, out, _ = run(
        "evaluate", EXAMPLES / "objects" / "synctarget-protected.yaml", "--operation", "DELETE"
    )
    assert code == 1
    assert json.loads(out)["response"]["status"]["message"] == (
        "[synctarget-deletion-protection] metadata.annotations[tmc.kcp.io/deletion-protected]: Forbidden: "
        'SyncTarget "eu-central1" is protected from deletion; to delete it, first remove the protection: '
        "kubectl annotate synctarget eu-central1 tmc.kcp.io/deletion-protected-"
    )


def test_evaluate_update_with_the_old_object(run: Run, tmp_path: Path) -> None:
    old = write(tmp_path, "old.yaml", EXAMPLES.joinpath("objects", "cluster.yaml").read_text())
    renamed = yaml.safe_load(old.read_text())
    renamed["spec"]["syncTargetName"] = "edge-one"
    new = write(tmp_path, "new.yaml", renamed)
    code, out, _ = run("evaluate", new, "--operation", "UPDATE", "--old-object", old)
    assert code == 1
    assert json.loads(out)["response"]["status"]["message"] == (
        '[cluster-validation] spec.syncTargetName: Forbidden: may not be changed from "edge-1" to "edge-one" '
        "after the Cluster is created; to publish the cluster under another name, delete and re-create "
        "the Cluster"
    )


def test_evaluate_passes_every_request_option(run: Run, registry: Any, tmp_path: Path) -> None:
    registry(probe())
    resources = write(
        tmp_path,
        "res.yaml",
        yaml.safe_dump_all(
            [sync_target("peer-1"), {"apiVersion": "v1", "kind": "List", "items": [sync_target("peer-2")]}]
        ),
    )
    more = write(tmp_path, "more.json", sync_target("peer-3"))
    obj = write(tmp_path, "st.yaml", sync_target(namespace="ns"))
    code, out, err = run(
        "evaluate", obj, "--operation", "UPDATE", "--old-object", obj, "--user", "bob", "--groups", "a,b",
        "--groups", "c", "--dry-run", "--sub-resource", "status", "--namespace", "other", "--resource",
        resources, "--resource", more,
    )  # fmt: skip
    assert (code, err) == (0, "")
    assert json.loads(out)["response"]["warnings"] == [
        "[probe] operation=UPDATE",
        "[probe] user=bob",
        "[probe] groups=a,b,c",
        "[probe] dryRun=True",
        "[probe] subResource=status",
        "[probe] namespace=other",
        "[probe] object=None",
        "[probe] old=True",
        "[probe] lookup=['peer-1', 'peer-2', 'peer-3']",
    ]
    code, out, _ = run("evaluate", obj, "--operation", "DELETE")
    assert json.loads(out)["response"]["warnings"][:3] == [
        "[probe] operation=DELETE",
        "[probe] user=alice",
        "[probe] groups=",
    ]
    assert "[probe] old=True" in json.loads(out)["response"]["warnings"]


def test_evaluate_restricted_to_named_policies(run: Run, registry: Any, tmp_path: Path) -> None:
    registry(probe())
    obj = write(tmp_path, "st.yaml", sync_target())
    code, out, _ = run("evaluate", obj, "--policy", "owner")
    response = json.loads(out)["response"]
    assert (code, "warnings" in response) == (0, False)
    assert patch_of(response) == [{"op": "add", "path": "/metadata/labels", "value": {"owner": "me"}}]


def test_evaluate_with_a_configuration(run: Run, tmp_path: Path) -> None:
    config = write(tmp_path, "config.yaml", "policies:\n  synctarget-validation: {mode: warn}\n")
    code, out, _ = run("evaluate", EXAMPLES / "objects" / "synctarget-invalid.yaml", "--config", config)
    response = json.loads(out)["response"]
    assert code == 0
    assert [w.split(":")[0] for w in response["warnings"]] == [
        "[synctarget-validation] metadata.name",
        "[synctarget-validation] spec.evictAfter",
        "[synctarget-validation] spec.supportedAPIExports[0].export",
        "[synctarget-validation] spec.cells",
    ]
    exempt = write(tmp_path, "exempt.yaml", "exemptions: {groups: ['system:masters']}\n")
    invalid = EXAMPLES / "objects" / "synctarget-invalid.yaml"
    assert run("evaluate", invalid, "--config", exempt, "--groups", "system:masters")[0] == 0
    assert run("evaluate", invalid, "--config", exempt, "--groups", "devs")[0] == 1


def test_a_failing_policy_denies_with_code_500(run: Run, registry: Any, tmp_path: Path) -> None:
    reg = Registry()

    @validating("broken", kinds=[SYNC_TARGET], registry=reg)
    def broken(req: PolicyRequest) -> Verdict | None:
        raise RuntimeError("boom")

    registry(reg)
    code, out, err = run("evaluate", write(tmp_path, "st.yaml", sync_target()))
    assert (code, err) == (1, "")
    assert json.loads(out)["response"]["status"] == {
        "code": 500,
        "reason": "InternalError",
        "message": "[broken] policy failed: RuntimeError: boom",
    }
    code, _, err = run("evaluate", write(tmp_path, "st.yaml", sync_target()), "-v")
    assert code == 1
    assert err.startswith(
        "tmc-policy: ERROR: kcp_tmc.policies.engine: policy broken failed: RuntimeError: boom\n"
    )
    assert "Traceback" in err


def test_verbose_logs_audit_lines(run: Run, tmp_path: Path) -> None:
    config = write(tmp_path, "config.yaml", "policies:\n  synctarget-validation: {mode: audit}\n")
    invalid = write(tmp_path, "st.yaml", sync_target("Bad_Name"))
    code, out, err = run("evaluate", invalid, "--config", config)
    assert (code, err) == (0, "")
    assert json.loads(out)["response"]["auditAnnotations"]["synctarget-validation"].startswith(
        'metadata.name: Invalid value: "Bad_Name"'
    )
    code, _, err = run("evaluate", invalid, "--config", config, "--verbose")
    assert err.startswith(
        "tmc-policy: INFO: kcp_tmc.policies.engine: policy synctarget-validation (audit mode) would deny "
        'SyncTarget Bad_Name: metadata.name: Invalid value: "Bad_Name"'
    )


def test_plugin_errors_are_warnings(run: Run, registry: Any) -> None:
    error = PluginError("acme", "acme-policies 1.0", "acme.tmc", ImportError("No module named 'acme'"))
    registry(builtins(), [error])
    code, _, err = run("evaluate", EXAMPLES / "objects" / "synctarget.yaml")
    assert code == 0
    assert err == (
        "tmc-policy: warning: policy plug-in 'acme' (acme.tmc) from acme-policies 1.0 was not loaded: "
        "ImportError: No module named 'acme'\n"
    )


@pytest.mark.parametrize(
    ("files", "args", "message"),
    [
        ({}, ["evaluate", "nope.yaml"], "nope.yaml: no such file"),
        ({"d/x": ""}, ["evaluate", "d"], "d: is a directory, not a file"),
        ({"f.yaml": b"\xff\xfe"}, ["evaluate", "f.yaml"], "f.yaml: not UTF-8 text: invalid start byte"),
        (
            {"f.yaml": "a: 1\nb: [\n"},
            ["evaluate", "f.yaml"],
            "f.yaml:3: not valid JSON or YAML: while parsing a flow node, expected the node content, but "
            "found '<stream end>'",
        ),
        (
            {"f.yaml": "a: \x07\n"},
            ["evaluate", "f.yaml"],
            "f.yaml: not valid JSON or YAML: unacceptable character #x0007: special characters are not "
            'allowed\n  in "<unicode string>", position 3',
        ),
        (
            {"f.yaml": "# nothing\n"},
            ["evaluate", "f.yaml"],
            "f.yaml: the file is empty; give an AdmissionReview or a Kubernetes object",
        ),
        (
            {"f.yaml": "a: 1\n---\nb: 2\n"},
            ["evaluate", "f.yaml"],
            "f.yaml: holds 2 documents; give one AdmissionReview or one object",
        ),
        (
            {"f.yaml": "[1]\n"},
            ["evaluate", "f.yaml"],
            "f.yaml: neither an AdmissionReview nor a Kubernetes object: an object needs a string "
            "apiVersion and kind (got a list)",
        ),
        (
            {"f.yaml": "metadata: {name: a}\n"},
            ["evaluate", "f.yaml"],
            "f.yaml: neither an AdmissionReview nor a Kubernetes object: an object needs a string "
            "apiVersion and kind (got a mapping without them)",
        ),
        (
            {"f.json": {"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": {}}},
            ["evaluate", "f.json"],
            "f.json: not a valid AdmissionReview: request.uid is missing",
        ),
        (
            {"f.json": {"kind": "AdmissionReview", "apiVersion": "v1"}},
            ["evaluate", "f.json"],
            "f.json: not a valid AdmissionReview: apiVersion must be admission.k8s.io/v1 or "
            "admission.k8s.io/v1beta1, got 'v1'",
        ),
        (
            {"f.json": {"kind": "AdmissionReview"}},
            ["evaluate", "f.json", "--operation", "UPDATE", "--user", "u", "--dry-run"],
            "f.json is an AdmissionReview, which carries its own request; --operation, --user, --dry-run "
            "apply only to a plain object",
        ),
        (
            {"st.json": sync_target()},
            ["evaluate", "st.json", "--operation", "UPDATE"],
            "--operation UPDATE needs --old-object FILE, the object as stored before the update",
        ),
        (
            {"st.json": sync_target()},
            ["evaluate", "st.json", "--old-object", "st.json"],
            "--old-object applies only to --operation UPDATE (the operation is CREATE; on DELETE, FILE "
            "is the object being deleted)",
        ),
        (
            {"st.json": sync_target(), "old.json": {"apiVersion": "v1", "kind": "Secret"}},
            ["evaluate", "st.json", "--operation", "UPDATE", "--old-object", "old.json"],
            "--old-object old.json is a Secret (v1) but FILE is a SyncTarget (workload.kcp.io/v1alpha1); "
            "both must be versions of the same object",
        ),
        (
            {"st.json": sync_target(), "old.json": "[]"},
            ["evaluate", "st.json", "--operation", "UPDATE", "--old-object", "old.json"],
            "old.json: --old-object must be a Kubernetes object with a string apiVersion and kind (got a "
            "list)",
        ),
        (
            {"st.json": sync_target(), "old.json": {"kind": "X"}},
            ["evaluate", "st.json", "--operation", "UPDATE", "--old-object", "old.json"],
            "old.json: --old-object must be a Kubernetes object with a string apiVersion and kind (got a "
            "mapping without them)",
        ),
        (
            {"st.json": sync_target(), "c.yaml": "policies:\n  x: {mode: loud}\n"},
            ["evaluate", "st.json", "--config", "c.yaml"],
            "c.yaml:2: policies.x.mode must be one of enforce, warn, audit (got 'loud')",
        ),
        (
            {"st.json": sync_target(), "c.yaml": "disabled: [nope]\n"},
            ["evaluate", "st.json", "--config", "c.yaml"],
            f"c.yaml:1: disabled: unknown policy 'nope' (known: {KNOWN_POLICIES})",
        ),
        (
            {"st.json": sync_target()},
            ["evaluate", "st.json", "--config", "missing.yaml"],
            "missing.yaml: no such file",
        ),
        (
            {"st.json": sync_target()},
            ["evaluate", "st.json", "--resource", "missing.yaml"],
            "missing.yaml: no such file",
        ),
        (
            {"st.json": sync_target(), "r.yaml": "- a\n"},
            ["evaluate", "st.json", "--resource", "r.yaml"],
            "r.yaml: --resource files hold Kubernetes objects with a string apiVersion and kind (got a list)",
        ),
        (
            {"st.json": sync_target(), "r.yaml": "kind: List\nitems: [{kind: X}]\n"},
            ["evaluate", "st.json", "--resource", "r.yaml"],
            "r.yaml: --resource files hold Kubernetes objects with a string apiVersion and kind (got a "
            "mapping without them)",
        ),
        (
            {"st.json": sync_target()},
            ["evaluate", "st.json", "--policy", "nope"],
            f"unknown policy 'nope' (known: {KNOWN_POLICIES})",
        ),
        (
            {"f.json": {"kind": "AdmissionReview"}},
            ["scaffold", "f.json"],
            "f.json is already an AdmissionReview; scaffold takes a plain object",
        ),
        (
            {"f.json": "5"},
            ["scaffold", "f.json"],
            "f.json: not a Kubernetes object: it needs a string apiVersion and kind (got a number)",
        ),
        (
            {"st.json": sync_target()},
            ["scaffold", "st.json", "--operation", "UPDATE"],
            "--operation UPDATE needs --old-object FILE, the object as stored before the update",
        ),
        (
            {"c.yaml": "nope: 1\n"},
            ["list", "--config", "c.yaml"],
            "c.yaml:1: unknown key 'nope' (expected one of defaultCluster, disabled, exemptions, policies)",
        ),
        (
            {"c.yaml": "policies: {nope: {}}\n"},
            ["list", "--config", "c.yaml"],
            f"c.yaml:1: policies.nope: unknown policy 'nope' (known: {KNOWN_POLICIES})",
        ),
        ({}, ["test", "nowhere"], "nowhere: no such file or directory"),
        ({"empty/x.yaml": ""}, ["test", "empty"], "empty: no tmc-test.yaml found under it"),
    ],
)
def test_bad_input_exits_2_with_the_reason(
    run: Run,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    files: dict[str, Any],
    args: list[str],
    message: str,
) -> None:
    for name, content in files.items():
        write(tmp_path, name, content)
    monkeypatch.chdir(tmp_path)
    code, out, err = run(*args)
    assert (code, out) == (2, "")
    assert err == f"tmc-policy: error: {message}\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "the following arguments are required: COMMAND"),
        (["evaluate"], "the following arguments are required: FILE"),
        (
            ["evaluate", "x", "--operation", "PATCH"],
            "argument --operation: invalid choice: 'PATCH' (choose from 'CREATE', 'UPDATE', 'DELETE', "
            "'CONNECT')",
        ),
        (
            ["evaluate", "x", "--validate-only", "--mutate-only"],
            "argument --mutate-only: not allowed with argument --validate-only",
        ),
        (["list", "-o", "xml"], "argument -o/--output: invalid choice: 'xml' (choose from 'table', 'json')"),
    ],
)
def test_usage_errors_exit_2(run: Run, args: list[str], message: str) -> None:
    code, out, err = run(*args)
    assert (code, out) == (2, "")
    assert err.splitlines()[-1].endswith(f"error: {message}")


def test_help_and_version(run: Run) -> None:
    code, out, _ = run("--help")
    assert (
        code == 0
        and "evaluate" in out
        and "Exit codes: 0 allowed/passed, 1 denied/failed, 2 bad input." in out
    )
    code, out, _ = run("--version")
    assert (code, out) == (0, "tmc-policy 0.1.0\n")


# --- scaffold ----------------------------------------------------------------------------------------


def test_scaffold_writes_the_review_the_apiserver_would_send(run: Run, tmp_path: Path) -> None:
    obj = write(
        tmp_path,
        "st.yaml",
        "apiVersion: workload.kcp.io/v1alpha1\nkind: SyncTarget\nmetadata: {name: a}\nspec: {evictAfter: "
        "2024-01-02T15:04:05Z}\n",
    )
    code, out, _ = run("scaffold", obj, "--uid", "u-1", "--user", "bob", "--groups", "g", "--dry-run")
    assert code == 0
    assert json.loads(out) == {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "u-1",
            "kind": {"group": "workload.kcp.io", "version": "v1alpha1", "kind": "SyncTarget"},
            "resource": {"group": "workload.kcp.io", "version": "v1alpha1", "resource": "synctargets"},
            "requestKind": {"group": "workload.kcp.io", "version": "v1alpha1", "kind": "SyncTarget"},
            "requestResource": {"group": "workload.kcp.io", "version": "v1alpha1", "resource": "synctargets"},
            "operation": "CREATE",
            "userInfo": {"username": "bob", "groups": ["g"]},
            "object": {
                "apiVersion": "workload.kcp.io/v1alpha1",
                "kind": "SyncTarget",
                "metadata": {"name": "a"},
                "spec": {"evictAfter": "2024-01-02T15:04:05Z"},  # a string, as kubectl reads YAML
            },
            "oldObject": None,
            "dryRun": True,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
            "name": "a",
        },
    }


def test_scaffold_a_delete_in_yaml_and_evaluate_it(run: Run, tmp_path: Path) -> None:
    protected = EXAMPLES / "objects" / "synctarget-protected.yaml"
    code, out, _ = run("scaffold", protected, "--operation", "DELETE", "-o", "yaml")
    assert code == 0
    review = yaml.safe_load(out)
    assert review["request"]["object"] is None
    assert review["request"]["oldObject"]["metadata"]["name"] == "eu-central1"
    assert review["request"]["options"] == {"apiVersion": "meta.k8s.io/v1", "kind": "DeleteOptions"}
    code, out, _ = run("evaluate", write(tmp_path, "review.yaml", out))
    assert code == 1
    assert json.loads(out)["response"]["uid"] == review["request"]["uid"]


# --- list --------------------------------------------------------------------------------------------


def test_list_shows_the_policies(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "_distributions", lambda: {"kcp_tmc": ["kcp-tmc"]})
    code, out, err = run("list")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split() == [
        "NAME",
        "TYPE",
        "KINDS",
        "OPERATIONS",
        "SUBRESOURCES",
        "MODE",
        "FAILURE",
        "SOURCE",
    ]
    assert [line.split()[:7] for line in lines[1:]] == [
        ["cluster-defaults", "mutating", "Cluster", "CREATE,UPDATE", "main", "enforce", "fail"],
        ["synctarget-defaults", "mutating", "SyncTarget", "CREATE,UPDATE", "main", "enforce", "fail"],
        ["cluster-validation", "validating", "Cluster", "CREATE,UPDATE", "main,status", "enforce", "fail"],
        [
            "federatedquota-validation",
            "validating",
            "FederatedQuota",
            "CREATE,UPDATE",
            "main,status",
            "enforce",
            "fail",
        ],
        ["location-validation", "validating", "Location", "CREATE,UPDATE", "main", "enforce", "fail"],
        [
            "quota-enforcement",
            "validating",
            "Pod,Deployment,ReplicaSet,StatefulSet,Job,Scale,ConfigMap,Workspace",
            "CREATE,UPDATE",
            "main,scale",
            "enforce",
            "fail",
        ],
        [
            "resourcequota-validation",
            "validating",
            "ResourceQuota",
            "CREATE,UPDATE",
            "main",
            "enforce",
            "fail",
        ],
        ["synctarget-deletion-protection", "validating", "SyncTarget", "DELETE", "main", "enforce", "fail"],
        [
            "synctarget-validation",
            "validating",
            "SyncTarget",
            "CREATE,UPDATE",
            "main,status",
            "enforce",
            "fail",
        ],
    ]
    assert lines[1].endswith("kcp_tmc.policies.builtin.cluster.cluster_defaults (kcp-tmc 0.1.0)")


def test_list_with_a_configuration_and_plugin_errors(run: Run, registry: Any, tmp_path: Path) -> None:
    error = PluginError("acme", "acme-policies 1.0", "acme.tmc", ImportError("No module named 'acme'"))
    registry(probe(), [error])
    config = write(
        tmp_path, "c.yaml", "disabled: [owner]\npolicies:\n  probe: {mode: warn, failureMode: ignore}\n"
    )
    code, out, err = run("list", "--config", config)
    assert (code, err) == (1, "")
    owner, echo = f"{__name__}.probe.<locals>.owner", f"{__name__}.probe.<locals>.echo"
    assert out == (
        "NAME   TYPE        KINDS       OPERATIONS            SUBRESOURCES  MODE                    FAILURE"
        "                SOURCE\n"
        "owner  mutating    SyncTarget  CREATE,UPDATE         main          disabled (enforce)      fail"
        f"                   {owner}\n"
        "probe  validating  SyncTarget  CREATE,UPDATE,DELETE  main,status   warn (default enforce)  "
        "ignore (default fail)"
        f"  {echo}\n"
        "\n"
        "plug-ins that failed to load:\n"
        "  policy plug-in 'acme' (acme.tmc) from acme-policies 1.0 was not loaded: ImportError: No "
        "module named 'acme'\n"
    )


def test_list_as_json(run: Run, registry: Any) -> None:
    error = PluginError("acme", "acme-policies 1.0", "acme.tmc", ImportError("gone"))
    registry(probe(), [error])
    code, out, _ = run("list", "-o", "json")
    assert code == 1
    listing = json.loads(out)
    assert listing["pluginErrors"] == [
        {
            "entryPoint": "acme",
            "distribution": "acme-policies 1.0",
            "value": "acme.tmc",
            "error": "policy plug-in 'acme' (acme.tmc) from acme-policies 1.0 was not loaded: "
            "ImportError: gone",
        }
    ]
    assert listing["policies"][1] == {
        "name": "probe",
        "type": "validating",
        "kinds": [{"group": "workload.kcp.io", "version": "v1alpha1", "kind": "SyncTarget"}],
        "operations": ["CREATE", "UPDATE", "DELETE"],
        "subresources": ["", "status"],
        "mode": "enforce",
        "defaultMode": "enforce",
        "failureMode": "fail",
        "defaultFailureMode": "fail",
        "enabled": True,
        "sideEffects": False,
        "source": f"{__name__}.probe.<locals>.echo",
        "distribution": "",
        "description": "",
    }


# --- test --------------------------------------------------------------------------------------------


def test_the_shipped_examples_pass(run: Run, tmp_path: Path) -> None:
    junit = tmp_path / "junit.xml"
    code, out, err = run("test", EXAMPLES, "--junit", junit)
    assert (code, err) == (0, "")
    assert "FAIL" not in out
    summary = out.splitlines()[-1]
    assert summary.endswith(
        "passed, 0 failed; 1 suite skipped (region-label: requires region-label, which is not installed)"
    )
    assert summary.startswith("9 suites, ")
    assert junit.read_text(encoding="utf-8").startswith("<?xml version='1.0' encoding='utf-8'?>\n<testsuites")


def test_a_failing_suite_prints_the_table_and_exits_1(run: Run, tmp_path: Path) -> None:
    write(
        tmp_path,
        "s/tmc-test.yaml",
        textwrap.dedent(
            """\
            name: demo
            policies: [synctarget-validation]
            tests:
            - name: bad name
              object: {apiVersion: workload.kcp.io/v1alpha1, kind: SyncTarget, metadata: {name: Bad}}
              expect:
                allowed: true
                policies: {synctarget-validation: deny}
            """
        ),
    )
    code, out, err = run("test", tmp_path / "s")
    assert (code, err) == (1, "")
    detail = (
        '[synctarget-validation] metadata.name: Invalid value: "Bad": a lowercase RFC 1123 subdomain '
        "must consist "
        "of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric "
        "character "
        "(e.g. 'example.com', regex used for validation is "
        "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
    )
    assert out == (
        "SUITE  TEST      POLICY                 EXPECTED  GOT     RESULT\n"
        "demo   bad name  (allowed)              allowed   denied  FAIL\n"
        "demo   bad name  synctarget-validation  deny      deny    PASS\n"
        "\n"
        f"FAIL demo / bad name / (allowed): message: {detail}\n"
        "\n"
        "1 suite, 1 test: 0 passed, 1 failed\n"
    )


def test_a_bad_suite_exits_2_and_still_reports(run: Run, tmp_path: Path) -> None:
    write(tmp_path, "bad/tmc-test.yaml", "tests: 5\n")
    write(
        tmp_path,
        "good/tmc-test.yaml",
        "tests:\n- name: t\n  object: {apiVersion: v1, kind: ConfigMap, metadata: {name: c}}\n  expect: "
        "{allowed: true}\n",
    )
    junit = tmp_path / "out.xml"
    code, out, err = run("test", tmp_path, "--junit", junit)
    assert code == 2
    bad = tmp_path / "bad" / "tmc-test.yaml"
    assert err == f"tmc-policy: error: {bad}:1: tests must be a non-empty list (got 5)\n"
    assert out.splitlines()[1].split() == [str(bad), "-", "-", "-", "-", "ERROR"]
    assert out.splitlines()[-1] == "1 suite, 1 test: 1 passed, 0 failed; 1 bad suite"
    assert 'errors="1"' in junit.read_text(encoding="utf-8")


def test_an_unwritable_junit_file_is_bad_input(run: Run, tmp_path: Path) -> None:
    code, _, err = run(
        "test", EXAMPLES / "suites" / "cluster-defaults", "--junit", tmp_path / "no" / "dir.xml"
    )
    assert code == 2
    assert (
        err == f"tmc-policy: error: {tmp_path}/no/dir.xml: cannot write the JUnit report: No such file or "
        "directory\n"
    )


def test_plural_summary_and_plugin_warnings(run: Run, registry: Any) -> None:
    error = PluginError("acme", "acme-policies 1.0", "acme.tmc", ImportError("gone"))
    registry(builtins(), [error])
    code, out, err = run(
        "test", EXAMPLES / "suites" / "cluster-defaults", EXAMPLES / "suites" / "cluster-validation"
    )
    assert code == 0
    assert out.splitlines()[-1] == "2 suites, 17 tests: 17 passed, 0 failed"
    assert err == (
        "tmc-policy: warning: policy plug-in 'acme' (acme.tmc) from acme-policies 1.0 was not loaded: "
        "ImportError: gone\n"
    )


def test_the_real_registry_loads_builtins(monkeypatch: pytest.MonkeyPatch) -> None:
    registry, errors = cli.load_registry()
    assert {"synctarget-validation", "cluster-defaults"} <= {p.name for p in registry}
    assert all(isinstance(e, PluginError) for e in errors)


# --- the third-party package, installed through its entry point ----------------------------------------


def _console(name: str) -> list[str]:
    script = Path(sys.executable).parent / name
    return [str(script)] if script.exists() else [sys.executable, "-m", "kcp_tmc.policies.cli"]


@pytest.mark.slow
def test_the_third_party_package_installs_and_loads_through_its_entry_point(tmp_path: Path) -> None:
    started = time.monotonic()
    source = tmp_path / "src"
    # Build from a copy: an in-tree build would leave build/ and *.egg-info in the checkout.
    shutil.copytree(
        EXAMPLES / "third-party", source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    )
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(target), str(source)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "COV_CORE"))}
    env["PYTHONPATH"] = str(target)

    listing = subprocess.run(
        [*_console("tmc-policy"), "list"], check=False, env=env, cwd=tmp_path, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert (listing.returncode, listing.stderr) == (0, "")
    (row,) = [line for line in listing.stdout.splitlines() if line.startswith("region-label ")]
    assert row.split()[:7] == [
        "region-label",
        "validating",
        "SyncTarget",
        "CREATE,UPDATE",
        "main",
        "enforce",
        "fail",
    ]
    assert row.endswith("tmc_region_policy.region_label (tmc-region-policy 0.1.0)")

    suite = subprocess.run(
        [*_console("tmc-policy"), "test", str(source)], check=False, env=env, cwd=tmp_path,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert (suite.returncode, suite.stderr) == (0, "")
    assert suite.stdout.splitlines()[-1] == "1 suite, 3 tests: 3 passed, 0 failed"

    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "kcp_tmc", "-q", "-p", "no:cacheprovider", "tests"],
        check=False, env=env, cwd=source, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert tests.stdout.splitlines()[-1].startswith("8 passed")
    assert time.monotonic() - started < 60


def test_the_example_federated_quota_is_valid(run: Run) -> None:
    code, out, err = run("evaluate", EXAMPLES / "objects" / "federatedquota.yaml")
    assert (code, err) == (0, "")
    assert json.loads(out)["response"]["allowed"] is True


def test_evaluate_checks_quota_against_resource_files(run: Run, tmp_path: Path) -> None:
    pod = tmp_path / "pod.yaml"
    pod.write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: big, namespace: team-a}\n"
        'spec: {containers: [{name: app, image: nginx, resources: {requests: {cpu: "2"}}}]}\n'
    )
    quotas = EXAMPLES / "suites" / "quota-enforcement" / "resources" / "quotas.yaml"
    code, out, _ = run("evaluate", pod, "--resource", quotas)
    assert code == 1
    assert json.loads(out)["response"]["status"] == {
        "code": 403,
        "reason": "QuotaExceeded",
        "message": "[quota-enforcement] spec.containers: exceeded quota: team-a, requested: requests.cpu=2, "
        "used: requests.cpu=7, limited: requests.cpu=8; lower the request or raise spec.overall of "
        "FederatedQuota team-a/team-a",
    }
