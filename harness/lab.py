"""`make lab`: the local lab through the same Pulumi program a user runs.

Stages, in order; each really does its step and raises on failure, and a
stage after a failed one is "skipped". The table at the end is the job's
result (exit 0 only when every stage passed):

    config     versions.yml, the lab stack and its inventory
    engine     the Pulumi engine, built from Go modules (cached)
    artifacts  the offline Kubernetes bundle with the patched kubelet (cached)
    vms        the lab's VMs, booted or reused (harness/vm/image.py)
    pulumi-up  `pulumi up` of the lab stack: the cluster, DepCon, the cluster's
               API, the verification; ends with the stack's outputs

``python -m harness.lab destroy`` is ``make lab-destroy``: ``pulumi destroy``
(DepCon rolled back, then the cluster reset) and then the VMs go.

``python -m harness.lab smoke`` (``make lab-smoke``, CI's cluster smoke): the
stages above, then rollback.yml (the playbook DepCon's destroy runs),
playbooks/rolled_back.yml on the nodes, `pulumi destroy` of the stack
(DepCon's delete again, then reset.yml), the VMs gone. It writes reports/lab-smoke.json:
each phase with its time and result, the commit, the stack outputs, and after a
failure what each VM's Kubernetes was doing (harness/labhealth.py).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from depcon.config import ConfigError, ProjectConfig, load_project
from depcon.paths import repo_root
from depcon.provenance import stamp

# The label playbooks/templates/verify-probe.yaml.j2 gives the verification's probe pods.
PROBE_SELECTOR = "app.kubernetes.io/component=verify-probe"


class StageError(RuntimeError):
    pass


@dataclass(frozen=True)
class Stage:
    name: str
    what: str
    run: Callable[[LabContext], str]


@dataclass
class LabContext:
    stack: str
    env: dict[str, str]
    _config: ProjectConfig | None = field(default=None, init=False, repr=False)

    def config(self) -> ProjectConfig:
        """The stack's configuration, loaded once for all stages."""
        if self._config is None:
            try:
                self._config = load_project(self.stack)
            except ConfigError as exc:
                raise StageError(str(exc)) from exc
        return self._config


def log(message: str) -> None:
    print(f"[lab] {message}", flush=True)


def _sh(ctx: LabContext, *argv: str, echo: bool = False) -> str:
    """Run a command; with ``echo`` its output is shown line by line as it comes."""
    log("$ " + shlex.join(argv))
    started = time.monotonic()
    lines: list[str] = []
    with subprocess.Popen(
        argv,
        cwd=repo_root(),
        env=ctx.env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if echo and line.strip():
                print(f"[lab] +{time.monotonic() - started:5.0f}s {line.rstrip()}", flush=True)
    if proc.returncode != 0:
        tail = "".join(lines[-25:])
        raise StageError(
            f"{argv[0]} {argv[1] if len(argv) > 1 else ''} exited {proc.returncode}:\n{tail}"
        )
    return "".join(lines)


def stage_config(ctx: LabContext) -> str:
    cfg = ctx.config()
    return (
        f"kubernetes {cfg.versions.kubernetes.version}, {len(cfg.nodes)} nodes, "
        f"SLO {cfg.slo_resource_name}, installs {cfg.stack.install}"
    )


def stage_engine(ctx: LabContext) -> str:
    """Build (or reuse) the Pulumi engine; put it on this job's PATH."""
    py = sys.executable
    _sh(ctx, py, "-m", "buildtools.pulumi_engine", "build")
    exports = _sh(ctx, py, "-m", "buildtools.pulumi_engine", "env")
    for line in exports.splitlines():
        if line.startswith("export "):
            key, _, value = line[len("export ") :].partition("=")
            ctx.env[key] = shlex.split(value)[0] if value else ""
    return _sh(ctx, "pulumi", "version").strip()


def stage_artifacts(ctx: LabContext) -> str:
    """Build (or reuse) the Kubernetes bundle with the patched kubelet (buildtools/artifacts/)."""
    from buildtools.artifacts import ArtifactError  # noqa: PLC0415 -- only when run
    from buildtools.artifacts import build as build_artifacts  # noqa: PLC0415

    try:
        bundle = build_artifacts()
    except ArtifactError as exc:
        raise StageError(str(exc)) from exc
    # The program and inventory/lab read it from here instead of planning it again.
    ctx.env["DEPCON_BUNDLE_DIR"] = str(bundle.root)
    size = sum(p.stat().st_size for p in bundle.root.rglob("*") if p.is_file())
    return f"{bundle.root} ({size / 2**20:.0f} MiB, kubelet {bundle.kubelet_version})"


def stage_vms(ctx: LabContext) -> str:
    """The lab's VMs (inventory hosts with depcon_lab_vm_ip), booted or reused.

    They keep their disks when stopped (make lab-down), so a re-run resumes
    the cluster where it was.
    """
    from harness.vm import image as vm_image  # noqa: PLC0415 -- only when run

    cfg = ctx.config()
    vms = [n for n in cfg.nodes if n.lab_vm_ip]
    if not vms:
        raise StageError(
            f"{cfg.inventory_path}: no host has depcon_lab_vm_ip; make lab boots the local "
            "lab's VMs. For your own servers run `pulumi up` on a stack of your inventory "
            "(docs/architecture.md)"
        )
    try:
        img = vm_image.build_image()
        ctx.env["DEPCON_LAB_SSH_KEY"] = str(img.ssh_key)
        for node in vms:
            assert node.lab_vm_ip is not None
            forwards = ((node.lab_api_port, 6443),) if node.lab_api_port else ()
            inst, boot = vm_image.ensure_up(
                node.name,
                ssh_port=node.ssh_port,
                cluster_ip=node.lab_vm_ip,
                image=img,
                mem_mb=cfg.stack.lab_vm_memory_mib,
                forwards=forwards,
            )
            how = "running, reused" if boot is None else f"booted in {boot:.0f} s"
            ssh = f"ssh -p {node.ssh_port} -i {inst.identity_file} root@127.0.0.1"
            log(f"VM {node.name}: {how} ({ssh})")
    except vm_image.ImageError as exc:
        raise StageError(str(exc)) from exc
    return ", ".join(n.name for n in vms)


def _pulumi_env(ctx: LabContext) -> None:
    state = repo_root() / ".lab" / "pulumi-state"
    state.mkdir(parents=True, exist_ok=True)
    ctx.env.setdefault("PULUMI_BACKEND_URL", state.as_uri())
    # The lab stack's only secret is its own kubeconfig; an empty passphrase keeps it
    # non-interactive, and the state stays on this machine.
    ctx.env.setdefault("PULUMI_CONFIG_PASSPHRASE", "")
    _sh(ctx, "pulumi", "stack", "select", "--create", ctx.stack, "--non-interactive")


def stage_pulumi_up(ctx: LabContext) -> str:
    """`pulumi up` of the stack (local file backend under .lab/), each Ansible task shown."""
    _pulumi_env(ctx)
    _sh(
        ctx,
        "pulumi",
        "up",
        "--yes",
        "--skip-preview",
        "--non-interactive",
        "--stack",
        ctx.stack,
        echo=True,
    )
    out = json.loads(_sh(ctx, "pulumi", "stack", "output", "--json", "--stack", ctx.stack))
    for key, value in out.items():
        log(f"output {key}: {json.dumps(value)}")
    return (
        f"verification {out.get('verification', 'not run')}; report {out.get('verificationReport')}"
    )


def stage_pulumi_up_again(ctx: LabContext) -> str:
    """A second `pulumi up` with nothing changed: it must plan no change and touch no host."""
    started = time.monotonic()
    _sh(
        ctx,
        "pulumi",
        "up",
        "--yes",
        "--expect-no-changes",
        "--non-interactive",
        "--stack",
        ctx.stack,
        echo=True,
    )
    return f"no changes, {time.monotonic() - started:.0f} s"


def stages() -> list[Stage]:
    return [
        Stage("config", "validate versions, stack and inventory", stage_config),
        Stage("engine", "locally built Pulumi CLI + plugins", stage_engine),
        Stage("artifacts", "Kubernetes bundle + patched kubelet", stage_artifacts),
        Stage("vms", "the lab's VMs, booted or reused", stage_vms),
        Stage("pulumi-up", "pulumi up: cluster, DepCon, API, verification", stage_pulumi_up),
    ]


def _destroy(ctx: LabContext) -> None:
    # reset.yml takes the cluster's objects with it: an API server that no longer answers
    # (a rebooted lab's often does not, under emulation) must not keep the hosts from coming back.
    ctx.env.setdefault("PULUMI_K8S_DELETE_UNREACHABLE", "true")
    _sh(ctx, "pulumi", "destroy", "--yes", "--non-interactive", "--stack", ctx.stack, echo=True)


def _run_playbook(
    ctx: LabContext, playbook: str, extra: dict[str, str] | None = None
) -> dict[str, Any]:
    from depcon.ansible_run import PlaybookError, run_playbook, strategy_env  # noqa: PLC0415

    started = time.monotonic()

    def show(line: str) -> None:
        print(f"[lab] +{time.monotonic() - started:5.0f}s {line}", flush=True)

    cfg = ctx.config()
    try:
        return run_playbook(
            playbook,
            cfg.inventory,
            cfg.ansible_vars() | (extra or {}),
            show,
            env=ctx.env | strategy_env(cfg.stack.ansible_strategy),
        )
    except PlaybookError as exc:
        raise StageError(str(exc)) from exc


def stage_rollback(ctx: LabContext) -> str:
    """rollback.yml, the playbook DepCon's resource runs on destroy, on its own.

    A targeted `pulumi destroy` of DepCon and what depends on it fails in the
    engine's delete step ("grpc: the client connection is closing"), so the
    smoke runs the same playbook directly, checks it, then destroys the stack.
    """
    _delete_probe_pods(ctx)
    stats = _run_playbook(ctx, "playbooks/rollback.yml")
    return f"DepCon rolled back ({stats['changed']} changes)"


def _delete_probe_pods(ctx: LabContext) -> None:
    """The verification's pods go first, as `pulumi destroy` deletes them before DepCon's:
    they have no controller, so the rollback's drain would refuse them."""
    kubectl = Path(ctx.env["DEPCON_BUNDLE_DIR"]) / "bin" / "kubectl"
    kubeconfig = _sh(
        ctx, "pulumi", "stack", "output", "--show-secrets", "kubeconfig", "--stack", ctx.stack
    )
    with tempfile.NamedTemporaryFile("w", prefix="depcon-lab-", suffix=".kubeconfig") as f:
        f.write(kubeconfig)
        f.flush()
        _sh(
            ctx,
            str(kubectl),
            "--kubeconfig",
            f.name,
            "delete",
            "pod",
            "--all-namespaces",
            f"--selector={PROBE_SELECTOR}",
            "--wait",
            "--timeout=300s",
            echo=True,
        )


def stage_rolled_back(ctx: LabContext) -> str:
    """playbooks/rolled_back.yml: every node as before DepCon, the stock scheduler."""
    stats = _run_playbook(ctx, "playbooks/rolled_back.yml")
    return f"{len(stats['hosts'])} hosts as before DepCon"


def stage_reset(ctx: LabContext) -> str:
    """`pulumi destroy` (DepCon's delete, then reset.yml), then the VMs go."""
    from harness.vm import image as vm_image  # noqa: PLC0415 -- only when run

    _pulumi_env(ctx)
    _destroy(ctx)
    names = [n.name for n in ctx.config().nodes if n.lab_vm_ip]
    for name in names:
        vm_image.down(name)
    return f"cluster reset; VMs {', '.join(names)} deleted"


def smoke_stages() -> list[Stage]:
    return [
        *stages(),
        Stage("pulumi-up-2", "pulumi up again, nothing changed: no change", stage_pulumi_up_again),
        Stage("rollback", "rollback.yml, as DepCon's destroy runs it", stage_rollback),
        Stage(
            "rolled-back", "rolled_back.yml: stock kubelet, no vif, no capacity", stage_rolled_back
        ),
        Stage("reset", "pulumi destroy: DepCon's delete, reset.yml; VMs deleted", stage_reset),
    ]


def warm() -> list[str]:
    """What a smoke would have to build first (empty: the caches hold everything)."""
    from buildtools.artifacts import bundle_path  # noqa: PLC0415
    from buildtools.pulumi_engine import find_engine  # noqa: PLC0415
    from harness.vm.image import default_recipe, images_dir  # noqa: PLC0415

    cold = []
    if not find_engine().root.is_dir():
        cold.append("the Pulumi engine")
    if not (bundle_path() / "SHA256SUMS").is_file():
        cold.append("the Kubernetes bundle")
    if not (images_dir() / default_recipe().key() / "disk.raw").is_file():
        cold.append("the VM image")
    return cold


def destroy(ctx: LabContext) -> int:
    """`pulumi destroy` of the stack (rollback, then reset), then the VMs go."""
    from harness.vm import image as vm_image  # noqa: PLC0415 -- only when run

    try:
        stage_config(ctx)
        stage_engine(ctx)
        vms = [n.name for n in ctx.config().nodes if n.lab_vm_ip]
        disks = [n for n in vms if (vm_image.instances_dir() / n / "overlay.qcow2").exists()]
        if disks:
            stage_vms(ctx)  # the way back runs on the hosts: they must be up
            _pulumi_env(ctx)
            _destroy(ctx)
        else:
            log("no lab VM has a disk: nothing on hosts to take back; dropping the stack's state")
            _pulumi_env(ctx)
            _sh(ctx, "pulumi", "stack", "rm", "--yes", "--force", "--preserve-config", ctx.stack)
        for name in vms:
            log(f"VM {name}: {'stopped' if vm_image.down(name) else 'not running'}, disk deleted")
    except StageError as exc:
        print(f"[lab] destroy failed:\n{exc}", file=sys.stderr)
        return 1
    return 0


def proof(ctx: LabContext) -> int:
    """verify.yml on the running lab with the SLO proof on, whatever the inventory says.

    Writes reports/verify-<stack>.json and, passed or not, its -proof.json and -proof.png.
    """
    report = repo_root() / "reports" / f"verify-{ctx.stack}.json"
    try:
        stage_config(ctx)
        stage_vms(ctx)
        stats = _run_playbook(
            ctx,
            "playbooks/verify.yml",
            {"depcon_verify_netperf": "true", "verify_report": str(report)},
        )
    except StageError as exc:
        print(f"[lab] proof failed:\n{exc}", file=sys.stderr)
        return 1
    finally:
        log(f"proof report: {report.with_name(report.stem + '-proof.json')}")
    log(f"proof passed on {', '.join(stats['hosts'])}")
    return 0


def _nodes_at_failure(ctx: LabContext) -> dict[str, Any] | None:
    """The VMs' load, API server and container restarts, printed; None before the VMs booted."""
    from harness import labhealth  # noqa: PLC0415 -- only after a failure

    key = ctx.env.get("DEPCON_LAB_SSH_KEY")
    if not key:
        return None
    cfg = ctx.config()
    nodes = [labhealth.Node(n.name, n.ssh_port) for n in cfg.nodes if n.lab_vm_ip]
    facts = labhealth.collect(nodes, key)
    for name, f in facts.items():
        if "error" in f:
            log(f"{name}: {f['error']}")
            continue
        readyz = f.get("readyz", "not a control plane")
        log(f"{name}: load {f.get('load_average')}, API /readyz: {readyz}")
        for c in f["containers"]:
            if c["restarts"] or c["last_fatal"]:
                fatal = c["last_fatal"] or "no fatal line"
                log(f"  {c['pod']}/{c['container']}: {c['restarts']} restarts; {fatal}")
    return facts


def _smoke_report(
    timings: list[dict[str, object]], failed: bool, nodes: dict[str, Any] | None
) -> None:
    report = {
        "verdict": "failed" if failed else "passed",
        **stamp(),
        "stages": timings,
        "seconds": sum(int(str(t["seconds"])) for t in timings),
    }
    if nodes is not None:
        report["nodes_at_failure"] = nodes
    path = repo_root() / "reports" / "lab-smoke.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    log(f"smoke report: {path}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="depcon-lab", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "action", nargs="?", choices=("up", "destroy", "smoke", "warm", "proof"), default="up"
    )
    parser.add_argument("--stack", default="lab")
    args = parser.parse_args(argv)
    ctx = LabContext(stack=args.stack, env=dict(os.environ))
    if args.action == "destroy":
        return destroy(ctx)
    if args.action == "proof":
        return proof(ctx)
    if args.action == "warm":
        cold = warm()
        print("warm" if not cold else "cold: " + ", ".join(cold) + " not built")
        return 0 if not cold else 1
    rows: list[tuple[str, str, str]] = []
    timings: list[dict[str, object]] = []
    failed = False
    for stage in smoke_stages() if args.action == "smoke" else stages():
        if failed:
            rows.append((stage.name, "skipped", "an earlier stage failed"))
            continue
        log(f"stage {stage.name}: {stage.what}")
        start = time.monotonic()
        try:
            detail = stage.run(ctx)
        except StageError as exc:
            failed = True
            rows.append((stage.name, "FAILED", str(exc).splitlines()[0]))
            timings.append(
                {
                    "stage": stage.name,
                    "result": "failed",
                    "detail": str(exc)[-2000:],
                    "seconds": round(time.monotonic() - start),
                }
            )
            print(f"[lab] stage {stage.name} failed:\n{exc}", file=sys.stderr)
            continue
        rows.append((stage.name, "passed", f"{detail} ({time.monotonic() - start:.1f} s)"))
        timings.append(
            {
                "stage": stage.name,
                "result": "passed",
                "detail": detail,
                "seconds": round(time.monotonic() - start),
            }
        )
    nodes = _nodes_at_failure(ctx) if failed else None
    if args.action == "smoke":
        _smoke_report(timings, failed, nodes)
    print()
    print(f"{'stage':<11} {'result':<8} detail")
    for name, result, detail in rows:
        print(f"{name:<11} {result:<8} {detail}")
    passed = sum(r[1] == "passed" for r in rows)
    print()
    if failed:
        print(f"lab: FAILED ({passed} passed)")
        return 1
    print(f"lab: all {passed} stages passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
