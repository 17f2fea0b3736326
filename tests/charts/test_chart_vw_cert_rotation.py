"""A rotated serving-certificate Secret reaches the virtual workspace's files without a restart.

kubelet refreshes a Secret volume in place (new files behind the ``..data`` symlink) but never a
``subPath`` mount, and only the Secret the volume names.  So for each way of getting certificates,
the reconciler's ``--vw-cert-file``/``--vw-key-file`` must lie in a whole-Secret mount of the Secret
that renewal writes: the renew CronJob's, cert-manager's Certificate's, or the user's own.
"""

from __future__ import annotations

import posixpath
import re

import pytest

from tests.charts.chart_kit import NAMESPACE, RELEASE, Manifest, find, render

RECONCILER = f"{RELEASE}-reconciler"
WEBHOOK = f"{RELEASE}-webhook"
MODES = {
    "jobs": [],
    "cert-manager": ["certManager.enabled=true"],
    "user-secret": ["tls.existingSecret=my-tls", "tls.caBundle=Y2E="],
}


def renewed_secret(mode: str, manifests: list[Manifest]) -> str:
    """The Secret that renewal writes in ``mode``."""
    if mode == "cert-manager":
        return str(find(manifests, "Certificate", WEBHOOK)["spec"]["secretName"])
    if mode == "user-secret":
        return "my-tls"
    script = find(manifests, "CronJob", f"{RELEASE}-certs-renew")["spec"]["jobTemplate"]["spec"]["template"]
    args = script["spec"]["containers"][0]["args"][0]
    (written,) = set(re.findall(r"tmc-certs inject \S+ --secret ([\w.-]+)/([\w.-]+)", args))
    assert written[0] == NAMESPACE
    return written[1]


def file_args(container: dict[str, object]) -> dict[str, str]:
    args = container["args"]
    assert isinstance(args, list)
    return dict(
        a.removeprefix("--").split("=", 1) for a in args if a.startswith(("--vw-cert-file", "--vw-key-file"))
    )


@pytest.mark.parametrize("mode", sorted(MODES))
def test_the_vw_certificate_files_follow_the_renewed_secret(mode: str) -> None:
    manifests = render(*MODES[mode])
    pod = find(manifests, "Deployment", RECONCILER)["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    files = file_args(container)
    assert set(files) == {"vw-cert-file", "vw-key-file"}
    folders = {posixpath.dirname(path) for path in files.values()}
    (folder,) = folders
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == folder]
    assert "subPath" not in mount and "subPathExpr" not in mount, "kubelet never refreshes a subPath mount"
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert volume["secret"]["secretName"] == renewed_secret(mode, manifests)
    # The whole Secret, or at least both keys the flags name.
    items = {item["key"]: item["path"] for item in volume["secret"].get("items", [])}
    if items:
        assert {items.get("tls.crt"), items.get("tls.key")} == {posixpath.basename(p) for p in files.values()}
    else:
        assert sorted(posixpath.basename(p) for p in files.values()) == ["tls.crt", "tls.key"]
    # The webhook reads the same Secret, so one renewal serves both.
    webhook = find(manifests, "Deployment", WEBHOOK)["spec"]["template"]["spec"]
    assert volume["secret"] in [v.get("secret") for v in webhook["volumes"]]
