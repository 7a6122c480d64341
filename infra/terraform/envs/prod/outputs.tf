output "eks_cluster_name" {
  description = "EKS cluster name (aws eks update-kubeconfig --name ...)."
  value       = module.eks.cluster_name
}

output "hyperpod_cluster_arn" {
  description = "HyperPod cluster ARN."
  value       = module.hyperpod.cluster_arn
}

output "bucket_names" {
  description = "Bucket names by purpose."
  value       = module.storage.bucket_names
}

output "trainer_repository_url" {
  description = "Push the trainer image here."
  value       = module.ecr.repository_url
}

output "fsx" {
  description = "FSx for Lustre id, DNS name and mount name for the chart's fsx.* values."
  value = {
    id         = module.storage.fsx_file_system_id
    dns_name   = module.storage.fsx_dns_name
    mount_name = module.storage.fsx_mount_name
  }
}

output "role_arns" {
  description = "IAM roles: HyperPod execution, Ray pods, Airflow."
  value = {
    hyperpod = module.iam.hyperpod_execution_role_arn
    ray      = module.iam.ray_role_arn
    airflow  = module.iam.airflow_role_arn
  }
}
