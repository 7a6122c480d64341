output "cluster_arn" {
  description = "HyperPod cluster ARN (scope of the Airflow role's sagemaker permissions)."
  value       = aws_sagemaker_cluster.this.arn
}

output "cluster_name" {
  description = "HyperPod cluster name."
  value       = aws_sagemaker_cluster.this.cluster_name
}
