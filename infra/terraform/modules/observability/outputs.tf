output "log_group_arns" {
  description = "Map of key to log group ARN."
  value       = { for k, v in aws_cloudwatch_log_group.this : k => v.arn }
}

output "log_group_names" {
  description = "Map of key to log group name."
  value       = { for k, v in aws_cloudwatch_log_group.this : k => v.name }
}
