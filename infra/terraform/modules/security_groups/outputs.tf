output "cluster_security_group_id" {
  description = "Additional security group of the EKS control plane."
  value       = aws_security_group.cluster.id
}

output "nodes_security_group_id" {
  description = "Security group of the EKS and HyperPod nodes."
  value       = aws_security_group.nodes.id
}

output "efa_security_group_id" {
  description = "Self-referencing EFA security group (attach to HyperPod GPU nodes)."
  value       = aws_security_group.efa.id
}

output "fsx_security_group_id" {
  description = "Security group of the FSx for Lustre file system."
  value       = aws_security_group.fsx.id
}
