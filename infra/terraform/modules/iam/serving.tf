# Serving hand-off (deploy_production, serving.target = "sagemaker"): the role the endpoint's containers
# run as, and what Airflow may do to the endpoint named serving_endpoint_name (its Models and
# EndpointConfigs are named "<endpoint>-<version>-r<revision>"; its canary alarms "<endpoint>-*").

variable "serving_endpoint_name" {
  description = "SageMaker endpoint deploy_production updates (serving.sagemaker.endpoint_name)."
  type        = string
  default     = "continuous-learning-agent"
}

variable "serving_ecr_repository_arns" {
  description = "ECR repositories of the inference image(s) the endpoint pulls (serving.sagemaker.image)."
  type        = list(string)
  default     = []
}

locals {
  sagemaker_arn = "arn:${local.partition}:sagemaker:${local.region}:${local.account_id}"
  serving_resources = [
    "${local.sagemaker_arn}:model/${var.serving_endpoint_name}-*",
    "${local.sagemaker_arn}:endpoint-config/${var.serving_endpoint_name}-*",
    "${local.sagemaker_arn}:endpoint/${var.serving_endpoint_name}",
  ]
  serving_alarms = "arn:${local.partition}:cloudwatch:${local.region}:${local.account_id}:alarm:${var.serving_endpoint_name}-*"
}

resource "aws_iam_role" "sagemaker_endpoint" {
  name_prefix        = "${var.name}-endpoint-"
  assume_role_policy = data.aws_iam_policy_document.hyperpod_assume.json # sagemaker.amazonaws.com, this account
  tags               = var.tags
}

data "aws_iam_policy_document" "sagemaker_endpoint" {
  # checkov:skip=CKV_AWS_356: only ecr:GetAuthorizationToken has Resource "*" (not resource-scoped)
  statement {
    sid       = "ReadModels"
    actions   = ["s3:GetObject", "s3:ListBucket"]
    resources = [local.bucket_arn["models"], local.prefix_objs["models"]]
  }

  statement {
    sid       = "UseS3Key"
    actions   = ["kms:Decrypt"]
    resources = [var.s3_kms_key_arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${local.region}.amazonaws.com"]
    }
  }

  statement {
    sid       = "EcrToken"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }

  dynamic "statement" {
    for_each = length(var.serving_ecr_repository_arns) > 0 ? [1] : []
    content {
      sid       = "PullInferenceImage"
      actions   = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"]
      resources = var.serving_ecr_repository_arns
    }
  }

  statement {
    sid       = "EndpointLogs"
    actions   = ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:/aws/sagemaker/Endpoints/${var.serving_endpoint_name}*"]
  }
}

resource "aws_iam_role_policy" "sagemaker_endpoint" {
  name   = "sagemaker-endpoint"
  role   = aws_iam_role.sagemaker_endpoint.id
  policy = data.aws_iam_policy_document.sagemaker_endpoint.json
}

data "aws_iam_policy_document" "airflow_serving" {
  statement {
    sid = "DeployEndpoint"
    actions = [
      "sagemaker:CreateModel", "sagemaker:DescribeModel", "sagemaker:CreateEndpointConfig",
      "sagemaker:DescribeEndpointConfig", "sagemaker:CreateEndpoint", "sagemaker:UpdateEndpoint",
      "sagemaker:DescribeEndpoint", "sagemaker:AddTags",
    ]
    resources = local.serving_resources
  }

  # CreateModel from the approved package: SageMaker reads the package the model names
  statement {
    sid       = "ReadModelPackages"
    actions   = ["sagemaker:DescribeModelPackage"]
    resources = [local.model_packages_arn]
  }

  statement {
    sid       = "CanaryAlarms"
    actions   = ["cloudwatch:DescribeAlarms"]
    resources = [local.serving_alarms]
  }

  statement {
    sid       = "PassEndpointRole"
    actions   = ["iam:PassRole"]
    resources = [aws_iam_role.sagemaker_endpoint.arn]
    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["sagemaker.amazonaws.com"]
    }
  }
}

resource "aws_iam_role_policy" "airflow_serving" {
  name   = "airflow-serving"
  role   = aws_iam_role.airflow.id
  policy = data.aws_iam_policy_document.airflow_serving.json
}

output "sagemaker_endpoint_role_arn" {
  description = "Role of the SageMaker endpoint's containers (serving.sagemaker.execution_role_arn)."
  value       = aws_iam_role.sagemaker_endpoint.arn
}
