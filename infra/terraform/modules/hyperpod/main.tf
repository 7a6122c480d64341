# SageMaker HyperPod cluster with the EKS orchestrator: GPU instance groups, optional training
# plans, deep health checks at start, automatic node recovery, lifecycle scripts in S3.
resource "aws_s3_object" "on_create" {
  bucket                 = var.lifecycle_bucket
  key                    = "${var.lifecycle_prefix}/on_create.sh"
  source                 = "${path.module}/lifecycle/on_create.sh"
  source_hash            = filemd5("${path.module}/lifecycle/on_create.sh")
  server_side_encryption = "aws:kms"
  kms_key_id             = var.s3_kms_key_arn
  tags                   = var.tags
}

resource "aws_sagemaker_cluster" "this" {
  cluster_name  = var.cluster_name
  node_recovery = var.node_recovery

  orchestrator {
    eks {
      cluster_arn = var.eks_cluster_arn
    }
  }

  vpc_config {
    subnets            = var.subnet_ids
    security_group_ids = var.security_group_ids
  }

  dynamic "instance_group" {
    for_each = var.instance_groups
    content {
      instance_group_name        = instance_group.key
      instance_type              = instance_group.value.instance_type
      instance_count             = instance_group.value.instance_count
      threads_per_core           = instance_group.value.threads_per_core
      execution_role             = var.execution_role_arn
      training_plan_arn          = instance_group.value.training_plan_arn
      on_start_deep_healthchecks = instance_group.value.deep_health_checks

      lifecycle_config {
        source_s3_uri = "s3://${var.lifecycle_bucket}/${var.lifecycle_prefix}/"
        on_create     = "on_create.sh"
      }

      instance_storage_config {
        ebs_volume_config {
          volume_size_in_gb = instance_group.value.ebs_volume_gib
        }
      }
    }
  }

  tags = var.tags

  depends_on = [aws_s3_object.on_create]

  lifecycle {
    # The pipeline scales instance_count of the GPU group up before training and back down at
    # teardown (sagemaker:UpdateCluster); Terraform must not fight it.
    ignore_changes = [instance_group[0].instance_count, instance_group[1].instance_count, instance_group[2].instance_count]
  }
}
