"""The extended resource name check, shared by the node agent and the controller's config."""

from __future__ import annotations

import re

_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS_SUBDOMAIN = re.compile(rf"^{_DNS_LABEL}(\.{_DNS_LABEL})*$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ValueError(message)


def validate_extended_resource_name(name: str) -> None:
    """Reject what the API server would reject as an extended resource name (ValueError).

    Mirrors k8s.io/kubernetes pkg/apis/core/helper IsExtendedResourceName:
    a domain-prefixed name outside ``kubernetes.io``, and ``requests.<name>``
    must be a valid qualified name (that is how quota refers to it).
    """
    _check(
        "/" in name,
        f"{name!r} is not an extended resource name: it needs a domain prefix, "
        "like example.com/SLO",
    )
    domain, _, local = name.partition("/")
    _check(
        len(domain) <= 253 and bool(_DNS_SUBDOMAIN.match(domain)),
        f"{name!r}: prefix {domain!r} is not a DNS subdomain (lowercase, dots, dashes)",
    )
    _check(
        domain != "kubernetes.io" and not domain.endswith(".kubernetes.io"),
        f"{name!r}: the kubernetes.io domain is reserved for native resources",
    )
    _check(
        0 < len(local) <= 63 and bool(_QUALIFIED_NAME.match(local)),
        f"{name!r}: name part {local!r} must be 1-63 alphanumerics, '-', '_' or '.', "
        "starting and ending alphanumeric",
    )
    _check(len(f"requests.{name}") <= 253, f"{name!r} is too long for a resource quota key")
