"""A real Kubernetes control plane on loopback, for tests and benchmarks.

etcd, kube-apiserver and (on request) kube-scheduler, the pinned binaries of
the offline bundle (:mod:`buildtools.artifacts`), each in its own process group
with its log in the work directory. No kubelet, no controller-manager: Nodes
are API objects (:func:`add_node`), pods are bound, nothing runs.

Usage::

    with ControlPlane() as cp:                  # etcd + kube-apiserver, /readyz answered
        api = cp.api_client()                   # kubernetes.client.ApiClient, admin
        sched = cp.start_scheduler(config_yaml) # kube-scheduler --config, /readyz answered
        add_node(api, "n1", cpu="4", memory="8Gi", extended={"example.com/SLO": "1000"})
        ...
        sched.metrics()                         # the scheduler's /metrics text
        sched.stop()

What differs from a kubeadm control plane, and why:

* etcd speaks plain HTTP on loopback and runs with ``--unsafe-no-fsync``: a
  throwaway store, speed over durability.
* The ``ServiceAccount`` admission plugin is off: it refuses pods until the
  controller-manager has created the namespace's ``default`` ServiceAccount,
  and there is no controller-manager.
* Without the controller-manager nothing garbage-collects: delete pods with
  ``grace_period_seconds=0`` (no kubelet confirms a graceful deletion) and do
  not expect a namespace deletion to finish.

A component that does not come up raises :class:`ControlPlaneError` with the
command line and the tail of its log.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import os
import shutil
import signal
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
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from kubernetes import client
from kubernetes import config as kconfig

from buildtools.artifacts import build

__all__ = [
    "ControlPlane",
    "ControlPlaneError",
    "Process",
    "Scheduler",
    "add_node",
    "free_port",
]

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
LOG_TAIL_LINES = 30
SERVICE_CIDR = "10.96.0.0/12"


class ControlPlaneError(RuntimeError):
    """A component failed to start or answer; the message carries its log tail."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- certificates -------------------------------------------------------------------


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool = False,
    server: bool = False,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    issuer_name, issuer_key = issuer or (subject, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    else:
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else None
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([usage or ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.DNSName("kubernetes"),
                    x509.DNSName("kubernetes.default.svc"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("10.96.0.1")),
                ]
            ),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


@dataclass(frozen=True)
class _Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    sa_key: Path
    sa_pub: Path
    # user -> (cert PEM, key PEM)
    users: Mapping[str, tuple[bytes, bytes]]


def _write_pki(d: Path, users: Mapping[str, tuple[str, str | None]]) -> _Pki:
    d.mkdir(parents=True, exist_ok=True)
    ca_key = _key()
    ca_name = _name("depcon-test-ca")
    ca_cert = _cert(ca_name, ca_key, None, ca=True)
    pem = serialization.Encoding.PEM
    (d / "ca.crt").write_bytes(ca_cert.public_bytes(pem))
    srv_key = _key()
    srv = _cert(_name("kube-apiserver"), srv_key, (ca_name, ca_key), server=True)
    (d / "apiserver.crt").write_bytes(srv.public_bytes(pem))
    (d / "apiserver.key").write_bytes(_key_pem(srv_key))
    sa = _key()
    (d / "sa.key").write_bytes(_key_pem(sa))
    (d / "sa.pub").write_bytes(
        sa.public_key().public_bytes(pem, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    issued = {}
    for user, (cn, org) in users.items():
        k = _key()
        c = _cert(_name(cn, org), k, (ca_name, ca_key))
        issued[user] = (c.public_bytes(pem), _key_pem(k))
    for p in d.iterdir():
        if p.suffix == ".key":
            p.chmod(0o600)
    return _Pki(
        ca=d / "ca.crt",
        server_cert=d / "apiserver.crt",
        server_key=d / "apiserver.key",
        sa_key=d / "sa.key",
        sa_pub=d / "sa.pub",
        users=issued,
    )


def _kubeconfig(server: str, ca: bytes, cert: bytes, key: bytes, user: str) -> str:
    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "depcon-test",
                "cluster": {"server": server, "certificate-authority-data": b64(ca)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {"client-certificate-data": b64(cert), "client-key-data": b64(key)},
            }
        ],
        "contexts": [{"name": user, "context": {"cluster": "depcon-test", "user": user}}],
        "current-context": user,
    }
    return yaml.safe_dump(doc, sort_keys=False)


# --- processes ----------------------------------------------------------------------


class Process:
    """One component: a process group with its log file."""

    def __init__(
        self, name: str, argv: Sequence[str], log: Path, env: Mapping[str, str] | None = None
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log = log
        with log.open("ab") as out:
            self._proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, **(env or {})},
            )

    @property
    def pid(self) -> int:
        return self._proc.pid

    def running(self) -> bool:
        return self._proc.poll() is None

    def tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def error(self, what: str) -> ControlPlaneError:
        status = "running" if self.running() else f"exited with {self._proc.returncode}"
        return ControlPlaneError(
            f"{self.name} {what} ({status}).\ncommand: {' '.join(self.argv)}\n"
            f"log {self.log}, last lines:\n{self.tail()}"
        )

    def stop(self) -> None:
        """SIGTERM the process group, SIGKILL it if it lingers."""
        if self._proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, STOP_TIMEOUT_S), (signal.SIGKILL, STOP_TIMEOUT_S)):
            try:
                os.killpg(self._proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self._proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue


def _get(url: str, ctx: ssl.SSLContext | None, timeout: float = 5.0) -> tuple[int, str]:
    """Status and body of a GET; ``ctx`` None for plain http (etcd on loopback)."""
    try:
        with urllib.request.urlopen(url, context=ctx, timeout=timeout) as resp:
            return int(resp.status), resp.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode(errors="replace")


def _wait_ready(proc: Process, url: str, ctx: ssl.SSLContext | None, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if not proc.running():
            raise proc.error("exited before it was ready")
        try:
            code, body = _get(url, ctx, timeout=2.0)
            if code == 200:
                return
            last = f"HTTP {code}: {body.strip()[-500:]}"
        except (OSError, ssl.SSLError) as exc:
            last = str(exc)
        time.sleep(0.2)
    raise proc.error(f"did not answer {url} within {timeout:.0f} s (last: {last})")


# --- the scheduler ------------------------------------------------------------------


class Scheduler:
    """A running kube-scheduler; ``url`` is its secure port (self-signed)."""

    def __init__(self, process: Process, port: int, config: Path) -> None:
        self.process = process
        self.port = port
        self.config = config
        self.url = f"https://127.0.0.1:{port}"
        self._ctx = ssl.create_default_context()
        self._ctx.check_hostname = False
        self._ctx.verify_mode = ssl.CERT_NONE

    def metrics(self) -> str:
        """The Prometheus text of ``/metrics`` (allowed without a token, see start_scheduler)."""
        code, body = _get(f"{self.url}/metrics", self._ctx, timeout=30.0)
        if code != 200:
            raise self.process.error(f"answered /metrics with HTTP {code}: {body[:300]}")
        return body

    def running(self) -> bool:
        return self.process.running()

    def stop(self) -> None:
        self.process.stop()


# --- the control plane --------------------------------------------------------------


class ControlPlane:
    """etcd + kube-apiserver (+ kube-scheduler on request) on 127.0.0.1.

    ``bin_dir`` defaults to the offline bundle's ``bin/`` (built or reused by
    :func:`buildtools.artifacts.build`). ``workdir`` defaults to a fresh temporary
    directory, removed by :meth:`stop` (a given one is kept). ``env`` is added to
    every component's environment (a benchmark's Go runtime settings, for one).

    Attributes once started: ``server`` (the API URL), ``kubeconfig`` (admin,
    ``system:masters``), ``scheduler_kubeconfig`` (``system:kube-scheduler``,
    the identity kubeadm gives the scheduler), ``workdir`` (logs, PKI, data).
    """

    def __init__(
        self,
        *,
        bin_dir: Path | None = None,
        workdir: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self._bin_dir = bin_dir
        self._env = dict(env or {})
        self._own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="depcon-cp-"))
        self.kubeconfig = self.workdir / "admin.conf"
        self.scheduler_kubeconfig = self.workdir / "scheduler.conf"
        self.server = ""
        self._processes: list[Process] = []
        self._schedulers = 0

    # lifecycle

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def bin_dir(self) -> Path:
        if self._bin_dir is None:
            self._bin_dir = build().root / "bin"
        return self._bin_dir

    def start(self) -> ControlPlane:
        """Start etcd and kube-apiserver; returns once /readyz answers 200."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        wd = self.workdir
        pki = _write_pki(
            wd / "pki",
            {
                "admin": ("kubernetes-admin", "system:masters"),
                "scheduler": ("system:kube-scheduler", None),
            },
        )
        etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        etcd = self._spawn(
            "etcd",
            [
                str(self.bin_dir / "etcd"),
                "--name=depcon-test",
                f"--data-dir={wd / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-cluster=depcon-test=http://127.0.0.1:{peer_port}",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )
        _wait_ready(etcd, f"{etcd_url}/health", None, START_TIMEOUT_S)

        self.server = f"https://127.0.0.1:{api_port}"
        api = self._spawn(
            "kube-apiserver",
            [
                str(self.bin_dir / "kube-apiserver"),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={api_port}",
                f"--cert-dir={wd / 'pki'}",
                f"--tls-cert-file={pki.server_cert}",
                f"--tls-private-key-file={pki.server_key}",
                f"--client-ca-file={pki.ca}",
                f"--service-account-key-file={pki.sa_pub}",
                f"--service-account-signing-key-file={pki.sa_key}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--authorization-mode=Node,RBAC",
                "--disable-admission-plugins=ServiceAccount",
                "--profiling=false",
            ],
        )
        ca = pki.ca.read_bytes()
        for user, path in (("admin", self.kubeconfig), ("scheduler", self.scheduler_kubeconfig)):
            cert, key = pki.users[user]
            path.write_text(_kubeconfig(self.server, ca, cert, key, user))
            path.chmod(0o600)
        admin_cert, admin_key = pki.users["admin"]
        (wd / "pki" / "admin.crt").write_bytes(admin_cert)
        (wd / "pki" / "admin.key").write_bytes(admin_key)
        ctx = ssl.create_default_context(cafile=str(pki.ca))
        ctx.load_cert_chain(wd / "pki" / "admin.crt", wd / "pki" / "admin.key")
        self._ssl = ctx
        _wait_ready(api, f"{self.server}/readyz", ctx, START_TIMEOUT_S)

    def stop(self) -> None:
        """Stop every component (newest first) and remove a temporary work directory."""
        for proc in reversed(self._processes):
            proc.stop()
        self._processes.clear()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def pids(self) -> dict[str, int]:
        """The running components' PIDs by name (schedulers as kube-scheduler-N)."""
        return {p.name: p.pid for p in self._processes}

    def _spawn(self, name: str, argv: Sequence[str]) -> Process:
        proc = Process(name, argv, self.workdir / f"{name}.log", self._env)
        self._processes.append(proc)
        return proc

    # clients

    def api_client(self) -> Any:
        """A new ``kubernetes.client.ApiClient`` for the admin kubeconfig."""
        # The kubernetes package is untyped; this is its documented entry point.
        return kconfig.new_client_from_config(config_file=str(self.kubeconfig))  # type: ignore[no-untyped-call]

    # the scheduler

    def start_scheduler(
        self,
        config_yaml: str | None = None,
        *,
        extra_args: Sequence[str] = (),
        timeout: float = START_TIMEOUT_S,
    ) -> Scheduler:
        """Start kube-scheduler; returns once its /readyz answers 200.

        ``config_yaml`` is a KubeSchedulerConfiguration (its
        ``clientConnection.kubeconfig`` should be :attr:`scheduler_kubeconfig`);
        ``None`` runs the stock defaults, as kubeadm's static pod without a
        config file would. Like kubeadm, the scheduler authenticates and
        authorizes its own port against the API server; ``/metrics`` is added
        to the always-allowed paths so :meth:`Scheduler.metrics` needs no token.
        """
        self._schedulers += 1
        name = f"kube-scheduler-{self._schedulers}"
        port = free_port()
        config = self.workdir / f"{name}.yaml"
        argv = [
            str(self.bin_dir / "kube-scheduler"),
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            f"--authentication-kubeconfig={self.scheduler_kubeconfig}",
            f"--authorization-kubeconfig={self.scheduler_kubeconfig}",
            "--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics",
        ]
        if config_yaml is None:
            argv += [f"--kubeconfig={self.scheduler_kubeconfig}", "--leader-elect=false"]
        else:
            config.write_text(config_yaml)
            argv.append(f"--config={config}")
        argv += list(extra_args)
        proc = self._spawn(name, argv)
        sched = Scheduler(proc, port, config)
        _wait_ready(proc, f"{sched.url}/readyz", sched._ctx, timeout)
        return sched


# --- nodes --------------------------------------------------------------------------


def add_node(
    api: Any,
    name: str,
    *,
    cpu: str,
    memory: str,
    pods: int = 110,
    extended: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
) -> None:
    """Create a schedulable Node object: capacity in status, Ready, untainted.

    The API server's TaintNodesByCondition admission adds the
    ``node.kubernetes.io/not-ready`` taint to every new Node (the node
    lifecycle controller would lift it once the kubelet reports Ready; there
    is neither here), so the spec's taints are cleared after the status,
    written through the ``status`` subresource, says Ready.
    """
    core = client.CoreV1Api(api)
    capacity = {"cpu": cpu, "memory": memory, "pods": str(pods), **(extended or {})}
    now = datetime.datetime.now(datetime.UTC)
    core.create_node(
        client.V1Node(
            metadata=client.V1ObjectMeta(
                name=name,
                labels={"kubernetes.io/hostname": name, **(labels or {})},
            )
        )
    )
    core.patch_node_status(
        name,
        {
            "status": {
                "capacity": capacity,
                "allocatable": capacity,
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "KubeletReady",
                        "message": "API object only (depcon test control plane)",
                        "lastHeartbeatTime": now.isoformat(),
                        "lastTransitionTime": now.isoformat(),
                    }
                ],
            }
        },
    )
    core.patch_node(name, {"spec": {"taints": None}})
