"""The built-in policy pack's rules, and waivers.

The Rego policies in `pipeline/policies/` (package `gitops_pipeline`) ship with the package
and apply to every repository; a repository's own `policy/` adds to them, and
`policy.builtin: false` turns them off. Each built-in rule has a stable id, a title, a
severity (`deny` fails, `warn` reports) and a one-line remediation; a message is matched to
its rule by its problem text, which the Rego's own unit tests keep stable.

A finding is waived by an annotation on the resource (`gitops-pipeline.dev/waive: "GP004,GP008"`
with `gitops-pipeline.dev/waive-reason`) or by `policy.waivers` in pipeline.yaml (rule,
resource kind and name, optional environment and expiry date, a reason always). Waived
findings stay in every report, marked waived, with the reason.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import Waiver

BUILTIN_NAMESPACE = "gitops_pipeline"
BUILTIN_POLICIES = Path(__file__).resolve().parent / "policies"
WAIVE_ANNOTATION = "gitops-pipeline.dev/waive"
WAIVE_REASON_ANNOTATION = "gitops-pipeline.dev/waive-reason"


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    severity: str  # "deny" fails the check, "warn" reports
    remediation: str
    problem: re.Pattern[str]  # matches the problem part of the policy's message


def _rule(rule_id: str, severity: str, title: str, remediation: str, problem: str) -> Rule:
    return Rule(rule_id, title, severity, remediation, re.compile(problem))


RULES: tuple[Rule, ...] = (
    _rule(
        "GP001",
        "deny",
        "No host namespaces",
        "remove hostNetwork, hostPID and hostIPC from the pod spec",
        r"^must not set host(Network|PID|IPC): true$",
    ),
    _rule(
        "GP002",
        "deny",
        "No hostPath volumes",
        "use a PersistentVolumeClaim, a ConfigMap or an emptyDir instead of hostPath",
        r"^volume '.*' must not use hostPath$",
    ),
    _rule(
        "GP003",
        "deny",
        "Every container has an image",
        "set the container's image",
        r"^has no image$",
    ),
    _rule(
        "GP004",
        "deny",
        "Images are pinned by tag or digest",
        "add a version tag or a digest to the image reference",
        r"^image '.*' must have an explicit tag or digest$",
    ),
    _rule(
        "GP005",
        "deny",
        "No 'latest' tag",
        "pin a released version (or a digest) instead of latest",
        r"^image '.*' must not use the 'latest' tag$",
    ),
    _rule(
        "GP006",
        "warn",
        "Workloads carry app.kubernetes.io/name",
        "add the label app.kubernetes.io/name to metadata.labels",
        r"^must have label 'app\.kubernetes\.io/name' in metadata\.labels$",
    ),
    _rule(
        "GP007",
        "warn",
        "Pod templates carry app.kubernetes.io/name",
        "add the label app.kubernetes.io/name to the pod template's labels",
        r"^must have label 'app\.kubernetes\.io/name' in spec\..*$",
    ),
    _rule(
        "GP008",
        "deny",
        "Long-running containers declare probes",
        "define readinessProbe and livenessProbe for each container",
        r"^must define a (readinessProbe|livenessProbe)$",
    ),
    _rule(
        "GP009",
        "deny",
        "Containers declare resources",
        "set resources.requests.cpu, resources.requests.memory and resources.limits.memory",
        r"^must set a (CPU request|memory request|memory limit) .*$",
    ),
    _rule(
        "GP010",
        "deny",
        "No plaintext Secrets",
        "seal the values into a SealedSecret (bitnami.com/v1alpha1) and commit that instead",
        r"^must not contain plaintext .*$",
    ),
    _rule(
        "GP011",
        "deny",
        "No privileged containers",
        "remove securityContext.privileged: true",
        r"^must not be privileged .*$",
    ),
    _rule(
        "GP012",
        "deny",
        "No privilege escalation",
        "set securityContext.allowPrivilegeEscalation: false on each container",
        r"^must set securityContext\.allowPrivilegeEscalation: false$",
    ),
    _rule(
        "GP013",
        "deny",
        "Containers run as non-root",
        "set securityContext.runAsNonRoot: true on the pod or each container",
        r"^must set securityContext\.runAsNonRoot: true .*$",
    ),
)
RULES_BY_ID: Mapping[str, Rule] = {rule.id: rule for rule in RULES}


def builtin_rule(problem: str) -> Rule | None:
    """The built-in rule a problem text (message without `<Kind>/<name>: container 'c'`) is."""
    matching = [rule for rule in RULES if rule.problem.match(problem)]
    return matching[0] if len(matching) == 1 else None


@dataclass(frozen=True)
class Waived:
    reason: str
    source: str  # "annotation" or "pipeline.yaml:<line>"


def annotation_waiver(annotations: Mapping[str, object], rule_id: str) -> Waived | str | None:
    """The resource's own waiver of a rule; a message when it names the rule without a reason."""
    listed = annotations.get(WAIVE_ANNOTATION)
    if not isinstance(listed, str):
        return None
    if rule_id not in {part.strip() for part in listed.split(",")}:
        return None
    reason = annotations.get(WAIVE_REASON_ANNOTATION)
    if not isinstance(reason, str) or not reason.strip():
        return (
            f"the waiver of {rule_id} in annotation {WAIVE_ANNOTATION} has no reason: "
            f"add {WAIVE_REASON_ANNOTATION}"
        )
    return Waived(reason.strip(), "annotation")


def config_waiver(
    waivers: Sequence[Waiver], rule_id: str, resource: str, environment: str | None, today: dt.date
) -> Waived | None:
    for waiver in waivers:
        if waiver.rule != rule_id or f"{waiver.kind}/{waiver.name}" != resource:
            continue
        if waiver.environment and waiver.environment != environment:
            continue
        if waiver.expires is not None and waiver.expires < today:
            continue  # reported once, by expired_waivers
        return Waived(waiver.reason, f"pipeline.yaml:{waiver.line}")
    return None


def expired_waivers(waivers: Sequence[Waiver], today: dt.date) -> list[Waiver]:
    return [w for w in waivers if w.expires is not None and w.expires < today]


def catalog_text() -> str:
    """The built-in rules, one a line: id, severity, title, then the remediation."""
    width = max(len(rule.title) for rule in RULES)
    return "".join(
        f"{rule.id}  {rule.severity:4s}  {rule.title:{width}s}  {rule.remediation}\n"
        for rule in RULES
    )
