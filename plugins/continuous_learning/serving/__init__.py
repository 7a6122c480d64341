"""Serving hand-off: what ``deploy_production`` does with a new production model, as pure decisions and
renderings over API answers (no Airflow, no clients).

- :mod:`.handoff`: which production-model event to deploy (the newest; a superseded one is skipped);
- :mod:`.sagemaker`: a SageMaker endpoint's Model, EndpointConfig, blue/green DeploymentConfig, the next
  step from ``DescribeEndpoint``, alarms that roll back;
- :mod:`.sglang`: an SGLang Deployment's manifest, the rollout plan (rolling update, LoRA hot load or
  nothing), the rollout's readiness from its status, and the rollback to the previous pod template.
"""
