variable "name" {
  description = "Name prefix of the roles."
  type        = string
}

variable "bucket_names" {
  description = "Bucket key => bucket name (storage module output bucket_names); needs logs, datasets, checkpoints, models, lifecycle."
  type        = map(string)
}

variable "s3_prefix" {
  description = "Key prefix that holds the pipeline's data in every bucket (the storage root of the prod config), e.g. \"continuous-learning/\"."
  type        = string
  default     = "continuous-learning/"
}

variable "raw_logs_prefix" {
  description = "Prefix in the logs bucket where agent platforms write raw interaction logs (read-only for Airflow)."
  type        = string
  default     = "raw/"
}

variable "s3_kms_key_arn" {
  description = "KMS key of the data buckets."
  type        = string
}

variable "kms_key_arns" {
  description = "KMS keys the HyperPod instances may decrypt with (S3 lifecycle scripts, ECR images, EBS)."
  type        = list(string)
}

variable "ecr_repository_arn" {
  description = "Trainer image repository ARN."
  type        = string
}

variable "eks_cluster_name" {
  description = "EKS cluster name (pod identity associations)."
  type        = string
}

variable "eks_cluster_arn" {
  description = "EKS cluster ARN."
  type        = string
}

variable "hyperpod_cluster_arn" {
  description = "HyperPod cluster ARN (hyperpod module output; it ends in a generated id, so it cannot be written by name)."
  type        = string
}

variable "hyperpod_subnet_ids" {
  description = "Subnets of the HyperPod nodes (ENI permissions of the execution role)."
  type        = list(string)
}

variable "hyperpod_security_group_ids" {
  description = "Security groups of the HyperPod nodes (ENI permissions of the execution role)."
  type        = list(string)
}

variable "model_package_group_name" {
  description = "SageMaker Model Registry group the pipeline registers candidates in (registry.sagemaker_model_package_group)."
  type        = string
  default     = "continuous-learning-agent"
}

variable "training_namespace" {
  description = "Kubernetes namespace of the Ray pods."
  type        = string
  default     = "continuous-learning"
}

variable "ray_service_account" {
  description = "Service account of the Ray head and worker pods."
  type        = string
  default     = "ray-training"
}

variable "airflow_on_mwaa" {
  description = "true: the Airflow role is an MWAA execution role; false (default): a Pod Identity role for Airflow on EKS."
  type        = bool
  default     = false
}

variable "airflow_namespace" {
  description = "Namespace of the Airflow Helm release."
  type        = string
  default     = "airflow"
}

variable "airflow_service_accounts" {
  description = "Airflow service accounts that run DAG code (workers, triggerer, scheduler) and get the Airflow role."
  type        = list(string)
  default     = ["airflow-worker", "airflow-triggerer", "airflow-scheduler"]
}

variable "tags" {
  description = "Tags applied to every resource."
  type        = map(string)
  default     = {}
}

variable "airflow_kubernetes_group" {
  description = "Kubernetes group that an EKS access entry maps the Airflow role to; the continuous-learning chart's RoleBinding binds it (rbac.airflowGroups). null: no access entry (Airflow then needs another way in, e.g. a service-account token connection)."
  type        = string
  default     = "continuous-learning-airflow"
}

variable "ray_log_group_arn" {
  description = "CloudWatch Logs group the Ray pods' log shipper writes to (the observability module's ray group); null: none."
  type        = string
  default     = null
}
