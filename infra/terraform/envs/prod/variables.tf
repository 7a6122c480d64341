variable "region" {
  description = "AWS region of the deployment (one with HyperPod and your GPU instance type)."
  type        = string
}

variable "name" {
  description = "Name prefix for every resource (also the EKS cluster name)."
  type        = string
  default     = "continuous-learning"
}

variable "azs" {
  description = "At least two availability zones; the first hosts the HyperPod nodes and FSx (put your GPU capacity's AZ first)."
  type        = list(string)
}

variable "vpc_cidr" {
  description = "VPC CIDR block."
  type        = string
  default     = "10.20.0.0/16"
}

variable "single_nat_gateway" {
  description = "One NAT gateway instead of one per AZ (saves about 32 USD/month per AZ, loses AZ independence)."
  type        = bool
  default     = false
}

variable "api_allowed_cidrs" {
  description = "Private CIDRs (VPN, bastion, CI) allowed to reach the private Kubernetes API."
  type        = list(string)
  default     = []
}

variable "kubernetes_version" {
  description = "EKS Kubernetes version."
  type        = string
  default     = "1.32"
}

variable "eks_endpoint_public_access" {
  description = "Also expose the Kubernetes API publicly (restricted to eks_public_access_cidrs)."
  type        = bool
  default     = false
}

variable "eks_public_access_cidrs" {
  description = "CIDRs for the public API endpoint when it is enabled."
  type        = list(string)
  default     = []
}

variable "eks_addon_versions" {
  description = "Pinned EKS add-on versions by add-on name."
  type        = map(string)
  default     = {}
}

variable "eks_admin_principal_arns" {
  description = "IAM role ARNs that get cluster-admin (platform engineers, the CI deploy role)."
  type        = list(string)
  default     = []
}

variable "hyperpod_cluster_name" {
  description = "HyperPod cluster name; must equal hyperpod.cluster_name in the pipeline's prod config."
  type        = string
  default     = "continuous-learning-hyperpod"
}

variable "hyperpod_instance_groups" {
  description = "HyperPod instance groups (see modules/hyperpod). The key of the GPU group must equal hyperpod.instance_group in the prod config."
  type = map(object({
    instance_type      = string
    instance_count     = number
    threads_per_core   = optional(number, 1)
    ebs_volume_gib     = optional(number, 500)
    training_plan_arn  = optional(string)
    deep_health_checks = optional(list(string), ["InstanceStress", "InstanceConnectivity"])
  }))
  default = {
    "gpu-workers" = { instance_type = "ml.p5.48xlarge", instance_count = 0 }
  }
}

variable "fsx_enabled" {
  description = "Create FSx for Lustre linked to the datasets bucket."
  type        = bool
  default     = true
}

variable "fsx_storage_capacity_gib" {
  description = "FSx for Lustre capacity in GiB."
  type        = number
  default     = 1200
}

variable "trainer_repository_name" {
  description = "ECR repository of the trainer image."
  type        = string
  default     = "continuous-learning-trainer"
}

variable "s3_prefix" {
  description = "Prefix of the pipeline's data inside each bucket."
  type        = string
  default     = "continuous-learning/"
}

variable "model_package_group_name" {
  description = "SageMaker Model Registry group (registry.sagemaker_model_package_group)."
  type        = string
  default     = "continuous-learning-agent"
}

variable "training_namespace" {
  description = "Kubernetes namespace of the training jobs (kuberay.namespace)."
  type        = string
  default     = "continuous-learning"
}

variable "airflow_kubernetes_group" {
  description = "Kubernetes group Airflow's IAM role is mapped to (EKS access entry) = the chart's rbac.airflowGroups."
  type        = string
  default     = "continuous-learning-airflow"
}

variable "log_retention_days" {
  description = "CloudWatch Logs retention in days."
  type        = number
  default     = 365
}

variable "tags" {
  description = "Extra tags for every resource."
  type        = map(string)
  default     = {}
}
