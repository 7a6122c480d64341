variable "name" {
  description = "Repository name (the trainer image: <account>.dkr.ecr.<region>.amazonaws.com/<name>)."
  type        = string
  default     = "continuous-learning-trainer"
}

variable "kms_key_arn" {
  description = "KMS key ARN for image encryption at rest."
  type        = string
}

variable "keep_images" {
  description = "How many tagged images to keep (promoted models record the image digest they were trained with)."
  type        = number
  default     = 100
}

variable "tags" {
  description = "Tags applied to the repository."
  type        = map(string)
  default     = {}
}
