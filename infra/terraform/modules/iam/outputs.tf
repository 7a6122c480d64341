output "hyperpod_execution_role_arn" {
  description = "HyperPod instance execution role."
  value       = aws_iam_role.hyperpod.arn
}

output "ray_role_arn" {
  description = "Role of the Ray pods (EKS Pod Identity)."
  value       = aws_iam_role.ray.arn
}

output "airflow_role_arn" {
  description = "Role of Airflow (Pod Identity on EKS, or the MWAA execution role)."
  value       = aws_iam_role.airflow.arn
}

output "airflow_kubernetes_group" {
  description = "Kubernetes group of the Airflow role's EKS access entry (the chart's rbac.airflowGroups), or null."
  value       = var.airflow_kubernetes_group
}
