"""The distribution as a user installs it: a wheel, a plain (not editable) install, a fresh venv.

The checkout keeps the packages at the top (``policies/``, ``webhook/``...) with symlinks under
``kcp_tmc/`` for development; ``setup.cfg`` maps them to ``kcp_tmc.*``.  This test builds the
wheel once (offline: ``--no-build-isolation --no-index``), checks that it holds real files under
``kcp_tmc/`` only, installs it into a fresh venv and, from a directory outside the checkout,
checks that ``import kcp_tmc.policies`` works, ``import policies`` does not, and the console
scripts run and serve.  The fresh venv gets exactly the runtime dependencies the wheel declares
(its ``Requires-Dist`` without extras, followed through each dependency's own requirements and
the extras asked of it), linked from the dev venv's site-packages, and nothing else: no dev
packages, none of our own code.  So a dependency the code needs but the wheel does not declare
(gunicorn's gevent worker needs ``packaging``, which only ``gunicorn[gevent]`` brings) fails
here as it would for a user, offline and without downloading anything.
"""

from __future__ import annotations

import base64
import configparser
import contextlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from kcp_tmc.testing import FakeAPIServer
from kcp_tmc.testing.crds import crd
from tests.policies.builtin.helpers import BUILTIN_POLICIES
from tests.webhook.test_webhook_quota import fq, pod_review, used_of, with_status

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = ("tmc-policy", "tmc-webhook", "tmc-certs", "tmc-reconciler")
#: The generic names that must not land at the top of site-packages.
GENERIC = ("policies", "webhook", "reconcilers", "certs", "testing")


def _package_dirs() -> dict[str, str]:
    """``setup.cfg``'s ``package_dir``: package name -> folder in the checkout."""
    parser = configparser.ConfigParser()
    parser.read(REPO / "setup.cfg", encoding="utf-8")
    mapping = {}
    for line in parser["options"]["package_dir"].strip().splitlines():
        package, _, folder = line.partition("=")
        mapping[package.strip()] = folder.strip()
    return mapping


def _package_data() -> dict[str, list[str]]:
    """``setup.cfg``'s ``package_data``: package name (or ``*``) -> glob patterns."""
    parser = configparser.ConfigParser()
    parser.read(REPO / "setup.cfg", encoding="utf-8")
    data: dict[str, list[str]] = {}
    for package, patterns in parser["options.package_data"].items():
        data[package] = [p.strip() for p in patterns.split(",") if p.strip()]
    return data


# Caches, environments and build output: nothing a build reads.
_SKIP_TOP = {
    ".venv",
    ".git",
    ".mypy_cache",
    ".hypothesis",
    ".pytest_cache",
    ".ruff_cache",
    "build",
    "dist",
    ".lower-bounds",
}
_SKIP_ANYWHERE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", ".coverage*")


def _copy_sources(dest: Path) -> None:
    """The checkout, copied, so that the build leaves no build/ or *.egg-info in it.

    ``symlinks=True`` keeps the links (kcp_tmc/<pkg> -> ../<pkg>, policies/crds -> ../charts/...) as
    links, as they are in the checkout, so that the build sees what a build of the checkout sees.
    """

    def ignore(folder: str, names: list[str]) -> set[str]:
        skipped = set(_SKIP_ANYWHERE(folder, names))
        if Path(folder) == REPO:
            skipped |= _SKIP_TOP & set(names)
        return skipped

    shutil.copytree(REPO, dest, symlinks=True, ignore=ignore)


def _run(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "PYTHONHOME") and not k.startswith("COV_CORE")
    }
    env["PYTHONNOUSERSITE"] = "1"
    return subprocess.run(args, check=False, capture_output=True, text=True, env=env, timeout=180, **kwargs)  # type: ignore[call-overload]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("build")
    source = work / "src"
    _copy_sources(source)
    dist = work / "dist"
    built = _run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "-w", str(dist), str(source)],
        cwd=work,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout + built.stderr
    (found,) = dist.glob("kcp_tmc-*.whl")
    return found


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("venv") / "venv"
    made = _run([sys.executable, "-m", "venv", "--without-pip", str(root)])
    assert made.returncode == 0, made.stderr
    python = root / "bin" / "python"
    installed = _run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
         "--no-index", str(wheel)],
    )  # fmt: skip
    assert installed.returncode == 0, installed.stdout + installed.stderr
    site = Path(
        _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    )
    for dist in runtime_closure(wheel):
        _link_distribution(_substitute(dist), site)
    return root


def _declared(wheel: Path) -> list[str]:
    """The wheel's ``Requires-Dist`` lines."""
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        text = archive.read(name).decode()
    return [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Requires-Dist:")]


def runtime_closure(wheel: Path) -> list[metadata.Distribution]:
    """The installed distributions a plain ``pip install <wheel>`` would bring, extras followed."""
    wanted: dict[str, set[str]] = {}
    found: dict[str, metadata.Distribution] = {}
    queue = [(Requirement(line), "") for line in _declared(wheel)]
    while queue:
        requirement, extra = queue.pop()
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": extra}):
            continue
        key = canonicalize_name(requirement.name)
        extras = set(requirement.extras)
        if key in found and extras <= wanted[key]:
            continue
        dist = metadata.distribution(requirement.name)
        assert dist.version in requirement.specifier or not requirement.specifier, (requirement, dist.version)
        new = extras - wanted.get(key, set()) if key in found else {"", *extras}
        wanted.setdefault(key, set()).update(extras)
        found[key] = dist
        for line in dist.requires or []:
            for asked in new:
                queue.append((Requirement(line), asked))
    return list(found.values())


#: A folder holding other versions of some runtime dependencies (``pip install --target``), used in
#: their place: ``make test-lower-bounds`` puts the lowest versions ``setup.cfg`` allows there.
LOWER_BOUNDS = os.environ.get("KCP_TMC_LOWER_BOUNDS", "")


def _substitute(dist: metadata.Distribution) -> metadata.Distribution:
    if not LOWER_BOUNDS:
        return dist
    name = canonicalize_name(dist.metadata["Name"])
    for other in metadata.distributions(path=[str(Path(LOWER_BOUNDS).resolve())]):
        if canonicalize_name(other.metadata["Name"]) == name:
            return other
    return dist


def _link_distribution(dist: metadata.Distribution, site: Path) -> None:
    """Links a distribution's top-level files and folders (and its .dist-info) into ``site``."""
    base = Path(str(dist.locate_file("")))
    tops = {Path(str(f)).parts[0] for f in dist.files or () if not str(f).startswith("..")}
    for top in tops:
        target = site / top
        if not target.exists() and (base / top).exists():
            target.symlink_to(base / top)


@pytest.mark.slow
def test_the_wheel_holds_real_files_under_kcp_tmc_only(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        infos = archive.infolist()
    dist_info = next(n.split("/")[0] for n in names if n.split("/")[0].endswith(".dist-info"))
    assert {n.split("/")[0] for n in names} == {"kcp_tmc", dist_info}
    # A symlink stored in a zip has the S_IFLNK bits in its external attributes.
    assert [i.filename for i in infos if (i.external_attr >> 16) & 0o170000 == 0o120000] == []
    # Every module and data file of every mapped folder is in the wheel, at its kcp_tmc.* place.
    data = _package_data()
    for package, folder in _package_dirs().items():
        prefix = package.replace(".", "/")
        patterns = ["*.py", *data.get("*", []), *data.get(package, [])]
        expected = {
            f"{prefix}/{p.relative_to(REPO / folder).as_posix()}"
            for pattern in patterns
            for p in (REPO / folder).glob(pattern)
            if p.is_file()
        }
        # Code packages bring modules; the CRDs package is data only.
        assert expected, folder
        missing = expected - set(names)
        assert missing == set(), f"{folder}/ is not fully packaged as {package}: {sorted(missing)}"
    assert any(n.startswith("kcp_tmc/policies/crds/") and n.endswith(".yaml") for n in names)
    for marker in ("kcp_tmc/py.typed", "kcp_tmc/policies/py.typed"):
        assert marker in names
    entry_points = zipfile.ZipFile(wheel).read(f"{dist_info}/entry_points.txt").decode()
    for script in SCRIPTS:
        assert f"{script} = kcp_tmc." in entry_points
    assert "kcp_tmc = kcp_tmc.policies.testing" in entry_points


@pytest.mark.slow
def test_a_plain_install_imports_kcp_tmc_and_nothing_generic(venv: Path, tmp_path: Path) -> None:
    python = str(venv / "bin" / "python")
    probe = (
        "import importlib, json, kcp_tmc.policies, kcp_tmc.webhook, kcp_tmc.reconcilers, kcp_tmc.certs, "
        "kcp_tmc.testing\n"
        "found = {}\n"
        f"for name in {GENERIC!r}:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "        found[name] = 'imported'\n"
        "    except ModuleNotFoundError as exc:\n"
        "        found[name] = exc.name\n"
        "print(json.dumps({'policies_file': kcp_tmc.policies.__file__, 'generic': found}))\n"
    )
    # From a directory outside the checkout, so that nothing of the checkout is on sys.path.
    result = _run([python, "-c", probe], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert Path(report["policies_file"]).resolve().is_relative_to(venv.resolve())
    assert report["generic"] == {name: name for name in GENERIC}


@pytest.mark.slow
def test_the_console_scripts_are_installed_and_run(venv: Path, tmp_path: Path) -> None:
    for script in SCRIPTS:
        assert (venv / "bin" / script).is_file(), script
        helped = _run([str(venv / "bin" / script), "--help"], cwd=tmp_path)
        assert (helped.returncode, helped.stderr) == (0, ""), script
    listing = _run([str(venv / "bin" / "tmc-policy"), "list", "-o", "json"], cwd=tmp_path)
    assert listing.returncode == 0, listing.stderr
    policies = json.loads(listing.stdout)["policies"]
    assert {p["name"] for p in policies} >= BUILTIN_POLICIES
    version = _run([str(venv / "bin" / "tmc-policy"), "--version"], cwd=tmp_path)
    assert version.stdout == "tmc-policy 0.1.0\n"


@pytest.mark.slow
def test_the_closure_follows_extras_and_leaves_dev_packages_out(wheel: Path) -> None:
    names = {canonicalize_name(d.metadata["Name"]) for d in runtime_closure(wheel)}
    assert {"flask", "gunicorn", "gevent", "kubernetes", "cryptography"} <= names
    assert "packaging" in names, "gunicorn[gevent] brings packaging"
    assert not names & {"pytest", "hypothesis", "mypy", "ruff", "coverage"}


@pytest.mark.slow
@contextlib.contextmanager
def _installed_webhook(venv: Path, tmp_path: Path, *args: str) -> Iterator[Callable[[str, bytes], Any]]:
    """The installed ``tmc-webhook`` over TLS (with ``args``); yields ``post(path, review)``."""
    bin_dir = venv / "bin"
    certs = _run(
        [str(bin_dir / "tmc-certs"), "generate", "--service", "tmc-webhook", "--namespace", "tmc-system",
         "--out", str(tmp_path / "certs"), "--dns", "localhost", "--ip", "127.0.0.1"],
        cwd=tmp_path,
    )  # fmt: skip
    assert certs.returncode == 0, certs.stderr
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = (tmp_path / "webhook.log").open("w")
    cert, key = tmp_path / "certs" / "tls.crt", tmp_path / "certs" / "tls.key"
    env = {"PATH": os.environ["PATH"], "PYTHONNOUSERSITE": "1"}
    server = subprocess.Popen(
        [str(bin_dir / "tmc-webhook"), "--bind", f"127.0.0.1:{port}",
         "--cert-file", str(cert), "--key-file", str(key), *args],
        cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    context = ssl.create_default_context(cafile=str(tmp_path / "certs" / "ca.crt"))

    def post(path: str, review: bytes) -> Any:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, (tmp_path / "webhook.log").read_text()
            try:
                request = urllib.request.Request(
                    f"https://127.0.0.1:{port}{path}",
                    data=review,
                    headers={"Content-Type": "application/json"},
                )
                with urllib.request.urlopen(request, context=context, timeout=5) as response:
                    return json.loads(response.read())
            except (ConnectionError, urllib.error.URLError):
                assert time.monotonic() < deadline, (tmp_path / "webhook.log").read_text()
                time.sleep(0.2)

    try:
        yield post
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def test_the_installed_webhook_serves_a_review_over_tls(venv: Path, tmp_path: Path) -> None:
    review = (REPO / "examples" / "reviews" / "synctarget-create.json").read_bytes()
    with _installed_webhook(venv, tmp_path) as post:
        answer = post("/validate", review)
    sent = json.loads(review)
    assert answer["kind"] == "AdmissionReview"
    assert answer["response"]["uid"] == sent["request"]["uid"]
    assert answer["response"]["allowed"] is True


def test_the_installed_webhook_reserves_quota_through_the_apiserver(venv: Path, tmp_path: Path) -> None:
    # The lookup's cache, its reservation on the event loop and its HTTP stack, as a plain install has
    # them; the apiserver is the dev venv's fake.
    with FakeAPIServer() as api:
        api.install_crd(crd("federatedquotas.tmc.kcp.io"))
        api.create(fq(limit="4"))
        with_status(api, "1")
        with _installed_webhook(venv, tmp_path, "--kubeconfig", api.kubeconfig_path) as post:
            admitted = post("/validate/quota-enforcement", json.dumps(pod_review("fits", "2")).encode())
            assert admitted["response"]["allowed"] is True, admitted
            assert used_of(api) == "3"
            denied = post("/validate/quota-enforcement", json.dumps(pod_review("over", "2")).encode())
    assert denied["response"]["allowed"] is False
    assert denied["response"]["status"]["code"] == 403
    assert denied["response"]["status"]["message"].startswith(
        "[quota-enforcement] spec.containers: exceeded quota: team-a, requested: requests.cpu=2, "
        "used: requests.cpu=3, limited: requests.cpu=4"
    )


@pytest.mark.slow
def test_the_installed_test_kit_serves_on_aiohttp(venv: Path, tmp_path: Path) -> None:
    # kcp_tmc.testing's server runs on aiohttp: the wheel must declare it for users' test suites.
    probe = (
        "import json\n"
        "from kcp_tmc.testing import FakeAPIServer\n"
        "with FakeAPIServer() as api:\n"
        "    created = api.http('POST', '/api/v1/namespaces/default/configmaps',\n"
        "                       {'metadata': {'name': 'c'}, 'data': {'k': 'v'}})\n"
        "    listed = api.http('GET', '/api/v1/namespaces/default/configmaps')\n"
        "print(json.dumps([created.status, [i['metadata']['name'] for i in listed.json()['items']]]))\n"
    )
    result = _run([str(venv / "bin" / "python"), "-c", probe], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [201, ["c"]]


def _venv_version(venv: Path, distribution: str) -> str:
    probe = f"from importlib.metadata import version; print(version({distribution!r}))"
    return _run([str(venv / "bin" / "python"), "-c", probe]).stdout.strip()


@pytest.mark.slow
def test_the_venv_runs_the_gunicorn_the_range_allows(venv: Path, wheel: Path) -> None:
    (declared,) = [Requirement(r) for r in _declared(wheel) if Requirement(r).name == "gunicorn"]
    installed = _venv_version(venv, "gunicorn")
    assert installed in declared.specifier
    if LOWER_BOUNDS:
        # make test-lower-bounds: the lowest version the range admits is the one under test.
        lowest = min(str(s.version) for s in declared.specifier if s.operator == ">=")
        assert installed == lowest, (installed, str(declared.specifier))


@pytest.mark.slow
def test_the_installed_certs_cli_generates_checks_rotates_and_prints_the_bundle(
    venv: Path, tmp_path: Path
) -> None:
    certs = str(venv / "bin" / "tmc-certs")
    out = tmp_path / "certs"
    made = _run(
        [certs, "generate", "--service", "tmc-webhook", "--namespace", "tmc-system", "--out", str(out)]
    )
    assert made.returncode == 0, made.stderr
    assert sorted(p.name for p in out.iterdir()) == ["ca.crt", "ca.key", "tls.crt", "tls.key"]
    checked = _run([certs, "check", str(out)])
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.count(" ok") == 2, checked.stdout
    before = (out / "tls.crt").read_bytes()
    rotated = _run([certs, "rotate", "--force", str(out)])
    assert rotated.returncode == 0, rotated.stderr
    assert (out / "tls.crt").read_bytes() != before
    bundle = _run([certs, "ca-bundle", str(out)])
    assert bundle.returncode == 0, bundle.stderr
    assert base64.b64decode(bundle.stdout.strip()) == (out / "ca.crt").read_bytes()
    refused = _run(
        [certs, "generate", "--service", "tmc-webhook", "--namespace", "tmc-system", "--out", str(out)]
    )
    assert refused.returncode == 2
    assert refused.stderr.startswith("tmc-certs: error: ")


@pytest.mark.slow
def test_the_installed_policy_cli_evaluates_a_review(venv: Path, tmp_path: Path) -> None:
    policy = str(venv / "bin" / "tmc-policy")
    allowed = _run([policy, "evaluate", str(REPO / "examples" / "reviews" / "synctarget-create.json")])
    assert allowed.returncode == 0, allowed.stderr
    assert json.loads(allowed.stdout)["response"]["allowed"] is True
    denied = _run([policy, "evaluate", str(REPO / "examples" / "objects" / "synctarget-invalid.yaml")])
    assert denied.returncode == 1, denied.stdout + denied.stderr
    answer = json.loads(denied.stdout)["response"]
    assert answer["allowed"] is False
    assert "[synctarget-validation]" in answer["status"]["message"]
    suites = _run([policy, "test", str(REPO / "examples" / "suites")], cwd=tmp_path)
    assert suites.returncode == 0, suites.stdout + suites.stderr


@pytest.mark.slow
def test_the_installed_reconciler_runs_a_cycle_against_the_fake_server(venv: Path, tmp_path: Path) -> None:
    from kcp_tmc.reconcilers.client import KubeClient
    from kcp_tmc.reconcilers.resources import SYNCTARGETS
    from kcp_tmc.testing import FakeAPIServer
    from tests.reconcilers.reconciler_processes import crds, wait_for
    from tests.reconcilers.test_reconciler_synctarget_e2e import create_target, now_text

    with FakeAPIServer() as api, KubeClient.from_kubeconfig_file(api.kubeconfig_path, timeout=5.0) as kube:
        for crd in crds():
            api.install_crd(crd)
        create_target(kube, "eu-1", heartbeat=now_text())
        log_path = tmp_path / "reconciler.log"
        env = {"PATH": os.environ["PATH"], "PYTHONNOUSERSITE": "1", "PYTHONUNBUFFERED": "1"}
        with log_path.open("w") as log:
            process = subprocess.Popen(
                [str(venv / "bin" / "tmc-reconciler"), "--kubeconfig", api.kubeconfig_path,
                 "--metrics-bind=127.0.0.1:0", "--poll-interval=300ms", "--leader-elect",
                 "--leader-elect-namespace=default", "--shard", "root=https://shard-1.example:6443/"],
                cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=log, env=env,
            )  # fmt: skip
            try:

                def ready() -> bool:
                    assert process.poll() is None, log_path.read_text()
                    st = kube.get(SYNCTARGETS, "eu-1")
                    conditions = st.get("status", {}).get("conditions", [])
                    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

                wait_for(ready, 60, f"no Ready SyncTarget: {log_path.read_text()}", interval=0.1)
                lines = [json.loads(line) for line in log_path.read_text().splitlines()]
                port = next(line["metrics_port"] for line in lines if line.get("message") == "started")
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as response:
                    assert response.status == 200
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                    assert b"tmc_reconciler" in response.read()
            finally:
                process.terminate()
                code = process.wait(timeout=30)
        st = kube.get(SYNCTARGETS, "eu-1")
    assert code == 0, log_path.read_text()
    assert st["status"]["virtualWorkspaces"][0]["syncerURL"].startswith("https://shard-1.example:6443/")
    assert json.loads(log_path.read_text().splitlines()[-1])["message"] == "stopped"
