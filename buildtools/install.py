"""Phase two of scripts/setup: what versions.yml pins on the controller.

* Debian packages at their pinned versions: both test kernels (image +
  headers, for the VM tests and the vif module build), netperf and iperf3
  (the VM tests run the host's binaries over virtme-ng's shared root), runc
  and the CNI plugins (the bundle's containerd runs containers with them).
* The Go toolchain at its pinned version, linked as .venv/bin/go so every
  build (make runs with .venv/bin first on PATH) uses it.

Idempotent: each step checks first and says "ok" when nothing is to do.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import urllib.request
import zipfile
from pathlib import Path

from depcon.config import ConfigError, DebianPin, Versions, load_versions
from depcon.paths import cache_dir, repo_root

GO_PROXY = "https://proxy.golang.org"
# Wait for another apt (unattended-upgrades, a second checkout's setup) instead of failing.
APT_WAIT = ("-o", "DPkg::Lock::Timeout=600")


def log(message: str) -> None:
    print(f"[setup] {message}", flush=True)


class SetupError(RuntimeError):
    pass


def installed_version(package: str) -> str | None:
    proc = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}\t${Version}", package],
        capture_output=True,
        text=True,
        check=False,
    )
    status, _, version = proc.stdout.partition("\t")
    return version if status == "install ok installed" else None


def archive_sha256(spec: str) -> str | None:
    """The .deb's sha256 as the (signed) archive index lists it."""
    proc = subprocess.run(["apt-cache", "show", spec], capture_output=True, text=True, check=False)
    for line in proc.stdout.splitlines():
        if line.startswith("SHA256: "):
            return line.split(": ", 1)[1].strip()
    return None


def pinned_debian(versions: Versions) -> list[tuple[str, DebianPin]]:
    """Every package pin the controller needs, labelled for messages."""
    # Labelled by their versions.yml key.
    pins: list[tuple[str, DebianPin]] = list(versions.debian_pins().items())
    for k in versions.kernels:
        pins.append(
            (
                f"kernel {k.name} image",
                DebianPin("debian", k.image_package, k.version, k.image_sha256),
            )
        )
        pins.append(
            (
                f"kernel {k.name} headers",
                DebianPin("debian", k.headers_package, k.version, k.headers_sha256),
            )
        )
    return pins


def ensure_debian_pins(versions: Versions) -> None:
    todo = [
        (label, pin)
        for label, pin in pinned_debian(versions)
        if installed_version(pin.package) != pin.version
    ]
    if not todo:
        log(f"ok: {len(pinned_debian(versions))} pinned Debian packages at their versions")
        return
    subprocess.run(["apt-get", *APT_WAIT, "update", "-qq"], check=True)
    for label, pin in todo:
        if pin.sha256 is not None:
            found = archive_sha256(pin.apt_spec)
            if found is None:
                raise SetupError(
                    f"{label}: {pin.apt_spec} is not in the Debian archive any more; "
                    f"bump its pin in {repo_root() / 'versions.yml'}"
                )
            if found != pin.sha256:
                raise SetupError(
                    f"{label}: {pin.apt_spec} has sha256 {found} in the archive, "
                    f"versions.yml pins {pin.sha256}"
                )
    specs = [pin.apt_spec for _, pin in todo]
    log(f"installing pinned Debian packages: {' '.join(specs)}")
    subprocess.run(
        ["apt-get", *APT_WAIT, "install", "-y", "-qq", "--no-install-recommends", *specs],
        check=True,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        stdout=subprocess.DEVNULL,
    )


def go_version(go: str) -> str | None:
    try:
        out = subprocess.run(
            [go, "env", "GOVERSION"],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "GOTOOLCHAIN": "local"},
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.strip()


def fetch_go(versions: Versions) -> Path:
    """Unpack the pinned toolchain from the module proxy into the cache."""
    want = versions.go.version
    root = cache_dir() / "go" / want
    goroot = root / f"golang.org/toolchain@v0.0.1-{want}.linux-amd64"
    if (goroot / "bin" / "go").exists():
        return goroot
    url = f"{GO_PROXY}/golang.org/toolchain/@v/v0.0.1-{want}.linux-amd64.zip"
    log(f"downloading Go {want} from the module proxy")
    root.mkdir(parents=True, exist_ok=True)
    archive = root / "toolchain.zip"
    with urllib.request.urlopen(url, timeout=300) as resp, archive.open("wb") as out:
        shutil.copyfileobj(resp, out)
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    if digest != versions.go.toolchain_sha256:
        archive.unlink()
        raise SetupError(
            f"Go toolchain {url}: sha256 {digest}, versions.yml pins {versions.go.toolchain_sha256}"
        )
    tmp = root / "unpack.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            target = Path(zf.extract(info, tmp))
            mode = (info.external_attr >> 16) & 0o777
            if mode:
                target.chmod(mode)
    (tmp / goroot.relative_to(root)).rename(goroot)
    shutil.rmtree(tmp)
    archive.unlink()
    return goroot


def ensure_go(versions: Versions) -> None:
    want = versions.go.version
    venv_bin = repo_root() / ".venv" / "bin"
    link = venv_bin / "go"
    if link.exists() and go_version(str(link)) == want:
        log(f"ok: {want} at {link.resolve()}")
        return
    system = shutil.which("go", path=os.environ.get("PATH", "").replace(str(venv_bin), ""))
    if system and go_version(system) == want:
        goroot = Path(system).resolve().parent.parent
    else:
        goroot = fetch_go(versions)
    for tool in ("go", "gofmt"):
        target = venv_bin / tool
        target.unlink(missing_ok=True)
        target.symlink_to(goroot / "bin" / tool)
    log(f"linked {want} from {goroot} as {link}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="buildtools.install", description=__doc__)
    parser.parse_args(argv)
    try:
        versions = load_versions()
        ensure_debian_pins(versions)
        ensure_go(versions)
    except (ConfigError, SetupError) as exc:
        print(f"[setup] error: {exc}", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as exc:
        print(
            f"[setup] error: {' '.join(map(str, exc.cmd))} exited {exc.returncode}", file=sys.stderr
        )
        return 1
    log("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
