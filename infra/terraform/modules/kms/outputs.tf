output "key_arns" {
  description = "Map of key name to KMS key ARN."
  value       = { for k, v in aws_kms_key.this : k => v.arn }
}
