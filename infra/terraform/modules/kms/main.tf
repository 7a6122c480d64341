# One customer-managed key per data domain, all with rotation and an explicit key policy.
data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  account_root = "arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root"
}

data "aws_iam_policy_document" "key" {
  # checkov:skip=CKV_AWS_111: key policy: Resource "*" means this key only; kms:* for the account root is AWS's default key policy (delegates to IAM)
  # checkov:skip=CKV_AWS_356: key policy: Resource "*" means this key only, not every resource
  # checkov:skip=CKV_AWS_109: key policy: the account root keeps key administration so the key cannot become unmanageable
  for_each = toset(var.key_names)

  # Account administration of the key; IAM policies then grant use to specific roles.
  statement {
    sid       = "AccountAdministration"
    effect    = "Allow"
    actions   = ["kms:*"]
    resources = ["*"] # in a key policy "*" means "this key"
    principals {
      type        = "AWS"
      identifiers = [local.account_root]
    }
  }

  # CloudWatch Logs encrypts log groups with the "logs" key.
  dynamic "statement" {
    for_each = each.key == "logs" ? [1] : []
    content {
      sid       = "CloudWatchLogs"
      effect    = "Allow"
      actions   = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
      resources = ["*"]
      principals {
        type        = "Service"
        identifiers = ["logs.${data.aws_region.current.region}.amazonaws.com"]
      }
      condition {
        test     = "ArnLike"
        variable = "kms:EncryptionContext:aws:logs:arn"
        values   = ["arn:${data.aws_partition.current.partition}:logs:${data.aws_region.current.region}:${data.aws_caller_identity.current.account_id}:log-group:*"]
      }
    }
  }
}

resource "aws_kms_key" "this" {
  for_each = toset(var.key_names)

  description             = "${var.name} ${each.key} encryption key"
  enable_key_rotation     = true
  deletion_window_in_days = var.deletion_window_in_days
  policy                  = data.aws_iam_policy_document.key[each.key].json
  tags                    = var.tags
}

resource "aws_kms_alias" "this" {
  for_each = toset(var.key_names)

  name          = "alias/${var.name}-${each.key}"
  target_key_id = aws_kms_key.this[each.key].key_id
}
