# IAM: the HyperPod execution role, the Ray pods' role and the Airflow role (EKS Pod Identity),
# each with only what its callers use. No statement grants "*" actions; "*" resources appear only
# with actions that AWS does not scope to a resource (Describe*/GetAuthorizationToken/List*).
data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  partition  = data.aws_partition.current.partition
  account_id = data.aws_caller_identity.current.account_id
  region     = data.aws_region.current.region

  bucket_arn  = { for k, name in var.bucket_names : k => "arn:${local.partition}:s3:::${name}" }
  prefix_objs = { for k, name in var.bucket_names : k => "arn:${local.partition}:s3:::${name}/${var.s3_prefix}*" }

  model_package_group_arn = "arn:${local.partition}:sagemaker:${local.region}:${local.account_id}:model-package-group/${var.model_package_group_name}"
  model_packages_arn      = "arn:${local.partition}:sagemaker:${local.region}:${local.account_id}:model-package/${var.model_package_group_name}/*"
}

# =============================================================================================
# HyperPod execution role (assumed by the HyperPod instances)
# =============================================================================================
data "aws_iam_policy_document" "hyperpod_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["sagemaker.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "hyperpod" {
  name_prefix        = "${var.name}-hyperpod-exec-"
  assume_role_policy = data.aws_iam_policy_document.hyperpod_assume.json
  tags               = var.tags
}

# AWS's managed policy for HyperPod instances (CloudWatch agent, SSM, lifecycle hooks).
resource "aws_iam_role_policy_attachment" "hyperpod_managed" {
  role       = aws_iam_role.hyperpod.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/AmazonSageMakerClusterInstanceRolePolicy"
}

data "aws_iam_policy_document" "hyperpod" {
  statement {
    sid       = "DescribeForNetworking"
    actions   = ["ec2:DescribeInstances", "ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets", "ec2:DescribeVpcs", "ec2:DescribeSecurityGroups"]
    resources = ["*"] # Describe* actions have no resource-level permissions
  }

  statement {
    sid = "NodeNetworkInterfaces"
    actions = [
      "ec2:CreateNetworkInterface", "ec2:DeleteNetworkInterface", "ec2:AttachNetworkInterface", "ec2:DetachNetworkInterface",
      "ec2:ModifyNetworkInterfaceAttribute", "ec2:AssignPrivateIpAddresses", "ec2:UnassignPrivateIpAddresses",
      "ec2:CreateNetworkInterfacePermission", "ec2:DeleteNetworkInterfacePermission",
    ]
    resources = concat(
      ["arn:${local.partition}:ec2:${local.region}:${local.account_id}:network-interface/*", "arn:${local.partition}:ec2:${local.region}:${local.account_id}:instance/*"],
      [for s in var.hyperpod_subnet_ids : "arn:${local.partition}:ec2:${local.region}:${local.account_id}:subnet/${s}"],
      [for g in var.hyperpod_security_group_ids : "arn:${local.partition}:ec2:${local.region}:${local.account_id}:security-group/${g}"],
    )
  }

  statement {
    sid       = "TagNodeNetworkInterfaces"
    actions   = ["ec2:CreateTags"]
    resources = ["arn:${local.partition}:ec2:${local.region}:${local.account_id}:network-interface/*"]
    condition {
      test     = "StringEquals"
      variable = "ec2:CreateAction"
      values   = ["CreateNetworkInterface"]
    }
  }

  statement {
    sid       = "EcrAuth"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"] # GetAuthorizationToken has no resource-level permissions
  }

  statement {
    sid       = "EcrPullTrainer"
    actions   = ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
    resources = [var.ecr_repository_arn]
  }

  statement {
    sid       = "PodIdentity"
    actions   = ["eks-auth:AssumeRoleForPodIdentity"]
    resources = [var.eks_cluster_arn]
  }

  statement {
    sid       = "ReadLifecycleScripts"
    actions   = ["s3:GetObject", "s3:ListBucket"]
    resources = [local.bucket_arn["lifecycle"], "${local.bucket_arn["lifecycle"]}/*"]
  }

  statement {
    sid       = "DecryptWithProjectKeys"
    actions   = ["kms:Decrypt", "kms:DescribeKey"]
    resources = var.kms_key_arns
  }
}

resource "aws_iam_role_policy" "hyperpod" {
  name   = "hyperpod-execution"
  role   = aws_iam_role.hyperpod.id
  policy = data.aws_iam_policy_document.hyperpod.json
}

# =============================================================================================
# EKS Pod Identity roles: Ray pods and Airflow
# =============================================================================================
data "aws_iam_policy_document" "pod_identity_assume" {
  statement {
    actions = ["sts:AssumeRole", "sts:TagSession"]
    principals {
      type        = "Service"
      identifiers = ["pods.eks.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

# ---- Ray pods: read datasets and the production model, write checkpoints and candidate models,
# only under the project prefix.
resource "aws_iam_role" "ray" {
  name_prefix        = "${var.name}-ray-"
  assume_role_policy = data.aws_iam_policy_document.pod_identity_assume.json
  tags               = var.tags
}

data "aws_iam_policy_document" "ray" {
  statement {
    sid       = "ListProjectPrefix"
    actions   = ["s3:ListBucket"]
    resources = [for k in ["datasets", "checkpoints", "models"] : local.bucket_arn[k]]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${var.s3_prefix}*"]
    }
  }

  statement {
    sid       = "ReadDatasets"
    actions   = ["s3:GetObject"]
    resources = [local.prefix_objs["datasets"]]
  }

  statement {
    sid       = "ReadWriteCheckpointsAndModels"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
    resources = [local.prefix_objs["checkpoints"], local.prefix_objs["models"]]
  }

  statement {
    sid       = "UseS3Key"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [var.s3_kms_key_arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${local.region}.amazonaws.com"]
    }
  }

  # The Ray pods' Fluent Bit sidecar ships Ray's logs to the ray log group (compute/ray_logs.py).
  dynamic "statement" {
    for_each = var.ray_log_group_arn == null ? [] : [var.ray_log_group_arn]
    content {
      sid       = "ShipRayLogs"
      actions   = ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]
      resources = [statement.value, "${statement.value}:*"]
    }
  }
}

resource "aws_iam_role_policy" "ray" {
  name   = "ray-s3"
  role   = aws_iam_role.ray.id
  policy = data.aws_iam_policy_document.ray.json
}

resource "aws_eks_pod_identity_association" "ray" {
  cluster_name    = var.eks_cluster_name
  namespace       = var.training_namespace
  service_account = var.ray_service_account
  role_arn        = aws_iam_role.ray.arn
  tags            = var.tags
}

# ---- Airflow: exactly the calls the DAGs make.
resource "aws_iam_role" "airflow" {
  name_prefix        = "${var.name}-airflow-"
  assume_role_policy = var.airflow_on_mwaa ? data.aws_iam_policy_document.mwaa_assume.json : data.aws_iam_policy_document.pod_identity_assume.json
  tags               = var.tags
}

data "aws_iam_policy_document" "mwaa_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["airflow.amazonaws.com", "airflow-env.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

data "aws_iam_policy_document" "airflow" {
  # checkov:skip=CKV_AWS_356: only sagemaker:ListModelPackages has Resource "*"; the Service Authorization Reference lists no resource type for it
  statement {
    sid       = "ListProjectBuckets"
    actions   = ["s3:ListBucket", "s3:GetBucketLocation"]
    resources = [for k in ["logs", "datasets", "checkpoints", "models"] : local.bucket_arn[k]]
  }

  statement {
    sid       = "ReadWriteProjectData"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
    resources = [for k in ["logs", "datasets", "checkpoints", "models"] : local.prefix_objs[k]]
  }

  # Agent platforms write raw logs under their own prefix of the logs bucket: read-only there.
  statement {
    sid       = "ReadRawAgentLogs"
    actions   = ["s3:GetObject"]
    resources = ["${local.bucket_arn["logs"]}/${var.raw_logs_prefix}*"]
  }

  statement {
    sid       = "UseS3Key"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [var.s3_kms_key_arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${local.region}.amazonaws.com"]
    }
  }

  statement {
    sid       = "HyperPodCapacity"
    actions   = ["sagemaker:DescribeCluster", "sagemaker:UpdateCluster", "sagemaker:ListClusterNodes"]
    resources = [var.hyperpod_cluster_arn]
  }

  # UpdateCluster passes the execution role of the instance groups back to SageMaker.
  statement {
    sid       = "PassHyperPodExecutionRole"
    actions   = ["iam:PassRole"]
    resources = [aws_iam_role.hyperpod.arn]
    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["sagemaker.amazonaws.com"]
    }
  }

  statement {
    sid       = "DescribeEksCluster"
    actions   = ["eks:DescribeCluster"]
    resources = [var.eks_cluster_arn]
  }

  statement {
    sid = "ModelRegistry"
    actions = [
      "sagemaker:CreateModelPackageGroup", "sagemaker:DescribeModelPackageGroup",
      "sagemaker:CreateModelPackage", "sagemaker:DescribeModelPackage", "sagemaker:UpdateModelPackage",
      "sagemaker:AddTags",
    ]
    resources = [local.model_package_group_arn, local.model_packages_arn]
  }

  statement {
    sid       = "ListModelPackages"
    actions   = ["sagemaker:ListModelPackages"]
    resources = ["*"] # List* calls are not resource-scoped in SageMaker
  }
}

resource "aws_iam_role_policy" "airflow" {
  name   = "airflow-pipeline"
  role   = aws_iam_role.airflow.id
  policy = data.aws_iam_policy_document.airflow.json
}

resource "aws_eks_pod_identity_association" "airflow" {
  for_each = var.airflow_on_mwaa ? toset([]) : toset(var.airflow_service_accounts)

  cluster_name    = var.eks_cluster_name
  namespace       = var.airflow_namespace
  service_account = each.value
  role_arn        = aws_iam_role.airflow.arn
  tags            = var.tags
}

# Airflow reaches the EKS API with an IAM token of this role (the KubeRay hook's eks_cluster_name path,
# Pod Identity on EKS or the MWAA execution role alike): without an access entry the API server does not
# know the role and answers 401. The entry maps it to a Kubernetes group and attaches no access policy:
# its rights are exactly the namespaced Role that the chart's RoleBinding gives that group.
resource "aws_eks_access_entry" "airflow" {
  count = var.airflow_kubernetes_group == null ? 0 : 1

  cluster_name      = var.eks_cluster_name
  principal_arn     = aws_iam_role.airflow.arn
  type              = "STANDARD"
  kubernetes_groups = [var.airflow_kubernetes_group]
  tags              = var.tags
}
