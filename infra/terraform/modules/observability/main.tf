# CloudWatch log groups, all KMS-encrypted with a bounded retention. EKS control-plane logs go to
# /aws/eks/<cluster>/cluster: creating the group here (before the cluster) sets its KMS key and
# retention instead of EKS creating an unencrypted, never-expiring one.
resource "aws_cloudwatch_log_group" "this" {
  for_each = var.log_groups

  name              = each.value
  retention_in_days = var.retention_days
  kms_key_id        = var.kms_key_arn
  tags              = var.tags
}
