variable "name" {
  description = "Name prefix for the keys and their aliases (alias/<name>-<key>)."
  type        = string
}

variable "key_names" {
  description = "Keys to create, one per data domain. \"logs\" gets a CloudWatch Logs grant in its key policy."
  type        = list(string)
  default     = ["s3", "logs", "ecr", "eks", "ebs", "fsx"]
}

variable "deletion_window_in_days" {
  description = "Waiting period before a scheduled key deletion completes (7-30 days)."
  type        = number
  default     = 30
}

variable "tags" {
  description = "Tags applied to every key."
  type        = map(string)
  default     = {}
}
