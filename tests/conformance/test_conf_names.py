"""Name rules and printed values of 422 messages: the fake words them as kube-apiserver does."""

from __future__ import annotations

from conformance_kit import Backend, configmap, unique

SUBDOMAIN = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation "
    "is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)


def test_bad_object_name(backend: Backend, namespace: str) -> None:
    response = backend.http(
        "POST", f"/api/v1/namespaces/{namespace}/configmaps", configmap("Bad_Name", namespace)
    )
    assert response.status == 422
    assert response.body["message"] == (
        f'ConfigMap "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name": {SUBDOMAIN}'
    )
    assert response.body["details"]["causes"] == [
        {
            "reason": "FieldValueInvalid",
            "message": f'Invalid value: "Bad_Name": {SUBDOMAIN}',
            "field": "metadata.name",
        }
    ]


def test_too_long_and_bad_name_reports_both(backend: Backend, namespace: str) -> None:
    name = "A" * 254
    response = backend.http("POST", f"/api/v1/namespaces/{namespace}/configmaps", configmap(name, namespace))
    assert response.status == 422
    causes = [cause["message"] for cause in response.body["details"]["causes"]]
    assert causes == [
        f'Invalid value: "{name}": must be no more than 253 characters',
        f'Invalid value: "{name}": {SUBDOMAIN}',
    ]


def test_namespace_name_is_a_label(backend: Backend) -> None:
    name = unique("dotted") + ".example"
    response = backend.http("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
    assert response.status == 422
    assert response.body["message"] == (
        f'Namespace "{name}" is invalid: metadata.name: Invalid value: "{name}": must not contain dots'
    )


def test_a_whole_float_prints_as_go_does(backend: Backend, widgets: str) -> None:
    # 1000000.0 decodes as a float64 (it has a fraction part in its text): %v prints it 1e+06.
    body = (
        b'{"apiVersion":"conformance.kcp.io/v1","kind":"Widget","metadata":{"name":"w"},'
        b'"spec":{"size":"small","replicas":1000000.0}}'
    )
    response = backend.http("POST", widgets, body, content_type="application/json")
    assert response.status == 422, response.body
    assert response.body["details"]["causes"][0]["message"] == (
        "Invalid value: 1e+06: spec.replicas in body should be less than or equal to 10"
    )
