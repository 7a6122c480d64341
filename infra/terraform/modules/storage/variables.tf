variable "name" {
  description = "Name prefix; bucket names are <name>-<bucket>-<account id>."
  type        = string
}

variable "buckets" {
  description = <<-EOT
    Buckets to create and their lifecycle. Keys "datasets" and "lifecycle" are required (FSx links
    "datasets"; HyperPod reads its lifecycle scripts from "lifecycle"). Days set to null are skipped.
  EOT
  type = map(object({
    infrequent_access_after_days = optional(number)
    glacier_ir_after_days        = optional(number)
    expire_after_days            = optional(number)
    noncurrent_expire_after_days = optional(number, 30)
  }))
  default = {
    logs        = { infrequent_access_after_days = 30, glacier_ir_after_days = 90, expire_after_days = 730 }
    datasets    = { infrequent_access_after_days = 60, noncurrent_expire_after_days = 30 }
    checkpoints = { expire_after_days = 30, noncurrent_expire_after_days = 7 }
    models      = { noncurrent_expire_after_days = 180 }
    lifecycle   = { noncurrent_expire_after_days = 30 }
  }

  validation {
    condition     = contains(keys(var.buckets), "datasets") && contains(keys(var.buckets), "lifecycle")
    error_message = "buckets must contain \"datasets\" and \"lifecycle\"."
  }
}

variable "kms_key_arn" {
  description = "KMS key ARN for SSE-KMS on the data buckets."
  type        = string
}

variable "force_destroy" {
  description = "Allow terraform destroy to delete non-empty buckets. Keep false in production."
  type        = bool
  default     = false
}

variable "access_log_retention_days" {
  description = "Days to keep S3 server access logs."
  type        = number
  default     = 365
}

variable "fsx_enabled" {
  description = "Create the FSx for Lustre file system linked to the datasets bucket."
  type        = bool
  default     = true
}

variable "fsx_storage_capacity_gib" {
  description = "FSx for Lustre capacity in GiB (PERSISTENT_2: 1200, 2400, then steps of 2400)."
  type        = number
  default     = 1200
}

variable "fsx_throughput_mb_per_tib" {
  description = "FSx PERSISTENT_2 throughput per TiB (125, 250, 500 or 1000 MB/s/TiB)."
  type        = number
  default     = 250
}

variable "fsx_backup_retention_days" {
  description = "Days of automatic FSx backups (0 disables them)."
  type        = number
  default     = 7
}

variable "fsx_subnet_id" {
  description = "Private subnet for FSx; put it in the AZ of the HyperPod GPU nodes."
  type        = string
  default     = null
}

variable "fsx_security_group_ids" {
  description = "Security groups for the FSx file system (Lustre ports from the nodes)."
  type        = list(string)
  default     = []
}

variable "fsx_kms_key_arn" {
  description = "KMS key ARN for FSx encryption at rest."
  type        = string
  default     = null
}

variable "fsx_log_group_arn" {
  description = "CloudWatch log group ARN for FSx logs (its name must start with /aws/fsx/)."
  type        = string
  default     = null
}

variable "ebs_default_encryption" {
  description = "Turn on EBS encryption by default in this account and region (affects every new volume)."
  type        = bool
  default     = true
}

variable "ebs_kms_key_arn" {
  description = "KMS key ARN used as the account's default EBS key."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags applied to every resource."
  type        = map(string)
  default     = {}
}
