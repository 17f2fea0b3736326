"""Status writes as the quota reservation and the syncer make them: preconditions, dry runs, the sync verb."""

from __future__ import annotations

from conformance_kit import Backend, failure, synctarget, unique

MERGE_PATCH = "application/merge-patch+json"


def test_status_patch_with_a_resource_version_precondition(backend: Backend, synctargets: str) -> None:
    name = unique("st")
    created = backend.http("POST", synctargets, synctarget(name)).body
    first = created["metadata"]["resourceVersion"]
    fresh = {
        "metadata": {"resourceVersion": first},
        "status": {"lastSyncerHeartbeatTime": "2024-01-01T00:00:00Z"},
    }
    ok = backend.http("PATCH", f"{synctargets}/{name}/status", fresh, content_type=MERGE_PATCH)
    assert ok.status == 200, ok.body
    assert ok.body["status"]["lastSyncerHeartbeatTime"] == "2024-01-01T00:00:00Z"
    assert int(ok.body["metadata"]["resourceVersion"]) > int(first)
    # The same precondition again is stale now: the write is refused and changes nothing.
    stale = {
        "metadata": {"resourceVersion": first},
        "status": {"lastSyncerHeartbeatTime": "2025-01-01T00:00:00Z"},
    }
    refused = backend.http("PATCH", f"{synctargets}/{name}/status", stale, content_type=MERGE_PATCH)
    assert refused.body == failure(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on synctargets.workload.kcp.io "{name}": the object has been '
        "modified; please apply your changes to the latest version and try again",
        {"name": name, "group": "workload.kcp.io", "kind": "synctargets"},
    )
    now = backend.http("GET", f"{synctargets}/{name}").body
    assert now["status"]["lastSyncerHeartbeatTime"] == "2024-01-01T00:00:00Z"


def test_dry_run_status_patch_answers_the_result_and_stores_nothing(
    backend: Backend, synctargets: str
) -> None:
    name = unique("st")
    created = backend.http("POST", synctargets, synctarget(name)).body
    patch = {"status": {"lastSyncerHeartbeatTime": "2024-01-01T00:00:00Z"}}
    dry = backend.http("PATCH", f"{synctargets}/{name}/status?dryRun=All", patch, content_type=MERGE_PATCH)
    assert dry.status == 200, dry.body
    assert dry.body["status"]["lastSyncerHeartbeatTime"] == "2024-01-01T00:00:00Z"
    stored = backend.http("GET", f"{synctargets}/{name}").body
    assert stored["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    assert "lastSyncerHeartbeatTime" not in (stored.get("status") or {})


def test_dry_run_must_be_all(backend: Backend, synctargets: str) -> None:
    name = unique("st")
    response = backend.http("POST", f"{synctargets}?dryRun=Some", synctarget(name))
    detail = 'Unsupported value: ["Some"]: supported values: "All"'
    assert response.body == failure(
        422,
        "Invalid",
        f'CreateOptions.meta.k8s.io "" is invalid: dryRun: {detail}',
        {
            "group": "meta.k8s.io",
            "kind": "CreateOptions",
            "causes": [{"reason": "FieldValueNotSupported", "message": detail, "field": "dryRun"}],
        },
    )
    assert backend.http("GET", f"{synctargets}/{name}").status == 404


def test_subject_access_review_of_the_sync_verb(backend: Backend) -> None:
    # The virtual workspace asks this of every syncer: verb "sync" on one SyncTarget by name.
    def review(user: str, groups: list[str]) -> dict[str, object]:
        body = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": user,
                "groups": groups,
                "resourceAttributes": {
                    "verb": "sync",
                    "group": "workload.kcp.io",
                    "resource": "synctargets",
                    "name": "west",
                },
            },
        }
        response = backend.http("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", body)
        assert response.status == 201, response.body
        assert response.body["spec"]["resourceAttributes"]["verb"] == "sync"
        status: dict[str, object] = response.body["status"]
        return status

    assert review("root", ["system:masters"])["allowed"] is True
    assert not review("bob", []).get("allowed")
