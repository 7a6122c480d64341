# Root example: the whole AWS deployment of the continuous-learning pipeline.
# Apply order and variables: infra/README.md.
locals {
  name = var.name
  log_groups = {
    eks     = "/aws/eks/${var.name}/cluster"
    fsx     = "/aws/fsx/${var.name}"
    airflow = "/${var.name}/airflow"
    ray     = "/${var.name}/ray"
  }
  # HyperPod nodes live in one subnet: the AZ of the GPU capacity (first of var.azs).
  hyperpod_subnet_ids = [module.network.private_subnet_ids[0]]
  hyperpod_sg_ids     = [module.security_groups.nodes_security_group_id, module.security_groups.efa_security_group_id]
}

module "kms" {
  source = "../../modules/kms"
  name   = local.name
}

module "observability" {
  source         = "../../modules/observability"
  log_groups     = local.log_groups
  retention_days = var.log_retention_days
  kms_key_arn    = module.kms.key_arns["logs"]
  # the canary alarms of deploy_production's SageMaker endpoint (serving.sagemaker.alarms in prod.toml)
  serving_endpoint_name = "continuous-learning-agent"
}

module "network" {
  source             = "../../modules/network"
  name               = local.name
  region             = var.region
  vpc_cidr           = var.vpc_cidr
  azs                = var.azs
  single_nat_gateway = var.single_nat_gateway
  log_retention_days = var.log_retention_days
  logs_kms_key_arn   = module.kms.key_arns["logs"]
}

module "security_groups" {
  source            = "../../modules/security_groups"
  name              = local.name
  vpc_id            = module.network.vpc_id
  vpc_cidr          = module.network.vpc_cidr
  api_allowed_cidrs = var.api_allowed_cidrs
}

module "storage" {
  source                   = "../../modules/storage"
  name                     = local.name
  kms_key_arn              = module.kms.key_arns["s3"]
  fsx_enabled              = var.fsx_enabled
  fsx_storage_capacity_gib = var.fsx_storage_capacity_gib
  fsx_subnet_id            = module.network.private_subnet_ids[0]
  fsx_security_group_ids   = [module.security_groups.fsx_security_group_id]
  fsx_kms_key_arn          = module.kms.key_arns["fsx"]
  fsx_log_group_arn        = module.observability.log_group_arns["fsx"]
  ebs_kms_key_arn          = module.kms.key_arns["ebs"]
}

module "ecr" {
  source      = "../../modules/ecr"
  name        = var.trainer_repository_name
  kms_key_arn = module.kms.key_arns["ecr"]
}

module "eks" {
  source                    = "../../modules/eks"
  name                      = local.name
  kubernetes_version        = var.kubernetes_version
  subnet_ids                = module.network.private_subnet_ids
  cluster_security_group_id = module.security_groups.cluster_security_group_id
  nodes_security_group_id   = module.security_groups.nodes_security_group_id
  endpoint_public_access    = var.eks_endpoint_public_access
  public_access_cidrs       = var.eks_public_access_cidrs
  kms_key_arn               = module.kms.key_arns["eks"]
  ebs_kms_key_arn           = module.kms.key_arns["ebs"]
  addon_versions            = var.eks_addon_versions
  admin_principal_arns      = var.eks_admin_principal_arns

  depends_on = [module.observability] # the control-plane log group must exist first
}

module "iam" {
  source                      = "../../modules/iam"
  name                        = local.name
  bucket_names                = module.storage.bucket_names
  s3_prefix                   = var.s3_prefix
  s3_kms_key_arn              = module.kms.key_arns["s3"]
  kms_key_arns                = [module.kms.key_arns["s3"], module.kms.key_arns["ecr"], module.kms.key_arns["ebs"]]
  ecr_repository_arn          = module.ecr.repository_arn
  eks_cluster_name            = module.eks.cluster_name
  eks_cluster_arn             = module.eks.cluster_arn
  hyperpod_cluster_arn        = module.hyperpod.cluster_arn
  hyperpod_subnet_ids         = local.hyperpod_subnet_ids
  hyperpod_security_group_ids = local.hyperpod_sg_ids
  model_package_group_name    = var.model_package_group_name
  training_namespace          = var.training_namespace
  airflow_kubernetes_group    = var.airflow_kubernetes_group
  ray_log_group_arn           = module.observability.log_group_arns["ray"]
}

module "hyperpod" {
  source             = "../../modules/hyperpod"
  cluster_name       = var.hyperpod_cluster_name
  eks_cluster_arn    = module.eks.cluster_arn
  subnet_ids         = local.hyperpod_subnet_ids
  security_group_ids = local.hyperpod_sg_ids
  execution_role_arn = module.iam.hyperpod_execution_role_arn
  lifecycle_bucket   = module.storage.bucket_names["lifecycle"]
  s3_kms_key_arn     = module.kms.key_arns["s3"]
  instance_groups    = var.hyperpod_instance_groups
}
