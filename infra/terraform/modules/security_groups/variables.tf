variable "name" {
  description = "Name prefix for the security groups."
  type        = string
}

variable "vpc_id" {
  description = "VPC id."
  type        = string
}

variable "vpc_cidr" {
  description = "VPC CIDR; node egress inside the VPC is allowed to it."
  type        = string
}

variable "api_allowed_cidrs" {
  description = "Private CIDRs (VPN, bastion, CI runners) allowed to reach the private Kubernetes API on 443. Never 0.0.0.0/0."
  type        = list(string)
  default     = []

  validation {
    condition     = !contains(var.api_allowed_cidrs, "0.0.0.0/0")
    error_message = "The Kubernetes API must not be opened to 0.0.0.0/0."
  }
}

variable "tags" {
  description = "Tags applied to every security group."
  type        = map(string)
  default     = {}
}
