"""RealAPIServer without the real binaries: skip reasons, command lines, files, and start-up failures."""

from __future__ import annotations

import base64
import json
import os
import sys
from pathlib import Path

import pytest
import yaml
from cryptography import x509

from kcp_tmc.testing.envtest import (
    SKIP_REASON,
    EnvtestUnavailable,
    Layout,
    RealAPIServer,
    RealAPIServerError,
    apiserver_args,
    assets_dir,
    etcd_args,
    token_file_text,
)


def script(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    path.write_text(f"#!{sys.executable}\n{body}")
    path.chmod(0o755)
    return path


@pytest.fixture
def assets(tmp_path: Path) -> Path:
    folder = tmp_path / "bin"
    folder.mkdir()
    return folder


def test_unset_assets_is_a_skip_reason() -> None:
    with pytest.raises(EnvtestUnavailable) as caught:
        assets_dir({})
    assert (
        str(caught.value)
        == SKIP_REASON
        == ("KUBEBUILDER_ASSETS is not set: the real kube-apiserver backend is skipped")
    )


def test_missing_binaries_are_named(assets: Path) -> None:
    script(assets, "etcd", "")
    with pytest.raises(EnvtestUnavailable) as caught:
        assets_dir({"KUBEBUILDER_ASSETS": str(assets)})
    assert str(caught.value) == (
        f"KUBEBUILDER_ASSETS={assets} has no executable kube-apiserver: "
        "the real kube-apiserver backend is skipped (run `setup-envtest use -p path`)"
    )
    (assets / "etcd").chmod(0o644)
    with pytest.raises(EnvtestUnavailable, match="has no executable etcd or kube-apiserver"):
        RealAPIServer(assets)


def test_environment_variable_is_the_default(assets: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script(assets, "etcd", "")
    script(assets, "kube-apiserver", "")
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(assets))
    assert RealAPIServer().assets == assets
    monkeypatch.delenv("KUBEBUILDER_ASSETS")
    with pytest.raises(EnvtestUnavailable, match="KUBEBUILDER_ASSETS is not set"):
        RealAPIServer()


def test_command_lines() -> None:
    layout = Layout(Path("/run"), 2379, 2380, 6443)
    assert etcd_args(layout) == [
        "--data-dir=/run/etcd-data",
        "--listen-client-urls=http://127.0.0.1:2379",
        "--advertise-client-urls=http://127.0.0.1:2379",
        "--listen-peer-urls=http://127.0.0.1:2380",
        "--initial-advertise-peer-urls=http://127.0.0.1:2380",
        "--initial-cluster=default=http://127.0.0.1:2380",
        "--unsafe-no-fsync=true",
        "--log-level=warn",
    ]
    assert apiserver_args(layout, ["--v=4"]) == [
        "--etcd-servers=http://127.0.0.1:2379",
        "--cert-dir=/run/certs",
        "--tls-cert-file=/run/certs/apiserver.crt",
        "--tls-private-key-file=/run/certs/apiserver.key",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        "--secure-port=6443",
        "--service-cluster-ip-range=10.0.0.0/24",
        "--allow-privileged=true",
        "--disable-admission-plugins=ServiceAccount",
        "--authorization-mode=RBAC",
        "--token-auth-file=/run/tokens.csv",
        "--service-account-issuer=https://127.0.0.1:6443/",
        "--service-account-key-file=/run/certs/sa-signer.pub",
        "--service-account-signing-key-file=/run/certs/sa-signer.key",
        "--v=4",
    ]


def test_token_file_format() -> None:
    text = token_file_text(
        {"t1": ("admin", ["system:masters"]), "t2": ("bob", ["a", "b"], "u-2"), "t3": ("eve",)}
    )
    assert text == 't1,admin,admin,system:masters\nt2,bob,u-2,"a,b"\nt3,eve,eve\n'


def test_prepare_writes_certificates_tokens_and_kubeconfig(assets: Path, tmp_path: Path) -> None:
    script(assets, "etcd", "")
    script(assets, "kube-apiserver", "")
    api = RealAPIServer(assets, tokens={"dev": ("alice", ["dev"])})
    layout = api.prepare(tmp_path / "run")
    assert len({layout.etcd_client_port, layout.etcd_peer_port, layout.secure_port}) == 3
    assert api.url == f"https://127.0.0.1:{layout.secure_port}"
    cert = x509.load_pem_x509_certificate(layout.serving_cert.read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert oct(layout.serving_key.stat().st_mode & 0o777) == "0o600"
    assert b"PRIVATE KEY" in layout.sa_key.read_bytes()
    assert b"PUBLIC KEY" in layout.sa_pub.read_bytes()
    tokens = layout.token_file.read_text().splitlines()
    assert tokens == [f"{api.admin_token},admin,admin,system:masters", "dev,alice,alice,dev"]
    config = yaml.safe_load(Path(api.kubeconfig_path).read_text())
    assert config["clusters"][0]["cluster"]["server"] == api.url
    assert base64.b64decode(config["clusters"][0]["cluster"]["certificate-authority-data"]) == api.ca_pem
    assert config["users"][0]["user"]["token"] == api.admin_token
    client = api.api_client()
    assert client.configuration.host == api.url
    assert client.configuration.api_key["authorization"] == api.admin_token
    api.stop()
    assert not (tmp_path / "run").exists()
    with pytest.raises(RuntimeError, match="the real API server is not started"):
        _ = api.url


def test_etcd_exiting_early_is_reported_with_its_output(assets: Path) -> None:
    script(assets, "etcd", "print('flag provided but not defined: -unsafe-no-fsync')\nraise SystemExit(3)\n")
    script(assets, "kube-apiserver", "")
    api = RealAPIServer(assets)
    with pytest.raises(RealAPIServerError) as caught:
        api.start()
    assert str(caught.value) == (
        "etcd exited with code 3 before it was ready; last output:\n"
        "flag provided but not defined: -unsafe-no-fsync"
    )
    assert api.layout is None


FAKE_ETCD = """
import http.server, sys
url = next(a for a in sys.argv if a.startswith("--listen-client-urls=")).split("=", 1)[1]
port = int(url.rsplit(":", 1)[1])

class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()
        self.wfile.write(b'{"health":"true"}')
    def do_POST(self):
        # RealAPIServer ages etcd's history with a few puts before kube-apiserver starts.
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200 if self.path == "/v3/kv/put" else 404)
        self.end_headers()
        self.wfile.write(b'{}')
    def log_message(self, *args):
        pass

print("fake etcd serving", flush=True)
http.server.HTTPServer(("127.0.0.1", port), Health).serve_forever()
"""


def test_apiserver_exiting_early_stops_etcd(assets: Path, tmp_path: Path) -> None:
    pid_file = tmp_path / "etcd.pid"
    script(assets, "etcd", f"import os\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\n{FAKE_ETCD}")
    script(
        assets,
        "kube-apiserver",
        "import sys\nprint('E: unknown flag', sys.argv[1][:14])\nraise SystemExit(1)\n",
    )
    with pytest.raises(RealAPIServerError) as caught, RealAPIServer(assets):
        pass  # pragma: no cover
    assert str(caught.value) == (
        "kube-apiserver exited with code 1 before it was ready; last output:\nE: unknown flag --etcd-servers"
    )
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_start_timeout(assets: Path) -> None:
    script(assets, "etcd", "import time\nprint('waiting for peers', flush=True)\ntime.sleep(30)\n")
    script(assets, "kube-apiserver", "")
    with pytest.raises(RealAPIServerError) as caught:
        RealAPIServer(assets, start_timeout=0.3).start()
    assert str(caught.value) == "etcd was not ready within 0.3s; last output:\nwaiting for peers"


FAKE_APISERVER = """
import http.server, json, ssl, sys
args = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
crds = {}

class Api(http.server.BaseHTTPRequestHandler):
    def reply(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.headers.get("Authorization", "").count(" ") != 1:
            return self.reply(401, {"kind": "Status", "code": 401})
        if self.path == "/readyz":
            return self.reply(200, {})
        prefix = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/"
        if self.path.startswith(prefix):
            crd = crds[self.path[len(prefix):]]
            crd["status"] = {"conditions": [{"type": "Established", "status": "True"}]}
            return self.reply(200, crd)
        for crd in crds.values():
            if self.path == "/apis/%s/%s" % (crd["spec"]["group"], crd["spec"]["versions"][0]["name"]):
                return self.reply(200, {"resources": [{"name": crd["spec"]["names"]["plural"]}]})
        self.reply(404, {"kind": "Status", "code": 404})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        crds[body["metadata"]["name"]] = body
        self.reply(201, body)

    def log_message(self, *a):
        pass

server = http.server.HTTPServer(("127.0.0.1", int(args["secure-port"])), Api)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(args["tls-cert-file"], args["tls-private-key-file"])
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
"""


def test_start_install_crd_and_stop_with_stand_in_binaries(assets: Path, tmp_path: Path) -> None:
    script(assets, "etcd", FAKE_ETCD)
    script(assets, "kube-apiserver", FAKE_APISERVER)
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "things.example.com"},
        "spec": {"group": "example.com", "names": {"plural": "things"}, "versions": [{"name": "v1"}]},
    }
    with RealAPIServer(assets) as api:
        assert api.kind == "real"
        root = api.layout.root if api.layout else None
        installed = api.install_crd(crd)
        assert installed["status"]["conditions"][0]["type"] == "Established"
        assert api.request_json("GET", "/readyz") == {}
        reply = api.http("GET", "/readyz")
        assert (reply.status, reply.json(), reply.header("content-type")) == (200, {}, "application/json")
        assert api.http("GET", "/readyz", token="").status == 401
        posted = api.http("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json.dumps(crd))
        assert posted.status == 201
        assert api.api_client().configuration.host == api.url
    assert root is not None and not root.exists()


def test_crd_that_never_becomes_established(assets: Path) -> None:
    script(assets, "etcd", FAKE_ETCD)
    script(assets, "kube-apiserver", FAKE_APISERVER)
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "ghosts.example.com"},
        # The stand-in serves only the first version's discovery, so v2 never shows up.
        "spec": {
            "group": "example.com",
            "names": {"plural": "ghosts"},
            "versions": [{"name": "v1"}, {"name": "v2"}],
        },
    }
    with RealAPIServer(assets) as api, pytest.raises(RealAPIServerError) as caught:
        api.install_crd(crd, timeout=0.3)
    assert str(caught.value) == "CustomResourceDefinition ghosts.example.com was not established within 0.3s"
