"""The DepCon kubelet patch series against the pinned k8s.io/kubernetes source.

Real module from the Go module proxy (verified against versions.yml), real
``git apply`` on a copy of it. Compiling the patched kubelet is the bundle
build's job, not this test's. The last test runs the depcon
package against the real vif module in the vif VM harness (harness/vm).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from buildtools.kubelet_patch import (
    KubernetesSource,
    PatchError,
    apply_series,
    check_series,
    download_kubernetes,
    go_module_h1,
    package_dir,
    patch_files,
    patches_dir,
    refresh_series,
    series,
)
from depcon.config import load_versions
from depcon.paths import repo_root
from harness.vm import runner

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def source() -> KubernetesSource:
    pin = load_versions().kubernetes
    return download_kubernetes(pin.version, pin.module_sum)


def test_module_is_the_pinned_one(source: KubernetesSource) -> None:
    pin = load_versions().kubernetes
    assert source.version == pin.version
    assert go_module_h1(source.zip) == pin.module_sum


def test_series_applies_cleanly_to_pinned_version(source: KubernetesSource) -> None:
    names = check_series(source.dir)
    assert [n[:4] for n in names] == [f"{i:04d}" for i in range(1, len(names) + 1)]
    assert len(names) >= 2


def test_each_patch_says_why() -> None:
    patches = series()
    for i, patch in enumerate(patches, start=1):
        text = patch.read_text()
        subject = re.search(r"^Subject: \[PATCH (\d+)/(\d+)\] (.+)$", text, re.MULTILINE)
        assert subject, f"{patch.name}: no git format-patch Subject line"
        assert (int(subject[1]), int(subject[2])) == (i, len(patches)), patch.name
        message = text.split("\n\n", 1)[1].split("\n---\n", 1)[0]
        assert len(message.split()) >= 20, f"{patch.name}: the message does not say why"


def _package_files(package: Path) -> dict[str, str]:
    return {f"pkg/kubelet/depcon/{p.name}": p.read_text() for p in package.glob("*.go")}


def test_0001_is_generated_from_the_package(tmp_path: Path) -> None:
    # One copy of the code: the repository keeps only 0001's message.
    assert not list(patches_dir().glob("0001-*.patch"))
    assert patch_files(series()[0]) == _package_files(package_dir())

    # A change to the package is in the next 0001, with no step in between.
    pkg = tmp_path / "depcon"
    shutil.copytree(package_dir(), pkg)
    (pkg / "spec.go").write_text((pkg / "spec.go").read_text() + "\n// changed\n")
    changed = series(package=pkg)[0]
    assert changed != series()[0]
    assert patch_files(changed) == _package_files(pkg)


def test_patched_tree_wires_the_package(source: KubernetesSource, tmp_path: Path) -> None:
    tree = tmp_path / "kubernetes"
    apply_series(source.dir, tree)
    kubelet = tree / "pkg" / "kubelet"
    assert (kubelet / "depcon" / "manager.go").read_text() == (
        repo_root() / "kubelet_patch" / "depcon" / "manager.go"
    ).read_text()
    container = (kubelet / "kuberuntime" / "kuberuntime_container.go").read_text()
    assert "m.depcon.ContainerStarted(" in container
    assert "m.depcon.ContainerStopped(" in container
    assert (
        "go wait.UntilWithContext(ctx, kl.reconcileDepcon, depconReconcilePeriod)"
        in (kubelet / "kubelet.go").read_text()
    )
    assert "m.depcon.MaskedPaths(" in (kubelet / "kuberuntime" / "security_context.go").read_text()
    # The module cache copy is untouched.
    assert not (source.dir / "pkg" / "kubelet" / "depcon").exists()


def test_a_patch_that_does_not_apply_is_named(source: KubernetesSource, tmp_path: Path) -> None:
    broken = tmp_path / "0001-broken.patch"
    text = series()[1].read_text()
    broken.write_text(
        text.replace(
            "podInitContainerTimeRecorder: podInitContainerTimeRecorder,", "no such line", 1
        )
    )
    with pytest.raises(PatchError, match=re.escape("0001-broken.patch does not apply")):
        check_series(source.dir, [broken])


def test_unfetchable_version_names_the_module() -> None:
    pin = load_versions().kubernetes
    with pytest.raises(PatchError, match=re.escape("k8s.io/kubernetes@v1.36.999")):
        download_kubernetes("v1.36.999", pin.module_sum)


def test_hash_mismatch_is_refused() -> None:
    pin = load_versions().kubernetes
    wrong = "h1:" + "A" * 43 + "="
    with pytest.raises(PatchError, match=re.escape("does not match kubernetes.module_sum")):
        download_kubernetes(pin.version, wrong)


def test_refresh_of_an_up_to_date_series_changes_nothing(
    source: KubernetesSource, tmp_path: Path
) -> None:
    copy = tmp_path / "patches"
    shutil.copytree(patches_dir(), copy)
    written = refresh_series(source.dir, copy)
    assert sorted(p.name for p in written) == sorted(p.name for p in patches_dir().iterdir())
    for new in written:
        assert new.read_bytes() == (patches_dir() / new.name).read_bytes(), new.name


def test_a_series_without_the_0001_message_is_refused(tmp_path: Path) -> None:
    copy = tmp_path / "patches"
    shutil.copytree(patches_dir(), copy)
    next(copy.glob("0001-*.msg")).unlink()
    with pytest.raises(PatchError, match=re.escape("expected 0001-*.msg")):
        series(copy)


_REAL_MODULE_SCRIPT = """set -e
insmod /test/vif.ko
DEPCON_REAL_PROCFS=/proc/oslab /test/depcon.test -test.run '^TestRealModule$' -test.v
"""


@pytest.mark.kernel
def test_package_against_the_real_module(tmp_path: Path) -> None:
    binary = tmp_path / "depcon.test"
    subprocess.run(
        ["go", "test", "-c", "-o", str(binary), "."],
        cwd=repo_root() / "kubelet_patch" / "depcon",
        env=dict(os.environ, CGO_ENABLED="0", GOFLAGS="-mod=mod", GOTOOLCHAIN="local"),
        check=True,
    )
    script = tmp_path / "run.sh"
    script.write_text(_REAL_MODULE_SCRIPT)
    # No skip when qemu or the kernel is missing: scripts/setup installs them.
    result = runner.run_script(script, files={"depcon.test": binary})
    result.check()
    assert "--- PASS: TestRealModule" in result.output, result.output
