"""The DepCon scheduler profile: typed settings, validation, rendering.

The KubeSchedulerConfiguration comes from one jinja2 template,
``roles/depcon_scheduler/templates/kube-scheduler-config.yaml.j2``, which the
depcon_scheduler role renders on the control plane with Ansible's template
module and this module renders for tests, the benchmark and the command line.
Its inputs are the ``depcon_scheduler_*`` variables of :meth:`SchedulerSettings.
template_vars`; :meth:`SchedulerSettings.validate` rejects a bad value with the
variable's name before anything is rendered or started, and :func:`check_with_binary`
lets the pinned kube-scheduler load the result as it would at start-up.

Command line::

    python -m buildtools.scheduler render --mode second-profile|default-profile [--check]

docs/scheduler.md explains the modes and each plugin choice.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import jinja2
import yaml

from depcon.config import load_versions, validate_extended_resource_name
from depcon.paths import repo_root

__all__ = [
    "DEFAULT_SHAPE",
    "PREFIX",
    "SchedulerConfigError",
    "SchedulerSettings",
    "ShapePoint",
    "check_with_binary",
    "render",
    "template_path",
]

PREFIX = "depcon_scheduler_"
STOCK_PROFILE = "default-scheduler"
# kubescheduler.config.k8s.io/v1 limits (pkg/scheduler/apis/config/validation).
MAX_UTILIZATION = 100
MAX_CUSTOM_SCORE = 10
MAX_RESOURCE_WEIGHT = 100
MAX_PLUGIN_WEIGHT = 100
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_SECONDS = re.compile(r"^[0-9]+s$")  # whole seconds, as the role documents them

Mode = Literal["second-profile", "default-profile"]


class SchedulerConfigError(ValueError):
    """A scheduler setting a user can fix: ``key`` is the depcon_scheduler_* variable."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


@dataclass(frozen=True)
class ShapePoint:
    """One point of RequestedToCapacityRatio's shape: utilization % → score (1-10)."""

    utilization: int
    score: int


# Free node → 10, full node → 1: the emptiest node scores best (spreading). Not 0:
# kube-scheduler leaves a resource that scores 0 out of the node's weighted mean.
DEFAULT_SHAPE = (ShapePoint(0, 10), ShapePoint(100, 1))


def _int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class SchedulerSettings:
    """Everything the template takes; field ``x`` is variable ``depcon_scheduler_x``."""

    slo_resource: str
    mode: Mode = "second-profile"
    kubeconfig: str = "/etc/kubernetes/scheduler.conf"
    profile_name: str = "depcon-scheduler"
    cpu_weight: int = 10
    memory_weight: int = 1
    plugin_weight: int = 2
    shape: tuple[ShapePoint, ...] = DEFAULT_SHAPE
    percentage_of_nodes_to_score: int = 100
    leader_elect: bool = True
    # Lease duration, renew deadline, retry period (upstream's defaults).
    leader_election: tuple[str, str, str] = ("15s", "10s", "2s")

    @classmethod
    def from_versions(cls, **overrides: Any) -> SchedulerSettings:
        """Settings with the pinned SLO resource name (versions.yml ``slo``)."""
        overrides.setdefault("slo_resource", load_versions().slo.resource_name)
        return cls(**overrides)

    def validate(self) -> None:
        """Raise :class:`SchedulerConfigError` naming the first bad variable."""
        if self.mode not in ("second-profile", "default-profile"):
            raise SchedulerConfigError(
                PREFIX + "mode",
                f"{self.mode!r} is not a mode: 'second-profile' (a second profile beside "
                "default-scheduler) or 'default-profile' (DepCon is default-scheduler)",
            )
        try:
            validate_extended_resource_name(self.slo_resource)
        except ValueError as exc:
            raise SchedulerConfigError(PREFIX + "slo_resource", str(exc)) from None
        if not (
            isinstance(self.profile_name, str)
            and len(self.profile_name) <= 253
            and _DNS_SUBDOMAIN.match(self.profile_name)
        ):
            raise SchedulerConfigError(
                PREFIX + "profile_name",
                f"{self.profile_name!r} is not a DNS subdomain (lowercase, digits, '-', '.')",
            )
        if self.profile_name == STOCK_PROFILE:
            raise SchedulerConfigError(
                PREFIX + "profile_name",
                f"must differ from {STOCK_PROFILE!r} (use mode 'default-profile' to replace it)",
            )
        if not (isinstance(self.kubeconfig, str) and self.kubeconfig.startswith("/")):
            raise SchedulerConfigError(
                PREFIX + "kubeconfig", f"{self.kubeconfig!r} must be an absolute path"
            )
        for key, limit in (
            ("cpu_weight", MAX_RESOURCE_WEIGHT),
            ("memory_weight", MAX_RESOURCE_WEIGHT),
            ("plugin_weight", MAX_PLUGIN_WEIGHT),
        ):
            value = getattr(self, key)
            if not _int(value) or not 1 <= value <= limit:
                raise SchedulerConfigError(
                    PREFIX + key, f"{value!r} is out of range: an integer 1-{limit}"
                )
        pct = self.percentage_of_nodes_to_score
        if not _int(pct) or not 0 <= pct <= 100:
            raise SchedulerConfigError(
                PREFIX + "percentage_of_nodes_to_score",
                f"{pct!r} is out of range: 0 (the adaptive default) to 100",
            )
        if not isinstance(self.leader_elect, bool):
            raise SchedulerConfigError(
                PREFIX + "leader_elect", f"{self.leader_elect!r} must be true or false"
            )
        self._validate_leader_election()
        self._validate_shape()

    def _validate_leader_election(self) -> None:
        key = PREFIX + "leader_election"
        times = self.leader_election
        if len(times) != 3 or not all(isinstance(t, str) and _SECONDS.match(t) for t in times):
            raise SchedulerConfigError(
                key,
                f"{list(times)!r} must be [lease duration, renew deadline, retry period], e.g. 15s",
            )
        lease, renew, retry = (int(t[:-1]) for t in times)
        # kube-scheduler's own rule (leaderelection config validation).
        if not lease > renew > retry > 0:
            raise SchedulerConfigError(
                key, f"{list(times)!r}: needs lease duration > renew deadline > retry period > 0"
            )

    def _validate_shape(self) -> None:
        key = PREFIX + "shape"
        if len(self.shape) < 2:
            raise SchedulerConfigError(key, "needs at least two points (utilization → score)")
        previous = -1
        for i, point in enumerate(self.shape):
            u, s = point.utilization, point.score
            if not _int(u) or not 0 <= u <= MAX_UTILIZATION:
                raise SchedulerConfigError(
                    f"{key}[{i}].utilization",
                    f"{u!r} is out of range: an integer 0-{MAX_UTILIZATION} (percent)",
                )
            if not _int(s) or not 1 <= s <= MAX_CUSTOM_SCORE:
                raise SchedulerConfigError(
                    f"{key}[{i}].score",
                    f"{s!r} is out of range: an integer 1-{MAX_CUSTOM_SCORE} (kube-scheduler "
                    "leaves a resource that scores 0 out of the node's mean: a node at that "
                    "utilization would be scored on its other resources alone)",
                )
            if u <= previous:
                raise SchedulerConfigError(
                    f"{key}[{i}].utilization",
                    f"{u} must be greater than the previous point's {previous}",
                )
            previous = u

    def template_vars(self) -> dict[str, Any]:
        """The ``depcon_scheduler_*`` variables, as the Ansible role passes them."""
        return {
            PREFIX + "mode": self.mode,
            PREFIX + "slo_resource": self.slo_resource,
            PREFIX + "kubeconfig": self.kubeconfig,
            PREFIX + "profile_name": self.profile_name,
            PREFIX + "cpu_weight": self.cpu_weight,
            PREFIX + "memory_weight": self.memory_weight,
            PREFIX + "plugin_weight": self.plugin_weight,
            PREFIX + "shape": [
                {"utilization": p.utilization, "score": p.score} for p in self.shape
            ],
            PREFIX + "percentage_of_nodes_to_score": self.percentage_of_nodes_to_score,
            PREFIX + "leader_elect": self.leader_elect,
            PREFIX + "leader_election": list(self.leader_election),
        }


def template_path() -> Path:
    return repo_root() / "roles/depcon_scheduler/templates/kube-scheduler-config.yaml.j2"


def render(settings: SchedulerSettings, *, trim_blocks: bool = True) -> str:
    """Validate ``settings`` and render the KubeSchedulerConfiguration YAML.

    ``trim_blocks=True`` is what Ansible's template module does by default;
    the template renders the same document either way (a unit test checks).
    """
    settings.validate()
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(template_path().parent),
        undefined=jinja2.StrictUndefined,
        trim_blocks=trim_blocks,
        keep_trailing_newline=True,
        autoescape=False,
    )
    text = env.get_template(template_path().name).render(**settings.template_vars())
    # A template bug must not reach a control plane as unparsable YAML.
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SchedulerConfigError(str(template_path()), f"rendered invalid YAML: {exc}") from None
    if not isinstance(doc, dict) or doc.get("kind") != "KubeSchedulerConfiguration":
        raise SchedulerConfigError(
            str(template_path()), "did not render a KubeSchedulerConfiguration"
        )
    return text


def check_with_binary(config_yaml: str, kube_scheduler: Path, timeout: float = 60.0) -> None:
    """Have the pinned kube-scheduler load ``config_yaml`` and exit (``--write-config-to``).

    It decodes, defaults and validates the configuration and builds every
    profile's framework (plugin arguments included), as at start-up, without
    contacting an API server. The configuration's kubeconfig is replaced by a
    placeholder, so this runs anywhere. Raises :class:`SchedulerConfigError`
    with kube-scheduler's own message.
    """
    doc = yaml.safe_load(config_yaml)
    with tempfile.TemporaryDirectory(prefix="depcon-sched-check-") as tmp:
        d = Path(tmp)
        kubeconfig = d / "kubeconfig"
        kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
                    "users": [{"name": "u", "user": {"token": "placeholder"}}],
                    "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                    "current-context": "c",
                }
            )
        )
        doc.setdefault("clientConnection", {})["kubeconfig"] = str(kubeconfig)
        config = d / "config.yaml"
        config.write_text(yaml.safe_dump(doc))
        proc = subprocess.run(
            [
                str(kube_scheduler),
                f"--config={config}",
                f"--write-config-to={d / 'effective.yaml'}",
                "--secure-port=0",
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if proc.returncode != 0 or not (d / "effective.yaml").is_file():
            lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
            raise SchedulerConfigError(
                "kube-scheduler",
                f"{kube_scheduler} rejected the configuration (exit {proc.returncode}):\n"
                + "\n".join(lines[-15:]),
            )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m buildtools.scheduler", description="The DepCon scheduler profile."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("render", help="print the KubeSchedulerConfiguration")
    r.add_argument(
        "--mode", choices=("second-profile", "default-profile"), default="second-profile"
    )
    r.add_argument("--slo-resource", help="default: versions.yml slo.resource_name")
    r.add_argument("--kubeconfig", default=SchedulerSettings.kubeconfig)
    r.add_argument(
        "--check",
        action="store_true",
        help="also have the bundle's kube-scheduler load it (builds/reuses the bundle)",
    )
    args = parser.parse_args(argv)
    overrides: dict[str, Any] = {"mode": args.mode, "kubeconfig": args.kubeconfig}
    if args.slo_resource:
        overrides["slo_resource"] = args.slo_resource
    try:
        settings = SchedulerSettings.from_versions(**overrides)
        text = render(settings)
        if args.check:
            from buildtools.artifacts import build  # noqa: PLC0415 - heavy, only for --check

            with contextlib.redirect_stdout(sys.stderr):  # keep stdout the YAML alone
                bundle = build()
            check_with_binary(text, bundle.root / "bin" / "kube-scheduler")
    except SchedulerConfigError as exc:
        print(f"scheduler configuration error: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
