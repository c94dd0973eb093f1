"""The offline Kubernetes bundle: pinned binaries, the patched kubelet, control-plane images.

One job per module: ``recipes`` (what gets built, each part's recipe and key,
the plan), ``cache`` (where entries live, and the build lock), ``builders``
(each part from its source, through ``buildtools.gotool``), ``oci`` (the image
archives), ``bundle`` (assembly, pruning, the command line). ``bundle``'s
docstring says what the bundle holds.
"""

from buildtools.artifacts.bundle import build, main
from buildtools.artifacts.cache import bundle_path
from buildtools.artifacts.recipes import (
    KUBE_TAGS,
    MISSING_IMAGES,
    NETPERF_IMAGE,
    ArtifactError,
    Bundle,
    Plan,
    expected_images,
    kubelet_version,
    plan,
)

__all__ = [
    "KUBE_TAGS",
    "MISSING_IMAGES",
    "NETPERF_IMAGE",
    "ArtifactError",
    "Bundle",
    "Plan",
    "build",
    "bundle_path",
    "expected_images",
    "kubelet_version",
    "main",
    "plan",
]
