# The canary's alarms for the SageMaker endpoint (serving.sagemaker.alarms): a blue/green update is rolled
# back by SageMaker when one of them is in ALARM during the traffic shift, and by deploy_production when
# one is in ALARM during serving.sagemaker.bake_s after it.

variable "serving_endpoint_name" {
  description = "SageMaker endpoint the alarms watch (serving.sagemaker.endpoint_name); null: no alarms."
  type        = string
  default     = null
}

variable "serving_variant_name" {
  description = "Production variant of the endpoint (serving.sagemaker.variant_name)."
  type        = string
  default     = "AllTraffic"
}

resource "aws_cloudwatch_metric_alarm" "serving_5xx" {
  count               = var.serving_endpoint_name == null ? 0 : 1
  alarm_name          = "${var.serving_endpoint_name}-5xx"
  alarm_description   = "Model errors (5xx) on the endpoint: rolls a blue/green deployment back."
  namespace           = "AWS/SageMaker"
  metric_name         = "Invocation5XXErrors"
  statistic           = "Sum"
  period              = 60
  evaluation_periods  = 2
  threshold           = 5
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  dimensions = {
    EndpointName = var.serving_endpoint_name
    VariantName  = var.serving_variant_name
  }
  tags = var.tags
}

resource "aws_cloudwatch_metric_alarm" "serving_latency" {
  count               = var.serving_endpoint_name == null ? 0 : 1
  alarm_name          = "${var.serving_endpoint_name}-latency"
  alarm_description   = "p99 model latency above 20 s on the endpoint: rolls a blue/green deployment back."
  namespace           = "AWS/SageMaker"
  metric_name         = "ModelLatency"
  extended_statistic  = "p99"
  period              = 60
  evaluation_periods  = 3
  threshold           = 20000000 # microseconds
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  dimensions = {
    EndpointName = var.serving_endpoint_name
    VariantName  = var.serving_variant_name
  }
  tags = var.tags
}
