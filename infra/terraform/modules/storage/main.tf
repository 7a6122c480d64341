# S3 buckets for the pipeline's data, an access-log sink, FSx for Lustre over the datasets bucket,
# and account-wide EBS default encryption.
data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  # Bucket names are global: the account id keeps them unique. The lifecycle bucket starts with
  # "sagemaker-", the prefix HyperPod's documentation and managed policies expect.
  bucket_names = {
    for k, _ in var.buckets : k => (k == "lifecycle" ? "sagemaker-${var.name}-lifecycle-${local.account_id}" : "${var.name}-${k}-${local.account_id}")
  }
}

# --------------------------------------------------------------------------------------------
# Access-log sink. S3 server access logging cannot deliver to an SSE-KMS bucket, so this one
# bucket uses SSE-S3; it is versioned, private, TLS-only and expires its objects.
# --------------------------------------------------------------------------------------------
resource "aws_s3_bucket" "access_logs" {
  # checkov:skip=CKV_AWS_145: S3 server access logging only delivers to SSE-S3 buckets (AWS limitation)
  # checkov:skip=CKV_AWS_18: this is the access-log sink; logging it into itself would loop
  # checkov:skip=CKV_AWS_144: cross-region replication of access logs is not worth its cost here
  # checkov:skip=CKV2_AWS_62: no consumer for object events on the access-log sink
  bucket        = "${var.name}-access-logs-${local.account_id}"
  force_destroy = var.force_destroy
  tags          = var.tags
}

resource "aws_s3_bucket_ownership_controls" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "access_logs" {
  bucket                  = aws_s3_bucket.access_logs.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id
  rule {
    id     = "expire-access-logs"
    status = "Enabled"
    filter {}
    expiration {
      days = var.access_log_retention_days
    }
    noncurrent_version_expiration {
      noncurrent_days = 7
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }
}

data "aws_iam_policy_document" "access_logs" {
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.access_logs.arn, "${aws_s3_bucket.access_logs.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
  statement {
    sid       = "S3ServerAccessLogsDelivery"
    effect    = "Allow"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.access_logs.arn}/*"]
    principals {
      type        = "Service"
      identifiers = ["logging.s3.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_s3_bucket_policy" "access_logs" {
  bucket     = aws_s3_bucket.access_logs.id
  policy     = data.aws_iam_policy_document.access_logs.json
  depends_on = [aws_s3_bucket_public_access_block.access_logs]
}

# --------------------------------------------------------------------------------------------
# Data buckets: logs, datasets, checkpoints, models, lifecycle (HyperPod lifecycle scripts).
# --------------------------------------------------------------------------------------------
resource "aws_s3_bucket" "this" {
  # checkov:skip=CKV_AWS_144: cross-region replication doubles storage cost; enable per bucket when a DR region is chosen (see infra/README.md)
  for_each = var.buckets

  bucket        = local.bucket_names[each.key]
  force_destroy = var.force_destroy
  tags          = merge(var.tags, { "continuous-learning/bucket" = each.key })
}

resource "aws_s3_bucket_ownership_controls" "this" {
  for_each = var.buckets

  bucket = aws_s3_bucket.this[each.key].id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "this" {
  for_each = var.buckets

  bucket                  = aws_s3_bucket.this[each.key].id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "this" {
  for_each = var.buckets

  bucket = aws_s3_bucket.this[each.key].id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "this" {
  for_each = var.buckets

  bucket = aws_s3_bucket.this[each.key].id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = var.kms_key_arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_logging" "this" {
  for_each = var.buckets

  bucket        = aws_s3_bucket.this[each.key].id
  target_bucket = aws_s3_bucket.access_logs.id
  target_prefix = "${each.key}/"
}

# Object events go to EventBridge (free to enable); a deployment can route "dataset written"
# or "model uploaded" to Airflow asset events from there.
resource "aws_s3_bucket_notification" "this" {
  for_each = var.buckets

  bucket      = aws_s3_bucket.this[each.key].id
  eventbridge = true
}

resource "aws_s3_bucket_lifecycle_configuration" "this" {
  for_each = var.buckets

  bucket = aws_s3_bucket.this[each.key].id

  rule {
    id     = "tiering-and-expiry"
    status = "Enabled"
    filter {}

    dynamic "transition" {
      for_each = each.value.infrequent_access_after_days == null ? [] : [each.value.infrequent_access_after_days]
      content {
        days          = transition.value
        storage_class = "STANDARD_IA"
      }
    }

    dynamic "transition" {
      for_each = each.value.glacier_ir_after_days == null ? [] : [each.value.glacier_ir_after_days]
      content {
        days          = transition.value
        storage_class = "GLACIER_IR"
      }
    }

    dynamic "expiration" {
      for_each = each.value.expire_after_days == null ? [] : [each.value.expire_after_days]
      content {
        days = expiration.value
      }
    }

    noncurrent_version_expiration {
      noncurrent_days = each.value.noncurrent_expire_after_days
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }
}

data "aws_iam_policy_document" "tls_only" {
  for_each = var.buckets

  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.this[each.key].arn, "${aws_s3_bucket.this[each.key].arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }

  statement {
    sid       = "DenyOutdatedTLS"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.this[each.key].arn, "${aws_s3_bucket.this[each.key].arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "NumericLessThan"
      variable = "s3:TlsVersion"
      values   = ["1.2"]
    }
  }
}

resource "aws_s3_bucket_policy" "this" {
  for_each = var.buckets

  bucket     = aws_s3_bucket.this[each.key].id
  policy     = data.aws_iam_policy_document.tls_only[each.key].json
  depends_on = [aws_s3_bucket_public_access_block.this]
}

# --------------------------------------------------------------------------------------------
# FSx for Lustre (PERSISTENT_2, KMS) with a data repository association to the datasets bucket:
# Ray workers read datasets and write checkpoints at file-system speed; exports go back to S3.
# --------------------------------------------------------------------------------------------
resource "aws_fsx_lustre_file_system" "this" {
  count = var.fsx_enabled ? 1 : 0

  storage_capacity                = var.fsx_storage_capacity_gib
  deployment_type                 = "PERSISTENT_2"
  per_unit_storage_throughput     = var.fsx_throughput_mb_per_tib
  data_compression_type           = "LZ4"
  file_system_type_version        = "2.15"
  subnet_ids                      = [var.fsx_subnet_id]
  security_group_ids              = var.fsx_security_group_ids
  kms_key_id                      = var.fsx_kms_key_arn
  copy_tags_to_backups            = true
  automatic_backup_retention_days = var.fsx_backup_retention_days

  log_configuration {
    level       = "WARN_ERROR"
    destination = var.fsx_log_group_arn
  }

  tags = merge(var.tags, { Name = "${var.name}-fsx" })
}

resource "aws_fsx_data_repository_association" "datasets" {
  count = var.fsx_enabled ? 1 : 0

  file_system_id                   = aws_fsx_lustre_file_system.this[0].id
  data_repository_path             = "s3://${aws_s3_bucket.this["datasets"].bucket}"
  file_system_path                 = "/datasets"
  batch_import_meta_data_on_create = true

  s3 {
    auto_import_policy {
      events = ["NEW", "CHANGED", "DELETED"]
    }
    auto_export_policy {
      events = ["NEW", "CHANGED", "DELETED"]
    }
  }

  tags = var.tags
}

# --------------------------------------------------------------------------------------------
# EBS default encryption (account + region wide): HyperPod and node-group volumes are encrypted.
# --------------------------------------------------------------------------------------------
resource "aws_ebs_encryption_by_default" "this" {
  count   = var.ebs_default_encryption ? 1 : 0
  enabled = true
}

resource "aws_ebs_default_kms_key" "this" {
  count   = var.ebs_default_encryption ? 1 : 0
  key_arn = var.ebs_kms_key_arn
}
