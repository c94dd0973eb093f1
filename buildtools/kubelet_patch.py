"""The DepCon kubelet patch series: find it, check it, apply it to Kubernetes.

The series lives in ``kubelet_patch/patches/`` (``git format-patch`` files,
``0001-*.patch`` ...) and applies to ``k8s.io/kubernetes`` at the version
pinned in ``versions.yml``, fetched through the Go module proxy. The module
cache is read-only, so the series is always applied to a copy.

``0001`` adds ``pkg/kubelet/depcon``, the Go package in ``kubelet_patch/depcon``.
Only its message is kept (``0001-*.msg``): :func:`series` generates the patch
from the package each time, so there is one copy of the code.

Command line::

    python -m buildtools.kubelet_patch check            # the series applies cleanly
    python -m buildtools.kubelet_patch apply DEST       # full patched tree in DEST
    python -m buildtools.kubelet_patch refresh          # normalise the series after a rebase
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

from buildtools import gotool
from depcon.config import load_versions
from depcon.paths import cache_dir, repo_root

# The go.sum hash of a module zip: what kubernetes.module_sum pins.
go_module_h1 = gotool.module_h1

__all__ = [
    "KubernetesSource",
    "PatchError",
    "apply_series",
    "check_series",
    "download_kubernetes",
    "go_module_h1",
    "package_dir",
    "package_patch",
    "patch_files",
    "patches_dir",
    "refresh_series",
    "series",
    "touched_paths",
    "use_published_staging",
    "writable_copy",
]

_PATCH_NAME = re.compile(r"^(\d{4})-[A-Za-z0-9._-]+\.(patch|msg)$")
_DIFF_GIT = re.compile(r"^diff --git a/(\S+) b/(\S+)$", re.MULTILINE)
_DEPCON_IN_TREE = "pkg/kubelet/depcon/"
_STAGING_REPLACE = re.compile(
    r"^(\s*(?:replace\s+)?)(k8s\.io/[A-Za-z0-9._-]+) => \./staging/src/\2\s*$", re.MULTILINE
)


class PatchError(RuntimeError):
    """The series is malformed, cannot be fetched, or does not apply."""


def patches_dir() -> Path:
    return repo_root() / "kubelet_patch" / "patches"


def package_dir() -> Path:
    return repo_root() / "kubelet_patch" / "depcon"


def _numbered(directory: Path) -> list[Path]:
    """The 0001-*.msg and 0002-*.patch ... files, numbered without gaps."""
    found = sorted(p for p in directory.iterdir() if p.suffix in (".patch", ".msg"))
    if not found:
        raise PatchError(f"{directory}: no .patch files")
    for i, path in enumerate(found, start=1):
        m = _PATCH_NAME.match(path.name)
        if not m or int(m.group(1)) != i or (m.group(2) == "msg") != (i == 1):
            want = f"{i:04d}-*.msg" if i == 1 else f"{i:04d}-*.patch"
            raise PatchError(
                f"{path}: expected {want} (git format-patch numbering; 0001 is generated)"
            )
    return found


# Fixed commit metadata, so re-exporting an unchanged series changes no byte.
_GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "DepCon deploy",
    "GIT_AUTHOR_EMAIL": "depcon@example.com",
    "GIT_AUTHOR_DATE": "2026-11-23T00:00:00Z",
    "GIT_COMMITTER_NAME": "DepCon deploy",
    "GIT_COMMITTER_EMAIL": "depcon@example.com",
    "GIT_COMMITTER_DATE": "2026-11-23T00:00:00Z",
    # The user's git configuration (prefixes, abbreviation) must not leak into a patch.
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}
_PATCH_FROM = "From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001"
_PATCH_DATE = "Mon, 23 Nov 2026 00:00:00 +0000"


def _git(tree: Path, *args: str) -> str:
    env = dict(os.environ, **_GIT_IDENTITY)
    proc = subprocess.run(
        ["git", *args], cwd=tree, env=env, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise PatchError(f"git {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


def package_patch(message: Path, total: int, package: Path | None = None) -> str:
    """Patch 1 of ``total``: ``message`` (a commit message) adding the package's Go files.

    The diff is git's own (a scratch index holding ``pkg/kubelet/depcon/*.go``),
    laid out as ``git format-patch`` writes it, with the fixed identity.
    """
    package = package or package_dir()
    sources = sorted(package.glob("*.go"))
    if not sources:
        raise PatchError(f"{package}: no .go files to put into 0001")
    subject, _, body = message.read_text().strip().partition("\n")
    with tempfile.TemporaryDirectory(prefix="kubelet-patch-") as tmp:
        tree = Path(tmp)
        (tree / _DEPCON_IN_TREE).mkdir(parents=True)
        for src in sources:
            shutil.copyfile(src, tree / _DEPCON_IN_TREE / src.name)
        _git(tree, "init", "-q")
        _git(tree, "add", "-A")
        diff = _git(tree, "diff", "--cached", "--abbrev=7", "--stat=72", "--summary", "--patch")
    author = f"{_GIT_IDENTITY['GIT_AUTHOR_NAME']} <{_GIT_IDENTITY['GIT_AUTHOR_EMAIL']}>"
    header = (
        f"{_PATCH_FROM}\nFrom: {author}\nDate: {_PATCH_DATE}\n"
        f"Subject: [PATCH 1/{total}] {subject.strip()}\n"
    )
    return f"{header}\n{body.strip()}\n---\n{diff}"


def series(directory: Path | None = None, package: Path | None = None) -> list[Path]:
    """The patch files in order, 0001 generated from the package.

    0001 is written under the cache, keyed by its content, so the paths stay
    valid and an unchanged package is not written again.
    """
    directory = directory or patches_dir()
    message, *rest = _numbered(directory)
    text = package_patch(message, 1 + len(rest), package)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    first = cache_dir() / "kubelet-patch" / digest / (message.stem + ".patch")
    if not first.is_file() or first.read_text() != text:
        first.parent.mkdir(parents=True, exist_ok=True)
        tmp = first.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(first)
    return [first, *rest]


def touched_paths(patch: Path) -> list[str]:
    """Paths (relative to the tree root) a patch modifies or creates."""
    return sorted({b for _, b in _DIFF_GIT.findall(patch.read_text())})


def patch_files(patch: Path) -> dict[str, str]:
    """Content of the files a patch creates (``new file mode``), by path."""
    files: dict[str, str] = {}
    chunks = re.split(r"^(?=diff --git )", patch.read_text(), flags=re.MULTILINE)
    for chunk in chunks:
        head = _DIFF_GIT.match(chunk)
        if not head or "\nnew file mode " not in chunk.split("\n@@", 1)[0]:
            continue
        body = chunk.split("\n@@", 1)[1].split("\n", 1)[1] if "\n@@" in chunk else ""
        lines: list[str] = []
        final_newline = True
        for line in body.split("\n"):
            if line.startswith("+"):
                lines.append(line[1:])
            elif line.startswith("\\"):  # "\ No newline at end of file"
                final_newline = False
        files[head.group(2)] = "\n".join(lines) + ("\n" if final_newline and lines else "")
    return files


# The module in the Go module cache (read-only): its version, tree and zip.
KubernetesSource = gotool.Module


def download_kubernetes(
    version: str | None = None, module_sum: str | None = None
) -> KubernetesSource:
    """Fetch the module through the proxy (a no-op when cached) and verify its hash.

    sum.golang.org does not answer for k8s.io/kubernetes on this network, so the
    checksum database is skipped for it and the zip is checked against the
    ``module_sum`` pinned in versions.yml instead.
    """
    if version is None or module_sum is None:
        pin = load_versions().kubernetes
        version, module_sum = version or pin.version, module_sum or pin.module_sum
    module = "k8s.io/kubernetes"
    env = gotool.go_env(nosum=(module,))
    src = gotool.download_one(module, version, Path.cwd(), env, error=PatchError)
    gotool.check_sum(src, "kubernetes.module_sum", module_sum, error=PatchError)
    return src


def _copy_writable(src: Path, dest: Path, paths: list[str] | None) -> None:
    """Copy the tree (or only ``paths`` of it that exist) and make it writable."""
    if paths is None:
        shutil.copytree(src, dest, symlinks=True)
    else:
        dest.mkdir(parents=True, exist_ok=True)
        for rel in paths:
            if (src / rel).is_file():
                (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src / rel, dest / rel)
    for dirpath, dirnames, filenames in os.walk(dest):
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            if not p.is_symlink():
                p.chmod(p.stat().st_mode | stat.S_IWUSR)
    dest.chmod(dest.stat().st_mode | stat.S_IWUSR)


def use_published_staging(tree: Path, staging_version: str | None = None) -> list[str]:
    """Point the tree's staging modules at their published ``k8s.io/*`` releases.

    ``go.mod`` of ``k8s.io/kubernetes`` replaces every staging module with
    ``./staging/src/k8s.io/<name>``, but the module zip carries no
    ``staging/src`` (nested modules are cut out of a module archive). Each
    staging module is published on its own at ``v0.X.Y`` for release
    ``v1.X.Y``, so the replace targets become those releases (what
    kubernetes-sigs/scheduler-plugins does). Build with ``GOWORK=off`` (the
    tree's ``go.work`` names the missing directories) and ``-mod=mod`` (the
    published modules' sums are not in upstream's ``go.sum``). Returns the
    replaced module paths.
    """
    staging_version = staging_version or load_versions().kubernetes.staging_version
    gomod = tree / "go.mod"
    text = gomod.read_text()
    replaced: list[str] = []

    def swap(m: re.Match[str]) -> str:
        replaced.append(m.group(2))
        return f"{m.group(1)}{m.group(2)} => {m.group(2)} {staging_version}"

    text = _STAGING_REPLACE.sub(swap, text)
    if not replaced:
        raise PatchError(f"{gomod}: no ./staging/src replace directives to rewrite")
    gomod.write_text(text)
    return replaced


def writable_copy(source: Path, dest: Path) -> None:
    """A writable copy of the whole tree at ``source`` (the module cache is read-only)."""
    if dest.exists():
        raise PatchError(f"{dest} exists: writable_copy needs a fresh directory")
    _copy_writable(source, dest, None)


def _git_apply(tree: Path, patch: Path) -> None:
    for args in (["--check"], []):
        proc = subprocess.run(
            ["git", "apply", *args, str(patch.resolve())],
            cwd=tree,
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise PatchError(f"{patch.name} does not apply: {proc.stderr.strip()}")


def apply_series(source: Path, dest: Path, patches: list[Path] | None = None) -> list[str]:
    """Copy the whole tree at ``source`` to ``dest`` and apply the series there.

    ``dest`` must not exist. Returns the names of the applied patches.
    """
    patches = patches or series()
    if dest.exists():
        raise PatchError(f"{dest} exists: apply_series needs a fresh directory")
    _copy_writable(source, dest, None)
    for patch in patches:
        _git_apply(dest, patch)
    return [p.name for p in patches]


def check_series(source: Path, patches: list[Path] | None = None) -> list[str]:
    """Check that the series applies cleanly, in order, to the tree at ``source``.

    Only the files the series touches are copied (into a temporary directory),
    so this takes a fraction of a second. Returns the names of the patches.
    """
    patches = patches or series()
    touched = sorted({path for p in patches for path in touched_paths(p)})
    with tempfile.TemporaryDirectory(prefix="kubelet-patch-") as tmp:
        tree = Path(tmp) / "tree"
        _copy_writable(source, tree, touched)
        for patch in patches:
            _git_apply(tree, patch)
    return [p.name for p in patches]


def refresh_series(
    source: Path, directory: Path | None = None, package: Path | None = None
) -> list[Path]:
    """Normalise the series in ``directory`` (after a rebase or an edit by hand).

    Replays the series (0001 generated from the package) with ``git am`` on a
    copy of the files it touches, resets every commit's author and date to a
    fixed identity and exports it again with ``git format-patch``; 0001's
    message goes back to its ``.msg``, the others to their ``.patch`` files.
    Messages and code are kept, so an up-to-date series changes no byte.
    Returns the files written.
    """
    directory = directory or patches_dir()
    patches = series(directory, package)
    touched = sorted({path for p in patches for path in touched_paths(p)})
    with tempfile.TemporaryDirectory(prefix="kubelet-patch-") as tmp:
        tree = Path(tmp) / "tree"
        _copy_writable(source, tree, touched)
        _git(tree, "init", "-q")
        _git(tree, "add", "-A")
        _git(tree, "commit", "-q", "--allow-empty", "-m", "base")
        _git(tree, "tag", "base")
        for patch in patches:
            _git(tree, "am", "-q", str(patch.resolve()))
            _git(tree, "commit", "-q", "--amend", "--no-edit", "--reset-author", "--allow-empty")
        first_message = _git(tree, "log", "-1", "--format=%B", f"HEAD~{len(patches) - 1}")
        out = Path(tmp) / "out"
        _git(tree, "format-patch", "-q", "--no-signature", "--zero-commit", "-o", str(out), "base")
        exported = sorted(out.iterdir())
        old = _numbered(directory)
        for path in old:
            path.unlink()
        written = [old[0]]
        old[0].write_text(first_message.strip() + "\n")
        for new_patch in exported[1:]:
            shutil.copy2(new_patch, directory / new_patch.name)
            written.append(directory / new_patch.name)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m buildtools.kubelet_patch", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("check", help="check that the series applies to the pinned Kubernetes")
    apply = sub.add_parser("apply", help="write the patched Kubernetes tree to DEST")
    apply.add_argument("dest", type=Path)
    sub.add_parser("refresh", help="normalise the series (identity, dates) after a rebase")
    args = parser.parse_args(argv)
    try:
        src = download_kubernetes()
        if args.command == "refresh":
            written = refresh_series(src.dir)
            print(f"rewrote {len(written)} patches in {patches_dir()}")
            return 0
        if args.command == "check":
            names = check_series(src.dir)
            print(f"{len(names)} patches apply cleanly to k8s.io/kubernetes@{src.version}")
        else:
            names = apply_series(src.dir, args.dest)
            print(f"applied {len(names)} patches to a copy of {src.version} in {args.dest}")
    except PatchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
