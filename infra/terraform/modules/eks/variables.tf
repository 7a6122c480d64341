variable "name" {
  description = "EKS cluster name."
  type        = string
}

variable "kubernetes_version" {
  description = "Kubernetes minor version of the control plane (HyperPod supports a subset: check its docs)."
  type        = string
  default     = "1.32"
}

variable "subnet_ids" {
  description = "Private subnet ids for the control plane ENIs and the system node group (>= 2 AZs)."
  type        = list(string)
}

variable "cluster_security_group_id" {
  description = "Additional security group for the control plane."
  type        = string
}

variable "nodes_security_group_id" {
  description = "Security group of the system node group."
  type        = string
}

variable "endpoint_public_access" {
  description = "Expose the Kubernetes API publicly as well as privately. Default private only (reach it over VPN/bastion)."
  type        = bool
  default     = false
}

variable "public_access_cidrs" {
  description = "CIDRs allowed to the public API endpoint when endpoint_public_access is true. Never 0.0.0.0/0."
  type        = list(string)
  default     = []

  validation {
    condition     = !contains(var.public_access_cidrs, "0.0.0.0/0")
    error_message = "Do not open the Kubernetes API to 0.0.0.0/0."
  }
}

variable "kms_key_arn" {
  description = "KMS key ARN for envelope encryption of Kubernetes secrets."
  type        = string
}

variable "ebs_kms_key_arn" {
  description = "KMS key ARN for the system node root volumes."
  type        = string
}

variable "addons" {
  description = "EKS managed add-ons to install."
  type        = list(string)
  default     = ["vpc-cni", "kube-proxy", "coredns", "eks-pod-identity-agent", "aws-fsx-csi-driver"]
}

variable "addon_versions" {
  description = "Pinned add-on versions by name (aws eks describe-addon-versions); missing = the default for the Kubernetes version."
  type        = map(string)
  default     = {}
}

variable "system_node_instance_types" {
  description = "Instance types of the CPU system node group (KubeRay operator, Airflow, CoreDNS)."
  type        = list(string)
  default     = ["m7i.xlarge"]
}

variable "system_node_count" {
  description = "Size of the system node group."
  type        = object({ min = number, desired = number, max = number })
  default     = { min = 2, desired = 2, max = 4 }
}

variable "system_node_disk_gib" {
  description = "Root volume size of system nodes in GiB."
  type        = number
  default     = 100
}

variable "admin_principal_arns" {
  description = "IAM role/user ARNs given cluster-admin through EKS access entries."
  type        = list(string)
  default     = []
}

variable "group_mapped_principals" {
  description = "IAM principal ARN => Kubernetes groups, for principals outside the cluster (e.g. an MWAA execution role)."
  type        = map(list(string))
  default     = {}
}

variable "tags" {
  description = "Tags applied to every resource."
  type        = map(string)
  default     = {}
}
