output "bucket_names" {
  description = "Map of bucket key (logs, datasets, ...) to bucket name."
  value       = { for k, v in aws_s3_bucket.this : k => v.bucket }
}

output "bucket_arns" {
  description = "Map of bucket key to bucket ARN."
  value       = { for k, v in aws_s3_bucket.this : k => v.arn }
}

output "access_logs_bucket" {
  description = "Name of the S3 server access-log bucket."
  value       = aws_s3_bucket.access_logs.bucket
}

output "fsx_file_system_id" {
  description = "FSx for Lustre file system id (null when disabled)."
  value       = try(aws_fsx_lustre_file_system.this[0].id, null)
}

output "fsx_dns_name" {
  description = "FSx for Lustre DNS name, for the Kubernetes PersistentVolume."
  value       = try(aws_fsx_lustre_file_system.this[0].dns_name, null)
}

output "fsx_mount_name" {
  description = "FSx for Lustre mount name, for the Kubernetes PersistentVolume."
  value       = try(aws_fsx_lustre_file_system.this[0].mount_name, null)
}
