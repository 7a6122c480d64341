"""Structural security checks of the Terraform code, parsed with python-hcl2 (no providers needed).

Usage: python hcl_checks.py TERRAFORM_DIR
Prints a JSON list of findings ({"rule", "file", "address", "message"}) and exits 1 if there are any.
Rules (each is what it says, no more: values computed at plan time are not evaluated):
  s3-encryption     every aws_s3_bucket has an SSE configuration; SSE-KMS unless listed in SSE_S3_ALLOWED
  s3-versioning     every aws_s3_bucket has versioning with status "Enabled"
  s3-private        every aws_s3_bucket has a public access block with all four flags true
  s3-tls-only       every aws_s3_bucket has a bucket policy whose document denies aws:SecureTransport=false
  sg-open-ingress   no ingress rule from 0.0.0.0/0 or ::/0
  iam-star          no Allow statement with action "*"; an Allow on resource "*" only for actions that
                    AWS does not scope to resources (NON_RESOURCE_ACTIONS); key policies are exempt
  ecr               repositories are IMMUTABLE, scan on push, KMS-encrypted
  logs              log groups have kms_key_id and retention_in_days
  eks               clusters have a private endpoint, secrets encryption and control-plane logs
  variables         every variable has a description and a type; every output a description
  module-version    registry modules carry an exact version (x.y.z)
Runs in the .tools/infra-py venv (python-hcl2).
"""

from __future__ import annotations

import json
import re
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import hcl2

SSE_S3_ALLOWED = {"access_logs"}  # S3 server access logs cannot be delivered to SSE-KMS buckets
NON_RESOURCE_ACTIONS = re.compile(
    r"^(ec2:Describe\w*|ecr:GetAuthorizationToken|sagemaker:List\w*|sts:GetCallerIdentity|logs:Describe\w*)$"
)
OPEN_CIDRS = {"0.0.0.0/0", "::/0"}


def unq(value: Any) -> Any:
    """python-hcl2 keeps the quotes of string literals and block labels: strip them, recursively."""
    if isinstance(value, str):
        if len(value) >= 2 and value[0] == value[-1] == '"':
            return value[1:-1]
        return value
    if isinstance(value, list):
        return [unq(v) for v in value]
    if isinstance(value, dict):
        return {unq(k): unq(v) for k, v in value.items() if k not in ("__is_block__", "__comments__")}
    return value


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


class Module:
    def __init__(self, directory: Path):
        self.dir = directory
        self.resources: dict[str, dict[str, tuple[Path, dict[str, Any]]]] = defaultdict(dict)
        self.data: dict[str, dict[str, tuple[Path, dict[str, Any]]]] = defaultdict(dict)
        self.variables: dict[str, tuple[Path, dict[str, Any]]] = {}
        self.outputs: dict[str, tuple[Path, dict[str, Any]]] = {}
        self.modules: dict[str, tuple[Path, dict[str, Any]]] = {}
        for path in sorted(directory.glob("*.tf")):
            with path.open() as handle:
                doc = unq(hcl2.load(handle))
            for block in doc.get("resource", []):
                for rtype, named in block.items():
                    for name, body in named.items():
                        self.resources[rtype][name] = (path, body)
            for block in doc.get("data", []):
                for dtype, named in block.items():
                    for name, body in named.items():
                        self.data[dtype][name] = (path, body)
            for block in doc.get("variable", []):
                for name, body in block.items():
                    self.variables[name] = (path, body)
            for block in doc.get("output", []):
                for name, body in block.items():
                    self.outputs[name] = (path, body)
            for block in doc.get("module", []):
                for name, body in block.items():
                    self.modules[name] = (path, body)

    def companions(self, rtype: str, bucket: str) -> list[dict[str, Any]]:
        pattern = re.compile(rf"aws_s3_bucket\.{re.escape(bucket)}\b")
        return [
            body
            for _, body in self.resources.get(rtype, {}).values()
            if pattern.search(str(body.get("bucket", "")))
        ]


class Checker:
    def __init__(self, root: Path):
        self.root = root
        self.findings: list[dict[str, str]] = []

    def add(self, rule: str, path: Path, address: str, message: str) -> None:
        self.findings.append(
            {"rule": rule, "file": str(path.relative_to(self.root)), "address": address, "message": message}
        )

    def run(self) -> list[dict[str, str]]:
        dirs = sorted({p.parent for p in self.root.rglob("*.tf") if ".terraform" not in p.parts})
        for directory in dirs:
            module = Module(directory)
            self.check_s3(module)
            self.check_security_groups(module)
            self.check_iam(module)
            self.check_ecr(module)
            self.check_logs(module)
            self.check_eks(module)
            self.check_variables(module)
            self.check_module_versions(module)
        return self.findings

    # ---------------------------------------------------------------------------------- S3
    def check_s3(self, m: Module) -> None:
        for name, (path, _) in m.resources.get("aws_s3_bucket", {}).items():
            addr = f"aws_s3_bucket.{name}"
            sse = m.companions("aws_s3_bucket_server_side_encryption_configuration", name)
            algos = [
                d.get("sse_algorithm")
                for body in sse
                for rule in as_list(body.get("rule"))
                for d in as_list(rule.get("apply_server_side_encryption_by_default"))
            ]
            if not algos:
                self.add("s3-encryption", path, addr, "no server-side encryption configuration")
            elif any(a != "aws:kms" for a in algos) and name not in SSE_S3_ALLOWED:
                self.add("s3-encryption", path, addr, f"encryption is {algos}, not aws:kms")

            versioning = m.companions("aws_s3_bucket_versioning", name)
            statuses = [
                c.get("status") for b in versioning for c in as_list(b.get("versioning_configuration"))
            ]
            if statuses != ["Enabled"]:
                self.add("s3-versioning", path, addr, f"versioning status {statuses or 'missing'}")

            pab = m.companions("aws_s3_bucket_public_access_block", name)
            flags = (
                "block_public_acls",
                "block_public_policy",
                "ignore_public_acls",
                "restrict_public_buckets",
            )
            if not pab or not all(pab[0].get(f) is True for f in flags):
                self.add("s3-private", path, addr, "public access block missing or not all four flags true")

            if not any(
                self.denies_insecure_transport(m, p) for p in m.companions("aws_s3_bucket_policy", name)
            ):
                self.add("s3-tls-only", path, addr, "no bucket policy denying aws:SecureTransport = false")

    @staticmethod
    def denies_insecure_transport(m: Module, policy: dict[str, Any]) -> bool:
        ref = re.search(r"data\.aws_iam_policy_document\.(\w+)", str(policy.get("policy", "")))
        if not ref or ref.group(1) not in m.data.get("aws_iam_policy_document", {}):
            return False
        _, doc = m.data["aws_iam_policy_document"][ref.group(1)]
        for st in as_list(doc.get("statement")):
            if st.get("effect") != "Deny" or "s3:*" not in as_list(st.get("actions")):
                continue
            for cond in as_list(st.get("condition")):
                if (
                    cond.get("test") == "Bool"
                    and cond.get("variable") == "aws:SecureTransport"
                    and as_list(cond.get("values")) == ["false"]
                ):
                    return True
        return False

    # ---------------------------------------------------------------------------------- SG
    def check_security_groups(self, m: Module) -> None:
        for name, (path, body) in m.resources.get("aws_vpc_security_group_ingress_rule", {}).items():
            if body.get("cidr_ipv4") in OPEN_CIDRS or body.get("cidr_ipv6") in OPEN_CIDRS:
                self.add(
                    "sg-open-ingress",
                    path,
                    f"aws_vpc_security_group_ingress_rule.{name}",
                    "ingress from anywhere",
                )
        for name, (path, body) in m.resources.get("aws_security_group_rule", {}).items():
            cidrs = set(as_list(body.get("cidr_blocks"))) | set(as_list(body.get("ipv6_cidr_blocks")))
            if body.get("type") == "ingress" and cidrs & OPEN_CIDRS:
                self.add("sg-open-ingress", path, f"aws_security_group_rule.{name}", "ingress from anywhere")
        for name, (path, body) in m.resources.get("aws_security_group", {}).items():
            for rule in as_list(body.get("ingress")):
                cidrs = set(as_list(rule.get("cidr_blocks"))) | set(as_list(rule.get("ipv6_cidr_blocks")))
                if cidrs & OPEN_CIDRS:
                    self.add(
                        "sg-open-ingress", path, f"aws_security_group.{name}", "inline ingress from anywhere"
                    )

    # ---------------------------------------------------------------------------------- IAM
    def check_iam(self, m: Module) -> None:
        key_policy_docs = {
            ref
            for _, body in m.resources.get("aws_kms_key", {}).values()
            for ref in re.findall(r"data\.aws_iam_policy_document\.(\w+)", str(body.get("policy", "")))
        }
        for name, (path, doc) in m.data.get("aws_iam_policy_document", {}).items():
            if name in key_policy_docs:
                continue
            for st in as_list(doc.get("statement")):
                if st.get("effect", "Allow") != "Allow":
                    continue
                actions = [str(a) for a in as_list(st.get("actions"))]
                resources = [str(r) for r in as_list(st.get("resources"))]
                addr = f"data.aws_iam_policy_document.{name}"
                if "*" in actions:
                    self.add("iam-star", path, addr, 'Allow with action "*"')
                if "*" in resources:
                    scoped = [a for a in actions if not NON_RESOURCE_ACTIONS.match(a)]
                    if scoped:
                        self.add(
                            "iam-star",
                            path,
                            addr,
                            f'Allow on resource "*" for resource-scoped actions {scoped}',
                        )
        # Inline JSON policies (jsonencode) are checked textually for the worst case.
        for rtype in ("aws_iam_policy", "aws_iam_role_policy"):
            for name, (path, body) in m.resources.get(rtype, {}).items():
                text = str(body.get("policy", ""))
                if re.search(r"Action\s*=\s*\"\*\"", text) or re.search(r"Action\s*=\s*\[\s*\"\*\"", text):
                    self.add("iam-star", path, f"{rtype}.{name}", 'inline policy with Action "*"')

    # ---------------------------------------------------------------------------------- ECR, logs, EKS
    def check_ecr(self, m: Module) -> None:
        for name, (path, body) in m.resources.get("aws_ecr_repository", {}).items():
            addr = f"aws_ecr_repository.{name}"
            if body.get("image_tag_mutability") != "IMMUTABLE":
                self.add("ecr", path, addr, "tags are not IMMUTABLE")
            scans = [s.get("scan_on_push") for s in as_list(body.get("image_scanning_configuration"))]
            if scans != [True]:
                self.add("ecr", path, addr, "scan_on_push is not true")
            enc = [e.get("encryption_type") for e in as_list(body.get("encryption_configuration"))]
            if enc != ["KMS"]:
                self.add("ecr", path, addr, "not KMS-encrypted")

    def check_logs(self, m: Module) -> None:
        for name, (path, body) in m.resources.get("aws_cloudwatch_log_group", {}).items():
            if not body.get("kms_key_id") or not body.get("retention_in_days"):
                self.add(
                    "logs", path, f"aws_cloudwatch_log_group.{name}", "needs kms_key_id and retention_in_days"
                )

    def check_eks(self, m: Module) -> None:
        for name, (path, body) in m.resources.get("aws_eks_cluster", {}).items():
            addr = f"aws_eks_cluster.{name}"
            vpc = (as_list(body.get("vpc_config")) or [{}])[0]
            if vpc.get("endpoint_private_access") is not True:
                self.add("eks", path, addr, "private endpoint not enabled")
            if not any(
                "secrets" in as_list(e.get("resources")) for e in as_list(body.get("encryption_config"))
            ):
                self.add("eks", path, addr, "secrets are not envelope-encrypted")
            if len(as_list(body.get("enabled_cluster_log_types"))) < 5:
                self.add("eks", path, addr, "not all control-plane log types enabled")

    # ---------------------------------------------------------------------------------- hygiene
    def check_variables(self, m: Module) -> None:
        for name, (path, body) in m.variables.items():
            if not str(body.get("description", "")).strip():
                self.add("variables", path, f"var.{name}", "no description")
            if "type" not in body:
                self.add("variables", path, f"var.{name}", "no type")
        for name, (path, body) in m.outputs.items():
            if not str(body.get("description", "")).strip():
                self.add("variables", path, f"output.{name}", "no description")

    def check_module_versions(self, m: Module) -> None:
        for name, (path, body) in m.modules.items():
            source = str(body.get("source", ""))
            if source.startswith((".", "/")):
                continue
            if not re.fullmatch(r"\d+\.\d+\.\d+", str(body.get("version", ""))):
                self.add(
                    "module-version", path, f"module.{name}", f"{source} is not pinned to an exact version"
                )


def main(argv: list[str]) -> int:
    findings = Checker(Path(argv[1]).resolve()).run()
    print(json.dumps(findings, indent=1))
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
