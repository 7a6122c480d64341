variable "name" {
  description = "Name prefix for the VPC and its resources."
  type        = string
}

variable "region" {
  description = "AWS region, used in VPC endpoint service names."
  type        = string
}

variable "vpc_cidr" {
  description = "VPC CIDR block (a /16 leaves room for large private subnets: HyperPod gives every pod a VPC IP)."
  type        = string
  default     = "10.20.0.0/16"
}

variable "azs" {
  description = "Availability zones, at least two. Put the AZ with your GPU capacity (or training plan) first."
  type        = list(string)

  validation {
    condition     = length(var.azs) >= 2
    error_message = "Give at least two availability zones."
  }
}

variable "single_nat_gateway" {
  description = "One NAT gateway for all AZs (cheaper) instead of one per AZ (survives an AZ outage)."
  type        = bool
  default     = false
}

variable "log_retention_days" {
  description = "Retention of the VPC flow-log group in days."
  type        = number
  default     = 365
}

variable "logs_kms_key_arn" {
  description = "KMS key ARN for the flow-log group."
  type        = string
}

variable "tags" {
  description = "Tags applied to every resource."
  type        = map(string)
  default     = {}
}
