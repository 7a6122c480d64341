# Security groups: EKS control plane, EKS nodes (managed node group + HyperPod nodes), EFA, FSx.
# EFA requires a group that allows ALL traffic to and from itself (self-referencing, both ways).
# No rule is open to 0.0.0.0/0 inbound; egress goes to the group itself, the VPC, or HTTPS.

locals {
  # Ports the control plane opens to nodes: HTTPS, kubelet, admission webhooks (KubeRay, cert-manager)
  # and metrics-server. Add a port here when a new webhook listens elsewhere.
  control_plane_to_node_ports = {
    https          = 443
    kubelet        = 10250
    webhooks       = 9443
    metrics_server = 4443
  }
}

resource "aws_security_group" "cluster" {
  # checkov:skip=CKV2_AWS_5: attached in other modules (EKS cluster/launch template, HyperPod vpc_config, FSx) through outputs; checkov does not follow module outputs
  name_prefix = "${var.name}-eks-cluster-"
  description = "EKS control plane (additional group)"
  vpc_id      = var.vpc_id
  tags        = merge(var.tags, { Name = "${var.name}-eks-cluster" })
  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_security_group" "nodes" {
  # checkov:skip=CKV2_AWS_5: attached in other modules (EKS cluster/launch template, HyperPod vpc_config, FSx) through outputs; checkov does not follow module outputs
  name_prefix = "${var.name}-eks-nodes-"
  description = "EKS worker nodes and HyperPod nodes"
  vpc_id      = var.vpc_id
  tags        = merge(var.tags, { Name = "${var.name}-eks-nodes" })
  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_security_group" "efa" {
  # checkov:skip=CKV2_AWS_5: attached in other modules (EKS cluster/launch template, HyperPod vpc_config, FSx) through outputs; checkov does not follow module outputs
  name_prefix = "${var.name}-efa-"
  description = "EFA: all traffic within the group, as EFA requires"
  vpc_id      = var.vpc_id
  tags        = merge(var.tags, { Name = "${var.name}-efa" })
  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_security_group" "fsx" {
  # checkov:skip=CKV2_AWS_5: attached in other modules (EKS cluster/launch template, HyperPod vpc_config, FSx) through outputs; checkov does not follow module outputs
  name_prefix = "${var.name}-fsx-"
  description = "FSx for Lustre: Lustre ports from the nodes and between file servers"
  vpc_id      = var.vpc_id
  tags        = merge(var.tags, { Name = "${var.name}-fsx" })
  lifecycle {
    create_before_destroy = true
  }
}

# ---- control plane <-> nodes
resource "aws_vpc_security_group_ingress_rule" "cluster_from_nodes" {
  security_group_id            = aws_security_group.cluster.id
  description                  = "Kubernetes API from nodes"
  ip_protocol                  = "tcp"
  from_port                    = 443
  to_port                      = 443
  referenced_security_group_id = aws_security_group.nodes.id
}

resource "aws_vpc_security_group_ingress_rule" "cluster_from_admin" {
  for_each = toset(var.api_allowed_cidrs)

  security_group_id = aws_security_group.cluster.id
  description       = "Kubernetes API from an admin network (VPN / bastion)"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_egress_rule" "cluster_to_nodes" {
  for_each = local.control_plane_to_node_ports

  security_group_id            = aws_security_group.cluster.id
  description                  = "Control plane to nodes: ${each.key}"
  ip_protocol                  = "tcp"
  from_port                    = each.value
  to_port                      = each.value
  referenced_security_group_id = aws_security_group.nodes.id
}

resource "aws_vpc_security_group_ingress_rule" "nodes_from_cluster" {
  for_each = local.control_plane_to_node_ports

  security_group_id            = aws_security_group.nodes.id
  description                  = "From the control plane: ${each.key}"
  ip_protocol                  = "tcp"
  from_port                    = each.value
  to_port                      = each.value
  referenced_security_group_id = aws_security_group.cluster.id
}

resource "aws_vpc_security_group_ingress_rule" "nodes_from_nodes" {
  security_group_id            = aws_security_group.nodes.id
  description                  = "Node to node (pods, CoreDNS, Ray GCS/object store)"
  ip_protocol                  = "-1"
  referenced_security_group_id = aws_security_group.nodes.id
}

resource "aws_vpc_security_group_egress_rule" "nodes_to_vpc" {
  security_group_id = aws_security_group.nodes.id
  description       = "Nodes to anything in the VPC (control plane, endpoints, FSx, other nodes)"
  ip_protocol       = "-1"
  cidr_ipv4         = var.vpc_cidr
}

resource "aws_vpc_security_group_egress_rule" "nodes_https_out" {
  security_group_id = aws_security_group.nodes.id
  description       = "HTTPS out through NAT (model hubs, AWS APIs without an endpoint)"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

# ---- EFA: all traffic within the group, in and out (self-referencing)
resource "aws_vpc_security_group_ingress_rule" "efa_self" {
  security_group_id            = aws_security_group.efa.id
  description                  = "EFA: all traffic from members of this group"
  ip_protocol                  = "-1"
  referenced_security_group_id = aws_security_group.efa.id
}

resource "aws_vpc_security_group_egress_rule" "efa_self" {
  security_group_id            = aws_security_group.efa.id
  description                  = "EFA: all traffic to members of this group"
  ip_protocol                  = "-1"
  referenced_security_group_id = aws_security_group.efa.id
}

# ---- FSx for Lustre: 988 and 1018-1023 from nodes and between the file servers
resource "aws_vpc_security_group_ingress_rule" "fsx_from_nodes" {
  for_each = { lnet = [988, 988], server = [1018, 1023] }

  security_group_id            = aws_security_group.fsx.id
  description                  = "Lustre ${each.key} ports from nodes"
  ip_protocol                  = "tcp"
  from_port                    = each.value[0]
  to_port                      = each.value[1]
  referenced_security_group_id = aws_security_group.nodes.id
}

resource "aws_vpc_security_group_ingress_rule" "fsx_self" {
  for_each = { lnet = [988, 988], server = [1018, 1023] }

  security_group_id            = aws_security_group.fsx.id
  description                  = "Lustre ${each.key} ports between file servers"
  ip_protocol                  = "tcp"
  from_port                    = each.value[0]
  to_port                      = each.value[1]
  referenced_security_group_id = aws_security_group.fsx.id
}

resource "aws_vpc_security_group_egress_rule" "fsx_to_vpc" {
  security_group_id = aws_security_group.fsx.id
  description       = "Lustre replies and S3 data repository traffic inside the VPC"
  ip_protocol       = "tcp"
  from_port         = 988
  to_port           = 1023
  cidr_ipv4         = var.vpc_cidr
}
