"""`make lab`: bring up the local lab and verify it, stage by stage.

Each stage is a function that really does its step and raises on failure.
Stages whose code has not landed yet are listed as "not built yet" with the
issue that builds them; they are never reported as passed. A stage after a
failed one is "skipped". The table at the end is the job's result:

    exit 0  every stage that exists ran and passed (the lab may be incomplete;
            the last line says so)
    exit 1  a stage failed
    exit 3  --strict and some stage is not built yet
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from infra.config import ConfigError, ProjectConfig, load_project
from infra.paths import cache_dir, repo_root


class StageError(RuntimeError):
    pass


@dataclass(frozen=True)
class Stage:
    name: str
    what: str
    run: Callable[[LabContext], str] | None  # None: not built yet
    issue: int


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


def _sh(ctx: LabContext, *argv: str, cwd: Path | None = None) -> str:
    log("$ " + shlex.join(argv))
    proc = subprocess.run(
        argv,
        cwd=cwd or repo_root(),
        env=ctx.env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        check=False,
    )
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.splitlines()[-25:])
        raise StageError(f"{argv[0]} exited {proc.returncode}:\n{tail}")
    return proc.stdout


def stage_config(ctx: LabContext) -> str:
    cfg = ctx.config()
    return (
        f"kubernetes {cfg.versions.kubernetes.version}, "
        f"{len(cfg.nodes)} nodes, SLO {cfg.slo_resource_name}"
    )


def stage_engine(ctx: LabContext) -> str:
    """Build (or reuse) the Pulumi engine; put it on this job's PATH."""
    py = sys.executable
    _sh(ctx, py, "-m", "infra.pulumi_engine", "build")
    exports = _sh(ctx, py, "-m", "infra.pulumi_engine", "env")
    for line in exports.splitlines():
        if line.startswith("export "):
            key, _, value = line[len("export ") :].partition("=")
            ctx.env[key] = shlex.split(value)[0] if value else ""
    return _sh(ctx, "pulumi", "version").strip()


def stage_pulumi_up(ctx: LabContext) -> str:
    """`pulumi up` of the stack with a local file backend (state under .lab/)."""
    state = repo_root() / ".lab" / "pulumi-state"
    state.mkdir(parents=True, exist_ok=True)
    ctx.env.setdefault("PULUMI_BACKEND_URL", state.as_uri())
    # The lab stack holds no secrets; an empty passphrase keeps it non-interactive.
    ctx.env.setdefault("PULUMI_CONFIG_PASSPHRASE", "")
    _sh(ctx, "pulumi", "stack", "select", "--create", ctx.stack, "--non-interactive")
    _sh(
        ctx,
        "pulumi",
        "up",
        "--yes",
        "--skip-preview",
        "--non-interactive",
        "--stack",
        ctx.stack,
        "--suppress-progress",
    )
    outputs = _sh(ctx, "pulumi", "stack", "output", "hostLayer", "--json", "--stack", ctx.stack)
    return "host layer: " + " ".join(outputs.split())


def stage_vif_demo(ctx: LabContext) -> str:
    """Boot the primary pinned kernel, load vif, and meet a goal (infra/vm/demo.sh)."""
    from infra.vm import DEMO, VM_LIB, VmError, run_script  # noqa: PLC0415 -- only when run

    log("booting the pinned kernel under qemu (software emulation, ~1 min)")
    try:
        result = run_script(DEMO, files={"lib.sh": VM_LIB}, timeout=240).check()
    except (VmError, RuntimeError) as exc:
        raise StageError(str(exc)) from exc
    for line in result.output.splitlines():
        print(f"[lab]   vm: {line}")
    metrics = [ln[2:] for ln in result.output.splitlines() if ln.startswith("# goal")]
    return f"{result.kernel}: {metrics[0] if metrics else 'goal met'}"


def stage_artifacts(ctx: LabContext) -> str:
    """Build (or reuse) the Kubernetes bundle with the patched kubelet (infra/artifacts.py)."""
    from infra.artifacts import ArtifactError  # noqa: PLC0415 -- only when run
    from infra.artifacts import build as build_artifacts  # noqa: PLC0415

    try:
        bundle = build_artifacts()
    except ArtifactError as exc:
        raise StageError(str(exc)) from exc
    size = sum(p.stat().st_size for p in bundle.root.rglob("*") if p.is_file())
    return f"{bundle.root} ({size / 2**20:.0f} MiB, kubelet {bundle.kubelet_version})"


def stage_scheduler(ctx: LabContext) -> str:
    """The DepCon profile and SLO capacity on a loopback control plane from the bundle.

    The lab's nodes become API objects (no kubelets: placement needs none),
    their SLO capacity is registered from the inventory's overrides with
    depcon-slo's own code, and two pods probe the profile: one that fits lands
    on a node, one that asks for more than any node has stays Pending with
    the scheduler's Insufficient reason.
    """
    # Imported only when run: they pull in the Kubernetes client.
    from kubernetes import client  # noqa: PLC0415

    from infra import slo  # noqa: PLC0415
    from infra.controlplane import ControlPlane, ControlPlaneError, add_node  # noqa: PLC0415
    from infra.scheduler import SchedulerConfigError, SchedulerSettings, render  # noqa: PLC0415

    cfg = ctx.config()
    try:
        mode = "profile" if cfg.stack.scheduler_mode == "second-profile" else "default"
        settings = SchedulerSettings.from_versions(
            slo_resource=cfg.slo_resource_name, mode=mode, leader_elect=False
        )
        capacities = slo.capacities_from_inventory(cfg.inventory_path)
    except (SchedulerConfigError, slo.SloError) as exc:
        raise StageError(str(exc)) from exc
    resource = cfg.slo_resource_name
    try:
        with ControlPlane() as cp:
            settings = replace(settings, kubeconfig=str(cp.scheduler_kubeconfig))
            sched = cp.start_scheduler(render(settings))
            api = cp.api_client()
            for cap in capacities:
                add_node(api, cap.node, cpu="2", memory="4Gi")
            for outcome in slo.register(slo.Cluster(api), capacities, resource):
                log(outcome.message)
            core = client.CoreV1Api(api)
            biggest = max(c.mbps for c in capacities)
            scheduler = settings.profile_name if mode == "profile" else "default-scheduler"
            for name, mbps in (("fits", biggest // 2), ("too-big", biggest + 1)):
                core.create_namespaced_pod(
                    "default", _slo_pod(client, name, scheduler, resource, mbps)
                )
            placed = _wait_pod(core, "fits", lambda p: bool(p.spec.node_name))
            pending = _wait_pod(core, "too-big", lambda p: _unschedulable(p) is not None)
            reason = _unschedulable(pending) or ""
            sched.stop()
    except ControlPlaneError as exc:
        raise StageError(str(exc)) from exc
    if f"Insufficient {resource}" not in reason:
        raise StageError(f"pod too-big is Pending without 'Insufficient {resource}': {reason}")
    return (
        f"{mode} mode: {len(capacities)} nodes registered; "
        f"{biggest // 2} Mbps pod on {placed.spec.node_name}; "
        f"{biggest + 1} Mbps pod Pending ({reason.strip()[:60]})"
    )


def _slo_pod(client: Any, name: str, scheduler: str, resource: str, mbps: int) -> Any:
    limits = {"cpu": "100m", "memory": "64Mi", resource: str(mbps)}
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1PodSpec(
            scheduler_name=scheduler,
            containers=[
                client.V1Container(
                    name="netperf",
                    image="example.invalid/netperf",
                    resources=client.V1ResourceRequirements(limits=limits, requests=limits),
                )
            ],
        ),
    )


def _unschedulable(pod: Any) -> str | None:
    for cond in pod.status.conditions or []:
        if cond.type == "PodScheduled" and cond.status == "False":
            return str(cond.message or cond.reason)
    return None


def _wait_pod(core: Any, name: str, done: Callable[[Any], bool], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        pod = core.read_namespaced_pod(name, "default")
        if done(pod):
            return pod
        if time.monotonic() > deadline:
            raise StageError(f"pod {name}: no scheduling decision within {timeout:.0f} s")
        time.sleep(0.3)


# Ansible output lines worth a console line; the whole run goes to the log.
_PLAYBOOK_PROGRESS = ("PLAY [", "TASK [", "fatal:", "failed:", "ERROR!", "PLAY RECAP")


def _lab_key() -> str:
    """The lab VMs' root key (inventory/lab resolves it too, once per task: slower)."""
    from infra.vm import image as vm_image  # noqa: PLC0415 -- only when run

    try:
        return str(vm_image.build_image(log=False).ssh_key)
    except vm_image.ImageError as exc:
        raise StageError(str(exc)) from exc


def _bundle_dir() -> Path:
    """Where make artifacts puts the bundle for the pinned version (built or not)."""
    from infra.artifacts import bundle_path  # noqa: PLC0415 -- only when run

    return bundle_path()


def _playbook(ctx: LabContext, playbook: str, log_name: str) -> str:
    """ansible-playbook on the stack's inventory; task names shown, output logged.

    Returns the PLAY RECAP lines. Under software emulation site.yml runs for
    tens of minutes, so each task is echoed as it starts.
    """
    cfg = ctx.config()
    logs = cache_dir() / "lab"
    logs.mkdir(parents=True, exist_ok=True)
    path = logs / log_name
    argv = [
        str(Path(sys.executable).with_name("ansible-playbook")),
        "-i",
        str(cfg.inventory_path),
        str(repo_root() / playbook),
    ]
    log("$ " + shlex.join(argv) + f"  (full output: {path})")
    started = time.monotonic()
    recap: list[str] = []
    # inventory/lab reads the key and the bundle from these before it falls
    # back to running Python, which it would do per task and host.
    env = {
        "DEPCON_BUNDLE_DIR": str(_bundle_dir()),
        **ctx.env,
        "DEPCON_LAB_SSH_KEY": _lab_key(),
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_NOCOLOR": "1",
    }
    with (
        path.open("w") as out,
        subprocess.Popen(
            argv,
            cwd=repo_root(),
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        ) as proc,
    ):
        assert proc.stdout is not None
        in_recap = False
        for line in proc.stdout:
            out.write(line)
            in_recap = in_recap or line.startswith("PLAY RECAP")
            if in_recap and line.strip() and not line.startswith("PLAY RECAP"):
                recap.append(" ".join(line.split()))
            if line.startswith(_PLAYBOOK_PROGRESS):
                elapsed = time.monotonic() - started
                header = line.rstrip().rstrip(" *")
                print(f"[lab]   +{elapsed:5.0f}s {header}", flush=True)
    if proc.returncode != 0:
        tail = "\n".join(path.read_text().splitlines()[-30:])
        raise StageError(f"{playbook} failed (exit {proc.returncode}, log {path}):\n{tail}")
    return "; ".join(recap)


def stage_cluster(ctx: LabContext) -> str:
    """The lab VMs (booted, or reused while they run), then playbooks/site.yml on them.

    The VMs keep their disks when stopped (make lab-down), so a re-run
    resumes the cluster and site.yml reports nothing to change.
    """
    from infra.vm import image as vm_image  # noqa: PLC0415 -- only when run

    cfg = ctx.config()
    vms = [n for n in cfg.nodes if n.lab_vm_ip]
    if not vms:
        raise StageError(
            f"{cfg.inventory_path}: no host has depcon_lab_vm_ip; the cluster stage boots the "
            "local lab's VMs. For your own servers run playbooks/site.yml (docs/ansible.md)"
        )
    try:
        img = vm_image.build_image()
        for node in vms:
            assert node.lab_vm_ip is not None
            inst, boot = vm_image.ensure_up(
                node.name,
                ssh_port=node.ssh_port,
                cluster_ip=node.lab_vm_ip,
                image=img,
                mem_mb=cfg.stack.lab_vm_memory_mib,
            )
            how = "running, reused" if boot is None else f"booted in {boot:.0f} s"
            ssh = f"ssh -p {node.ssh_port} -i {inst.identity_file} root@127.0.0.1"
            log(f"VM {node.name}: {how} ({ssh})")
    except vm_image.ImageError as exc:
        raise StageError(str(exc)) from exc
    recap = _playbook(ctx, "playbooks/site.yml", "site.log")
    return f"{len(vms)} VMs; site.yml: {recap}"


def stage_verify(ctx: LabContext) -> str:
    """verify.yml: module, kubelet, Ready, SLO capacity; SLO pods placed and in vif."""
    return "verify.yml: " + _playbook(ctx, "playbooks/verify.yml", "verify.log")


def _not_built(module: str) -> bool:
    return importlib.util.find_spec(module) is None


def stages() -> list[Stage]:
    engine_built = not _not_built("infra.pulumi_engine")
    return [
        Stage("config", "validate versions, stack and inventory", stage_config, 2),
        Stage(
            "engine",
            "locally built Pulumi CLI + plugins",
            stage_engine if engine_built else None,
            2,
        ),
        Stage(
            "pulumi-up",
            "pulumi up: host layer (controller preflight)",
            stage_pulumi_up if engine_built else None,
            2,
        ),
        Stage("vif-demo", "boot a VM, load vif, short SLO demo", stage_vif_demo, 3),
        Stage("artifacts", "Kubernetes bundle + patched kubelet", stage_artifacts, 4),
        Stage(
            "scheduler",
            "DepCon profile + SLO capacity on a loopback control plane",
            stage_scheduler,
            5,
        ),
        Stage("cluster", "lab VMs, kubeadm cluster, DepCon on it (site.yml)", stage_cluster, 6),
        Stage("verify", "verify.yml: DepCon on every node, SLO pods end to end", stage_verify, 6),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="depcon-lab", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stack", default="lab")
    parser.add_argument(
        "--strict", action="store_true", help="exit 3 unless every stage is built and passed"
    )
    args = parser.parse_args(argv)
    ctx = LabContext(stack=args.stack, env=dict(os.environ))
    rows: list[tuple[str, str, str]] = []
    failed = False
    for stage in stages():
        if stage.run is None:
            rows.append((stage.name, "not built yet", f"{stage.what} (issue {stage.issue})"))
            continue
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
            print(f"[lab] stage {stage.name} failed:\n{exc}", file=sys.stderr)
            continue
        rows.append((stage.name, "passed", f"{detail} ({time.monotonic() - start:.1f} s)"))
    print()
    print(f"{'stage':<11} {'result':<14} detail")
    for name, result, detail in rows:
        print(f"{name:<11} {result:<14} {detail}")
    passed = sum(r[1] == "passed" for r in rows)
    missing = sum(r[1] == "not built yet" for r in rows)
    print()
    if failed:
        print(f"lab: FAILED ({passed} passed)")
        return 1
    if missing:
        print(f"lab: {passed} stages passed, {missing} not built yet: the lab is NOT complete")
        return 3 if args.strict else 0
    print(f"lab: all {passed} stages passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
