variable "log_groups" {
  description = "Log groups to create: key => name (e.g. eks => /aws/eks/<cluster>/cluster, fsx => /aws/fsx/<name>)."
  type        = map(string)
}

variable "retention_days" {
  description = "Retention of every log group in days (365 keeps a year of audit logs)."
  type        = number
  default     = 365
}

variable "kms_key_arn" {
  description = "KMS key ARN (its key policy must allow the CloudWatch Logs service principal)."
  type        = string
}

variable "tags" {
  description = "Tags applied to every log group."
  type        = map(string)
  default     = {}
}
