"""A real etcd + kube-apiserver pair for tests, started from ``KUBEBUILDER_ASSETS``.

The same binaries controller-runtime's envtest uses (``setup-envtest use``
prints the folder), started the same way: loopback ephemeral ports, a
throwaway data directory and certificates, RBAC, and no ``ServiceAccount``
admission plugin (nothing creates the default ServiceAccounts).  Requests are
authenticated with a static token file: an admin token in ``system:masters``
plus any tokens you pass::

    with RealAPIServer(tokens={"dev-token": ("alice", ["dev"])}) as api:
        client = kubernetes.client.CoreV1Api(api.api_client())
        api.install_crd(crd)

It mirrors :class:`~kcp_tmc.testing.FakeAPIServer` where it can (``url``,
``kubeconfig_path``, ``api_client()``, ``install_crd()``, ``stop()``), so one
test can run against either.  :class:`EnvtestUnavailable` is raised before
anything starts when ``KUBEBUILDER_ASSETS`` is unset or lacks a binary; tests
turn it into a skip.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import http.client
import io
import json
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import kubernetes.client
import yaml
from cryptography.hazmat.primitives import serialization

from kcp_tmc.certs.generate import issue_for_names, new_ca, new_key
from kcp_tmc.testing.server import HTTPReply, send_http

__all__ = ["ASSETS_ENV", "EnvtestUnavailable", "RealAPIServer", "RealAPIServerError", "assets_dir"]

ASSETS_ENV = "KUBEBUILDER_ASSETS"
BINARIES = ("etcd", "kube-apiserver")
SKIP_REASON = "KUBEBUILDER_ASSETS is not set: the real kube-apiserver backend is skipped"
ADMIN_USER = "admin"
SUPERUSER_GROUP = "system:masters"
#: Lines of a process's output quoted when it fails.
OUTPUT_TAIL_LINES = 20


class EnvtestUnavailable(RuntimeError):
    """The binaries are not available; ``str()`` says why (a ready-made skip reason)."""


class RealAPIServerError(RuntimeError):
    """etcd or kube-apiserver did not come up (or died); the message quotes its last output."""


def assets_dir(env: Mapping[str, str] | None = None) -> Path:
    """The folder holding ``etcd`` and ``kube-apiserver``, or :class:`EnvtestUnavailable`."""
    value = (os.environ if env is None else env).get(ASSETS_ENV, "")
    if not value:
        raise EnvtestUnavailable(SKIP_REASON)
    folder = Path(value)
    missing = [name for name in BINARIES if not os.access(folder / name, os.X_OK)]
    if missing:
        raise EnvtestUnavailable(
            f"{ASSETS_ENV}={value} has no executable {' or '.join(missing)}: "
            "the real kube-apiserver backend is skipped (run `setup-envtest use -p path`)"
        )
    return folder


def free_port() -> int:
    """An unused loopback port (bound once and released, as envtest does)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Layout:
    """Where everything of one run lives: ports, folders, files."""

    root: Path
    etcd_client_port: int
    etcd_peer_port: int
    secure_port: int

    @property
    def data_dir(self) -> Path:
        return self.root / "etcd-data"

    @property
    def cert_dir(self) -> Path:
        return self.root / "certs"

    @property
    def etcd_url(self) -> str:
        return f"http://127.0.0.1:{self.etcd_client_port}"

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.secure_port}"

    @property
    def token_file(self) -> Path:
        return self.root / "tokens.csv"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def serving_cert(self) -> Path:
        return self.cert_dir / "apiserver.crt"

    @property
    def serving_key(self) -> Path:
        return self.cert_dir / "apiserver.key"

    @property
    def ca_cert(self) -> Path:
        return self.cert_dir / "ca.crt"

    @property
    def sa_key(self) -> Path:
        return self.cert_dir / "sa-signer.key"

    @property
    def sa_pub(self) -> Path:
        return self.cert_dir / "sa-signer.pub"


def etcd_args(layout: Layout) -> list[str]:
    """The etcd command line: one member on loopback, data in the run folder, no fsync."""
    return [
        f"--data-dir={layout.data_dir}",
        f"--listen-client-urls={layout.etcd_url}",
        f"--advertise-client-urls={layout.etcd_url}",
        f"--listen-peer-urls=http://127.0.0.1:{layout.etcd_peer_port}",
        f"--initial-advertise-peer-urls=http://127.0.0.1:{layout.etcd_peer_port}",
        f"--initial-cluster=default=http://127.0.0.1:{layout.etcd_peer_port}",
        # Durability is pointless for a throwaway store and fsync dominates its latency.
        "--unsafe-no-fsync=true",
        "--log-level=warn",
    ]


def apiserver_args(layout: Layout, extra: Sequence[str] = ()) -> list[str]:
    """The kube-apiserver command line, following controller-runtime's envtest defaults.

    ``extra`` flags come last, so they override a default of the same name.
    """
    return [
        f"--etcd-servers={layout.etcd_url}",
        f"--cert-dir={layout.cert_dir}",
        f"--tls-cert-file={layout.serving_cert}",
        f"--tls-private-key-file={layout.serving_key}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        f"--secure-port={layout.secure_port}",
        "--service-cluster-ip-range=10.0.0.0/24",
        "--allow-privileged=true",
        # Nothing runs the controller that creates default ServiceAccounts.
        "--disable-admission-plugins=ServiceAccount",
        "--authorization-mode=RBAC",
        f"--token-auth-file={layout.token_file}",
        f"--service-account-issuer={layout.url}/",
        f"--service-account-key-file={layout.sa_pub}",
        f"--service-account-signing-key-file={layout.sa_key}",
        *extra,
    ]


def token_file_text(tokens: Mapping[str, Sequence[Any]]) -> str:
    """``--token-auth-file`` CSV: ``token,user,uid,"group1,group2"`` per line."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for token, entry in tokens.items():
        user = str(entry[0])
        groups = [str(g) for g in (entry[1] if len(entry) > 1 else [])]
        uid = str(entry[2]) if len(entry) > 2 else user
        writer.writerow([token, user, uid, ",".join(groups)] if groups else [token, user, uid])
    return out.getvalue()


class _Process:
    """A child process with its output in a log file."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("wb")
        try:
            self.popen = subprocess.Popen(  # noqa: S603 (a fixed argv of binaries the caller named, no shell)
                list(argv), stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        except OSError as err:
            self._log.close()
            raise RealAPIServerError(f"cannot start {name}: {err}") from None

    def tail(self) -> str:
        self._log.flush()
        lines = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(lines[-OUTPUT_TAIL_LINES:])

    def check_alive(self) -> None:
        code = self.popen.poll()
        if code is not None:
            raise RealAPIServerError(
                f"{self.name} exited with code {code} before it was ready; last output:\n{self.tail()}"
            )

    def stop(self, timeout: float = 10) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout)
        self._log.close()


class RealAPIServer:
    """etcd + kube-apiserver on loopback, for the duration of a ``with`` block.

    ``assets``: folder of the binaries (default ``$KUBEBUILDER_ASSETS``).
    ``tokens``: extra bearer tokens, ``{token: (user, groups[, uid])}``.
    ``extra_args``: more kube-apiserver flags.  ``start_timeout``: seconds to
    wait for each process to become ready.
    """

    kind = "real"

    def __init__(
        self,
        assets: str | os.PathLike[str] | None = None,
        *,
        tokens: Mapping[str, Sequence[Any]] | None = None,
        extra_args: Sequence[str] = (),
        start_timeout: float = 60.0,
    ) -> None:
        self.assets = assets_dir() if assets is None else assets_dir({ASSETS_ENV: os.fspath(assets)})
        self.admin_token = secrets.token_urlsafe(24)
        self.tokens: dict[str, Sequence[Any]] = {self.admin_token: (ADMIN_USER, [SUPERUSER_GROUP])}
        self.tokens.update(tokens or {})
        self.extra_args = list(extra_args)
        self.start_timeout = start_timeout
        self.layout: Layout | None = None
        self.ca_pem = b""
        self._processes: list[_Process] = []
        self._clients: list[Any] = []

    # --- public surface shared with FakeAPIServer ---

    @property
    def url(self) -> str:
        """``https://127.0.0.1:<port>``."""
        return self._layout.url

    @property
    def kubeconfig_path(self) -> str:
        """A kubeconfig for the admin user (CA and token inline)."""
        return str(self._layout.kubeconfig)

    def api_client(self, token: str | None = None) -> Any:
        """A ``kubernetes.client.ApiClient`` for the admin (or for ``token``); closed on :meth:`stop`."""
        configuration = kubernetes.client.Configuration()
        configuration.host = self.url
        configuration.ssl_ca_cert = str(self._layout.ca_cert)
        configuration.api_key = {"authorization": token or self.admin_token}
        configuration.api_key_prefix = {"authorization": "Bearer"}
        client = kubernetes.client.ApiClient(configuration)
        self._clients.append(client)
        return client

    def install_crd(self, crd: Mapping[str, Any], timeout: float = 30.0) -> dict[str, Any]:
        """Creates a CustomResourceDefinition and waits until it is Established and served."""
        self.request_json("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", dict(crd))
        name = crd["metadata"]["name"]
        group = crd["spec"]["group"]
        plural = crd["spec"]["names"]["plural"]
        versions = [v["name"] for v in crd["spec"]["versions"] if v.get("served", True)]
        deadline = time.monotonic() + timeout
        while True:
            body = self.request_json("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
            conditions = (body.get("status") or {}).get("conditions") or []
            established = any(
                c.get("type") == "Established" and c.get("status") == "True" for c in conditions
            )
            if established and all(self._served(group, version, plural) for version in versions):
                return body
            if time.monotonic() > deadline:
                raise RealAPIServerError(
                    f"CustomResourceDefinition {name} was not established within {timeout:g}s"
                )
            time.sleep(0.1)

    def _served(self, group: str, version: str, plural: str) -> bool:
        try:
            discovery = self.request_json("GET", f"/apis/{group}/{version}")
        except urllib.error.HTTPError:
            return False
        return any(r.get("name") == plural for r in discovery.get("resources") or ())

    def http(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        token: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
    ) -> HTTPReply:
        """One raw HTTPS request like ``FakeAPIServer.http`` (admin token unless ``token``; ``""``: none)."""
        context = ssl.create_default_context(cadata=self.ca_pem.decode())
        port = self._layout.secure_port
        connection = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=context)
        chosen = self.admin_token if token is None else token
        return send_http(
            connection, method, path, body, content_type=content_type, token=chosen, headers=headers
        )

    def request_json(
        self, method: str, path: str, body: Any = None, token: str | None = None
    ) -> dict[str, Any]:
        """One raw HTTPS request to the server; raises ``urllib.error.HTTPError`` on non-2xx."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)  # noqa: S310 (URLs built from our own loopback addresses)
        request.add_header("Authorization", f"Bearer {token or self.admin_token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        context = ssl.create_default_context(cadata=self.ca_pem.decode())
        with urllib.request.urlopen(request, context=context, timeout=10) as response:  # noqa: S310 (URLs built from our own loopback addresses)
            return _json(response.read())

    # --- lifecycle ---

    @property
    def _layout(self) -> Layout:
        if self.layout is None:
            raise RuntimeError("the real API server is not started")
        return self.layout

    def prepare(self, root: Path | None = None) -> Layout:
        """Allocates ports and writes certificates, keys, the token file and the kubeconfig."""
        root = Path(tempfile.mkdtemp(prefix="kcp-tmc-envtest-")) if root is None else root
        layout = Layout(root, free_port(), free_port(), free_port())
        layout.cert_dir.mkdir(parents=True, exist_ok=True)
        ca = new_ca("kcp-tmc-envtest-ca")
        serving = issue_for_names(ca, common_name="kube-apiserver", dns=["localhost"], ips=["127.0.0.1"])
        self.ca_pem = ca.cert_pem
        layout.ca_cert.write_bytes(ca.cert_pem)
        layout.serving_cert.write_bytes(serving.cert_pem)
        _write_private(layout.serving_key, serving.key_pem)
        signer = new_key()
        _write_private(
            layout.sa_key,
            signer.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
        )
        layout.sa_pub.write_bytes(
            signer.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        _write_private(layout.token_file, token_file_text(self.tokens).encode())
        _write_private(layout.kubeconfig, yaml.safe_dump(self._kubeconfig(layout)).encode())
        self.layout = layout
        return layout

    def _kubeconfig(self, layout: Layout) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "envtest",
                    "cluster": {
                        "server": layout.url,
                        "certificate-authority-data": base64.b64encode(self.ca_pem).decode(),
                    },
                }
            ],
            "users": [{"name": ADMIN_USER, "user": {"token": self.admin_token}}],
            "contexts": [{"name": "envtest", "context": {"cluster": "envtest", "user": ADMIN_USER}}],
            "current-context": "envtest",
        }

    def start(self) -> RealAPIServer:
        """Starts etcd, then kube-apiserver, and waits until ``/readyz`` answers ok."""
        layout = self.prepare() if self.layout is None else self.layout
        try:
            etcd = self._spawn("etcd", [str(self.assets / "etcd"), *etcd_args(layout)])
            self._wait(etcd, lambda: _http_ok(f"{layout.etcd_url}/health"))
            _age_history(layout.etcd_url)
            self.start_apiserver()
        except BaseException:
            self.stop()
            raise
        return self

    def stop_apiserver(self) -> None:
        """Stops kube-apiserver alone (etcd keeps the data): an outage of the apiserver."""
        for process in [p for p in self._processes if p.name == "kube-apiserver"]:
            process.stop()
            self._processes.remove(process)

    def start_apiserver(self) -> None:
        """Starts kube-apiserver again on the same port, certificates and data; waits for ``/readyz``."""
        apiserver = self._spawn(
            "kube-apiserver",
            [str(self.assets / "kube-apiserver"), *apiserver_args(self._layout, self.extra_args)],
        )
        self._wait(apiserver, self._ready)

    def _spawn(self, name: str, argv: list[str]) -> _Process:
        process = _Process(name, argv, self._layout.root / f"{name}.log")
        self._processes.append(process)
        return process

    def _ready(self) -> bool:
        try:
            context = ssl.create_default_context(cadata=self.ca_pem.decode())
            request = urllib.request.Request(self.url + "/readyz")  # noqa: S310 (URLs built from our own loopback addresses)
            request.add_header("Authorization", f"Bearer {self.admin_token}")
            with urllib.request.urlopen(request, context=context, timeout=2) as response:  # noqa: S310 (URLs built from our own loopback addresses)
                return bool(response.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def _wait(self, process: _Process, ready: Any) -> None:
        deadline = time.monotonic() + self.start_timeout
        while True:
            process.check_alive()
            if ready():
                return
            if time.monotonic() > deadline:
                waited = f"{self.start_timeout:g}s"
                raise RealAPIServerError(
                    f"{process.name} was not ready within {waited}; last output:\n{process.tail()}"
                )
            time.sleep(0.1)

    def stop(self) -> None:
        """Stops both processes (apiserver first) and deletes the run folder."""
        for client in self._clients:
            with contextlib.suppress(Exception):
                client.close()
        self._clients.clear()
        for process in reversed(self._processes):
            process.stop()
        self._processes.clear()
        if self.layout is not None:
            shutil.rmtree(self.layout.root, ignore_errors=True)
            self.layout = None

    def __enter__(self) -> RealAPIServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _write_private(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    path.chmod(0o600)


def _json(data: bytes) -> dict[str, Any]:
    decoded = json.loads(data)
    return decoded if isinstance(decoded, dict) else {}


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (URLs built from our own loopback addresses)
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False


#: Revisions written to etcd before kube-apiserver starts (see :func:`_age_history`).
HISTORY_BEFORE_START = 20


def _age_history(etcd_url: str) -> None:
    """Writes a few revisions outside the apiserver's keys before it starts.

    Every watch cache then begins after resourceVersion ``HISTORY_BEFORE_START``,
    so a watch from a lower one is answered ``410 Gone`` (``too old resource
    version``) as on any cluster that has been running a while.  On a brand-new
    etcd the caches start at revision 1 and keep every event, and no watch
    could be too old.
    """
    key = base64.b64encode(b"/kcp-tmc-envtest/history").decode()
    for n in range(HISTORY_BEFORE_START):
        value = base64.b64encode(str(n).encode()).decode()
        request = urllib.request.Request(  # noqa: S310 (URLs built from our own loopback addresses)
            f"{etcd_url}/v3/kv/put",
            data=json.dumps({"key": key, "value": value}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 (URLs built from our own loopback addresses)
            response.read()
