"""Does the shipped RBAC allow a Kubernetes API call? (The API server's RBAC rules, evaluated here.)

The shipped Role/ClusterRole are the ones in ``infra/k8s/continuous-learning.yaml`` (the Helm chart
rendered with its default values; tests/infra checks the two agree). A call is what the emulator records
(``emulator.rbac_call``): verb, API group, resource, subresource, namespace, name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.conftest import REPO

SHIPPED = REPO / "infra" / "k8s" / "continuous-learning.yaml"
#: Discovery paths every authenticated identity may read (Kubernetes' ``system:discovery`` ClusterRole).
DISCOVERY = ("/api", "/apis", "/version", "/healthz", "/livez", "/readyz", "/openapi")


def shipped_rules(path: Path = SHIPPED) -> list[tuple[str | None, dict[str, Any]]]:
    """(namespace, rule) of each Role (its namespace) and ClusterRole (None: every namespace) in ``path``."""
    rules = []
    for doc in yaml.safe_load_all(path.read_text()):
        if not doc or doc.get("kind") not in ("Role", "ClusterRole"):
            continue
        namespace = doc["metadata"].get("namespace") if doc["kind"] == "Role" else None
        rules += [(namespace, rule) for rule in doc.get("rules") or []]
    return rules


def _matches(rule: dict[str, Any], call: dict[str, Any]) -> bool:
    if call.get("non_resource"):
        urls = rule.get("nonResourceURLs") or []
        return any(u == call["path"] or (u.endswith("*") and call["path"].startswith(u[:-1])) for u in urls) and (
            call["verb"] in rule.get("verbs", []) or "*" in rule.get("verbs", [])
        )  # fmt: skip
    resource = call["resource"] + (f"/{call['subresource']}" if call.get("subresource") else "")
    groups, resources, verbs = rule.get("apiGroups", []), rule.get("resources", []), rule.get("verbs", [])
    names = rule.get("resourceNames")
    return (
        (call["group"] in groups or "*" in groups)
        and (resource in resources or "*" in resources)
        and (call["verb"] in verbs or "*" in verbs)
        and (not names or call.get("name") in names)
    )


def allowed(call: dict[str, Any], rules: list[tuple[str | None, dict[str, Any]]]) -> bool:
    if call.get("non_resource") and call["verb"] == "get" and call["path"].startswith(DISCOVERY):
        return True
    return any(
        (namespace is None or namespace == call.get("namespace")) and _matches(rule, call)
        for namespace, rule in rules
    )


def describe(call: dict[str, Any]) -> str:
    if call.get("non_resource"):
        return f"{call['verb']} {call['path']}"
    resource = call["resource"] + (f"/{call['subresource']}" if call.get("subresource") else "")
    group = call["group"] or "core"
    return f"{call['verb']} {resource} ({group}) in namespace {call.get('namespace') or '<cluster>'}"


def denied(
    calls: list[dict[str, Any]], rules: list[tuple[str | None, dict[str, Any]]] | None = None
) -> list[str]:
    """Each distinct call the rules (default: the shipped ones) do not allow, described."""
    rules = shipped_rules() if rules is None else rules
    return sorted({describe(c) for c in calls if not allowed(c, rules)})
