"""The experiment tracker: one MLflow run per training run, over MLflow's client (``MlflowClient``).

What a run holds: the run spec's params and tags (the training task, before the job), the trainer's
per-step metrics (the engine's own MLflow logger, given :meth:`Tracker.ref`'s environment: VeRL's
``mlflow`` logger on GPU, TRL's ``report_to="mlflow"`` on CPU), the result's summary metrics, the gate's
decision with its confidence intervals, and the run report as artifacts. The registry version records
the MLflow run's id (lineage ``mlflow_run_id``).

:func:`tracker` returns None when ``[tracking] enabled`` is false: no MLflow call is made at all.
No Airflow here; the operators call these functions.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from continuous_learning import storage
from continuous_learning.contracts import RunSpec, TrackingRef
from continuous_learning.training import safe_run_id

if TYPE_CHECKING:
    from continuous_learning.config import TrackingSettings
    from mlflow import MlflowClient

#: Tag naming the pipeline's run (safe_run_id of the Airflow run id): a retry finds its MLflow run by it.
RUN_KEY_TAG = "cl.run_key"
#: MLflow accepts at most this many metrics in one log_batch call.
_BATCH = 1000


class TrackingError(RuntimeError):
    """The tracking server refused or could not be reached."""


def _metric_key(name: str) -> str:
    """MLflow's metric names: letters, digits and ``_-. /:``; anything else becomes ``_``."""
    return "".join(c if c.isalnum() or c in "_-. /:" else "_" for c in name)


def _flat(prefix: str, value: Any) -> dict[str, str]:
    if isinstance(value, Mapping):
        out: dict[str, str] = {}
        for key, item in value.items():
            out.update(_flat(f"{prefix}.{key}" if prefix else str(key), item))
        return out
    return {prefix: str(value)[:6000]}


def spec_params(spec: RunSpec) -> dict[str, str]:
    """The params of a training run: what the spec asks for (not the trainer's derived config)."""
    document = spec.model_dump(mode="json")
    chosen = {
        "engine": document["engine"],
        "algorithm": document["algorithm"],
        "base_model_version": document["base_model_version"],
        "dataset_id": document["dataset"]["dataset_id"],
        "tool_call_format": document["tool_call_format"],
        "hp": document["hyperparameters"],
        "lora": document["lora"],
        "reward": document["reward"],
        "reward_weights": document["reward_weights"],
    }
    return {f"cl.{k}": v for k, v in _flat("", chosen).items()}


class Tracker:
    """One MLflow experiment on one tracking server."""

    def __init__(self, tracking_uri: str, experiment: str, *, timeout_s: int = 30) -> None:
        # MLflow reads its HTTP limits from the environment; a caller's own values win
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(timeout_s))
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
        from mlflow import MlflowClient

        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.client: MlflowClient = MlflowClient(tracking_uri=tracking_uri)
        self._experiment_id: str | None = None

    def _call(self, what: str, function: Any, *args: Any, **kwargs: Any) -> Any:
        from mlflow.exceptions import MlflowException

        try:
            return function(*args, **kwargs)
        except (MlflowException, OSError) as error:
            raise TrackingError(f"MLflow at {self.tracking_uri}: {what} failed: {error}") from error

    @property
    def experiment_id(self) -> str:
        """The experiment's id, created on first use (two creators at once: the loser reads it)."""
        from mlflow.exceptions import MlflowException

        if self._experiment_id is None:
            found = self._call("get experiment", self.client.get_experiment_by_name, self.experiment)
            if found is None:
                try:
                    self._experiment_id = self.client.create_experiment(self.experiment)
                except MlflowException:
                    found = self._call("get experiment", self.client.get_experiment_by_name, self.experiment)
                    if found is None:
                        raise
            if self._experiment_id is None:
                self._experiment_id = found.experiment_id
        return self._experiment_id

    def find_run(self, run_id: str) -> str | None:
        """The MLflow run of the pipeline's run ``run_id``, if one was started."""
        runs = self._call(
            "search runs",
            self.client.search_runs,
            [self.experiment_id],
            filter_string=f"tags.`{RUN_KEY_TAG}` = '{safe_run_id(run_id)}'",
            max_results=1,
            order_by=["attributes.start_time ASC"],
        )
        return runs[0].info.run_id if runs else None

    def start_run(self, run_id: str, tags: Mapping[str, str] | None = None) -> str:
        """The MLflow run of ``run_id``: the one a previous attempt started, else a new one (idempotent)."""
        existing = self.find_run(run_id)
        if existing is not None:
            return existing
        all_tags = {RUN_KEY_TAG: safe_run_id(run_id), "cl.run_id": run_id, **(tags or {})}
        run = self._call(
            "create run", self.client.create_run, self.experiment_id, tags=all_tags, run_name=run_id
        )
        return str(run.info.run_id)

    def ref(self, mlflow_run_id: str) -> TrackingRef:
        """What the trainer needs to report to the run (RunSpec.tracking)."""
        return TrackingRef(tracking_uri=self.tracking_uri, experiment=self.experiment, run_id=mlflow_run_id)

    def log_params(self, mlflow_run_id: str, params: Mapping[str, str]) -> None:
        """Log params not logged yet (MLflow refuses to change a param: a retry logs only what is new)."""
        from mlflow.entities import Param

        logged = self._call("get run", self.client.get_run, mlflow_run_id).data.params
        new = [Param(k, str(v)) for k, v in params.items() if k not in logged]
        for start in range(0, len(new), 100):
            self._call("log params", self.client.log_batch, mlflow_run_id, params=new[start : start + 100])

    def set_tags(self, mlflow_run_id: str, tags: Mapping[str, str]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(k, str(v)) for k, v in tags.items()]
        self._call("set tags", self.client.log_batch, mlflow_run_id, tags=items)

    def log_metrics(
        self, mlflow_run_id: str, metrics: Mapping[str, float], step: int = 0, prefix: str = ""
    ) -> None:
        self._log(mlflow_run_id, [({f"{prefix}{k}": v for k, v in metrics.items()}, step)])

    def _log(self, mlflow_run_id: str, points: Iterable[tuple[Mapping[str, Any], int]]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [
            Metric(_metric_key(k), float(v), now, int(step))
            for values, step in points
            for k, v in values.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(float(v))
        ]
        for start in range(0, len(metrics), _BATCH):
            self._call(
                "log metrics", self.client.log_batch, mlflow_run_id, metrics=metrics[start : start + _BATCH]
            )

    def log_history_if_missing(self, mlflow_run_id: str, history: list[dict[str, float]]) -> bool:
        """The trainer's per-step metrics, from its result, when its own logger sent none (e.g. VeRL's
        logger could not reach the server: it goes on without it). True when they were logged here."""
        if not history:
            return False
        logged = set(self._call("get run", self.client.get_run, mlflow_run_id).data.metrics)
        keys = {_metric_key(k) for h in history for k in h if k != "step"}
        if keys & logged:
            return False
        points = [
            ({k: v for k, v in h.items() if k != "step"}, int(h.get("step", i + 1)))
            for i, h in enumerate(history)
        ]
        self._log(mlflow_run_id, points)
        return True

    def log_decision(self, mlflow_run_id: str, decision: Mapping[str, Any]) -> None:
        """The gate: ``gate.promote`` tag, reasons, the difference's CI and each slice's, guardrails;
        the whole decision as ``gate/decision.json``."""
        metrics: dict[str, float] = {"gate.promote": 1.0 if decision.get("promote") else 0.0}
        for key in ("candidate_mean", "production_mean"):
            if isinstance(decision.get(key), int | float):
                metrics[f"gate.{key}"] = float(decision[key])
        intervals = {"delta": decision.get("overall") or {}}
        intervals.update({f"slice.{k}": v or {} for k, v in (decision.get("slices") or {}).items()})
        for name, interval in intervals.items():  # an Interval: mean (candidate - production), low, high, n
            for key in ("mean", "low", "high", "n"):
                if isinstance(interval.get(key), int | float):
                    metrics[f"gate.{name}.{key}"] = float(interval[key])
        for name, value in (decision.get("guardrails") or {}).items():
            if isinstance(value, int | float):
                metrics[f"gate.guardrail.{name}"] = float(value)
        self.log_metrics(mlflow_run_id, metrics)
        self.set_tags(
            mlflow_run_id,
            {"cl.gate": "promote" if decision.get("promote") else "reject",
             "cl.gate_reasons": " ".join(decision.get("reasons") or [])[:5000]},
        )  # fmt: skip
        self._call("log decision", self.client.log_dict, mlflow_run_id, dict(decision), "gate/decision.json")

    def log_artifacts(self, mlflow_run_id: str, uris: Mapping[str, str], artifact_path: str) -> None:
        """Copy storage objects (file:// or s3://) into the run's artifacts under ``artifact_path``."""
        with tempfile.TemporaryDirectory(prefix="cl-mlflow-") as tmp:
            for uri in uris.values():
                local = Path(tmp) / uri.rsplit("/", 1)[-1]
                local.write_bytes(storage.read_bytes(uri))
                self._call("log artifact", self.client.log_artifact, mlflow_run_id, str(local), artifact_path)

    def finish(self, mlflow_run_id: str, status: str = "FINISHED") -> None:
        self._call("end run", self.client.set_terminated, mlflow_run_id, status)

    def run_url(self, mlflow_run_id: str) -> str:
        """The run's page in the MLflow UI (http(s) servers)."""
        return f"{self.tracking_uri.rstrip('/')}/#/experiments/{self.experiment_id}/runs/{mlflow_run_id}"


def tracker(settings: TrackingSettings) -> Tracker | None:
    """The tracker of these settings, or None when tracking is off."""
    if not settings.enabled or not settings.tracking_uri:
        return None
    return Tracker(settings.tracking_uri, settings.experiment, timeout_s=settings.request_timeout_s)


def _of(settings: TrackingSettings, ref: TrackingRef) -> Tracker:
    return Tracker(ref.tracking_uri, ref.experiment, timeout_s=settings.request_timeout_s)


def start_training_run(
    settings: TrackingSettings, run_id: str, tags: Mapping[str, str] | None = None
) -> TrackingRef | None:
    """Before a training job: the pipeline run's MLflow run (found again on a retry), or None when off."""
    found = tracker(settings)
    if found is None:
        return None
    return found.ref(found.start_run(run_id, tags))


def log_run_spec(settings: TrackingSettings, spec: RunSpec) -> None:
    """The spec's params and tags on its MLflow run (nothing when the spec has none)."""
    if spec.tracking is None:
        return
    found = _of(settings, spec.tracking)
    found.log_params(spec.tracking.run_id, spec_params(spec))
    found.set_tags(spec.tracking.run_id, {"cl.engine": spec.engine, "cl.base_model_version": spec.base_model_version,
                                          "cl.dataset_id": spec.dataset.dataset_id})  # fmt: skip


def record_training(
    settings: TrackingSettings, spec: RunSpec, metrics: Mapping[str, float], history: list[dict[str, float]],
    *, version: str, status: str,
) -> bool:  # fmt: skip
    """After the job: the result's summary metrics (``result.*``), the candidate's registry version,
    and the per-step history when the engine's logger sent none. True when the history was logged here."""
    if spec.tracking is None:
        return False
    found, run = _of(settings, spec.tracking), spec.tracking.run_id
    found.log_metrics(run, metrics, prefix="result.")
    found.set_tags(run, {"cl.candidate_version": version, "cl.train_status": status})
    return found.log_history_if_missing(run, history)


def record_gate(
    settings: TrackingSettings, spec: RunSpec | None, decision: Mapping[str, Any], report: Mapping[str, str]
) -> str | None:
    """The gate's decision and the run report (``report/``) on the run; the run ends. Its UI URL."""
    if spec is None or spec.tracking is None:
        return None
    found, run = _of(settings, spec.tracking), spec.tracking.run_id
    found.log_decision(run, decision)
    found.log_artifacts(run, report, "report")
    found.finish(run)
    return found.run_url(run)
