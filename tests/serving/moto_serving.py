"""moto server with SageMaker ``UpdateEndpoint``, which moto lacks (a small extension).

Run as ``python moto_serving.py -H 127.0.0.1 -p PORT``. ``update_endpoint`` validates the config exists,
keeps the request's ``DeploymentConfig`` as ``LastDeploymentConfig`` (what DescribeEndpoint returns after
a deployment with one) and puts the endpoint ``Updating``; the next ``describe_endpoint`` finds it
``InService`` on the new config. It does NOT shift traffic, bake a canary or watch alarms: SageMaker's
own guardrail rollback is not emulated (the operator's rollback on the alarm state is what the tests see).
``/moto-serving/requests`` lists the UpdateEndpoint requests received.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from moto.sagemaker.models import SageMakerModelBackend
from moto.sagemaker.responses import SageMakerResponse

REQUESTS: list[dict[str, Any]] = []


def update_endpoint(
    self: SageMakerModelBackend, endpoint_name: str, endpoint_config_name: str, deployment_config: Any
) -> str:
    endpoint = self.endpoints[endpoint_name]  # KeyError -> moto's 500; the operator describes first
    self.describe_endpoint_config(endpoint_config_name)  # ValidationException when unknown
    REQUESTS.append({"EndpointName": endpoint_name, "EndpointConfigName": endpoint_config_name,
                     "DeploymentConfig": deployment_config})  # fmt: skip
    endpoint.endpoint_config_name = endpoint_config_name
    endpoint.endpoint_status = "Updating"
    if deployment_config:
        endpoint.last_deployment_config = deployment_config
    return str(endpoint.arn)


_original_describe = SageMakerModelBackend.describe_endpoint


def describe_endpoint(self: SageMakerModelBackend, endpoint_name: str) -> dict[str, Any]:
    answer = _original_describe(self, endpoint_name)
    endpoint = self.endpoints[endpoint_name]
    if endpoint.endpoint_status == "Updating":  # one describe later, the update is done
        endpoint.endpoint_status = "InService"
    return answer


def _update_endpoint_response(self: SageMakerResponse) -> Any:
    from moto.core.responses import ActionResult

    arn = self.sagemaker_backend.update_endpoint(
        endpoint_name=self._get_param("EndpointName"),
        endpoint_config_name=self._get_param("EndpointConfigName"),
        deployment_config=self._get_param("DeploymentConfig"),
    )
    return ActionResult({"EndpointArn": arn})


SageMakerModelBackend.update_endpoint = update_endpoint  # type: ignore[attr-defined]
SageMakerModelBackend.describe_endpoint = describe_endpoint  # type: ignore[method-assign]
SageMakerResponse.update_endpoint = _update_endpoint_response  # type: ignore[attr-defined]


def _serve_requests(environ: Any, start_response: Any) -> list[bytes]:
    body = json.dumps({"requests": REQUESTS}, default=str).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


if __name__ == "__main__":
    from moto import server

    original = server.DomainDispatcherApplication.__call__

    def dispatch(self: Any, environ: Any, start_response: Any) -> Any:
        if environ.get("PATH_INFO") == "/moto-serving/requests":
            return _serve_requests(environ, start_response)
        return original(self, environ, start_response)

    server.DomainDispatcherApplication.__call__ = dispatch  # type: ignore[method-assign]
    server.main(sys.argv[1:])
