variable "cluster_name" {
  description = "HyperPod cluster name (the pipeline's hyperpod.cluster_name)."
  type        = string
}

variable "eks_cluster_arn" {
  description = "ARN of the EKS cluster that orchestrates the HyperPod nodes."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnet(s) for the nodes; one subnet in the AZ of your GPU capacity or training plan."
  type        = list(string)
}

variable "security_group_ids" {
  description = "Security groups for the nodes: the EKS nodes group and the self-referencing EFA group."
  type        = list(string)
}

variable "execution_role_arn" {
  description = "IAM role the HyperPod instances assume (iam module output hyperpod_execution_role_arn)."
  type        = string
}

variable "lifecycle_bucket" {
  description = "S3 bucket holding the lifecycle scripts."
  type        = string
}

variable "lifecycle_prefix" {
  description = "Key prefix of the lifecycle scripts in lifecycle_bucket (no leading or trailing slash)."
  type        = string
  default     = "hyperpod/lifecycle"
}

variable "s3_kms_key_arn" {
  description = "KMS key ARN used to encrypt the uploaded lifecycle scripts."
  type        = string
}

variable "node_recovery" {
  description = "\"Automatic\" replaces or reboots faulty nodes; \"None\" only labels them."
  type        = string
  default     = "Automatic"

  validation {
    condition     = contains(["Automatic", "None"], var.node_recovery)
    error_message = "node_recovery is Automatic or None."
  }
}

variable "instance_groups" {
  description = <<-EOT
    Instance groups by name (the node label sagemaker.amazonaws.com/instance-group-name).
    instance_count is the size at creation: the pipeline scales the GPU group itself afterwards.
    training_plan_arn reserves capacity through a SageMaker training plan (null: on-demand).
    deep_health_checks: InstanceStress and/or InstanceConnectivity (run when nodes start).
    At most three groups (ignore_changes lists three indexes).
  EOT
  type = map(object({
    instance_type      = string
    instance_count     = number
    threads_per_core   = optional(number, 1)
    ebs_volume_gib     = optional(number, 500)
    training_plan_arn  = optional(string)
    deep_health_checks = optional(list(string), ["InstanceStress", "InstanceConnectivity"])
  }))
  default = {
    "gpu-workers" = {
      instance_type  = "ml.p5.48xlarge"
      instance_count = 0
    }
  }

  validation {
    condition     = length(var.instance_groups) >= 1 && length(var.instance_groups) <= 3
    error_message = "Give one to three instance groups."
  }
}

variable "tags" {
  description = "Tags applied to every resource."
  type        = map(string)
  default     = {}
}
