"""The run report: one HTML page (plots inline) and its JSON, stored with the run and the version."""

from __future__ import annotations

import base64
import html
import io
import json
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from continuous_learning import storage
from continuous_learning.evaluation.live_feedback import report_section

_CURVES = (
    ("reward", "reward"),
    ("kl", "KL"),
    ("loss", "loss"),
    ("completions/mean_length", "response length"),
)


def _png(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode()


def _plots(
    history: list[dict[str, float]], scores: list[dict[str, Any]], slices: dict[str, Any]
) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    images = {}
    present = [(key, label) for key, label in _CURVES if any(key in h for h in history)]
    if present:
        fig, axes = plt.subplots(1, len(present), figsize=(4 * len(present), 3))
        for axis, (key, label) in zip(np.atleast_1d(axes), present, strict=True):
            points = [(h.get("step", i + 1), h[key]) for i, h in enumerate(history) if key in h]
            axis.plot([p[0] for p in points], [p[1] for p in points])
            axis.set_title(label)
            axis.set_xlabel("step")
        images["training_curves"] = _png(fig)
        plt.close(fig)
    if scores:
        fig, axis = plt.subplots(figsize=(5, 3))
        for model in sorted({s["model"] for s in scores}):
            axis.hist([s["reward"] for s in scores if s["model"] == model], bins=20, alpha=0.5, label=model)
        axis.set_title("evaluation reward per prompt")
        axis.legend()
        images["reward_distributions"] = _png(fig)
        plt.close(fig)
    if slices:
        names = sorted(slices)
        means = np.array([slices[n]["mean"] for n in names])
        errors = np.array(
            [
                [slices[n]["mean"] - slices[n]["low"] for n in names],
                [slices[n]["high"] - slices[n]["mean"] for n in names],
            ]
        )
        fig, axis = plt.subplots(figsize=(6, 0.4 * len(names) + 1))
        axis.errorbar(means, range(len(names)), xerr=errors, fmt="o")
        axis.axvline(0, color="grey", linewidth=1)
        axis.set_yticks(range(len(names)), names)
        axis.set_title("candidate - production, per slice (CI)")
        images["slice_deltas"] = _png(fig)
        plt.close(fig)
    return images


def build_report(
    run_uri: str,
    *,
    dataset_manifest: dict[str, Any],
    train_result: dict[str, Any] | None,
    eval_result: dict[str, Any] | None,
    decision: dict[str, Any],
    candidate_version: str | None,
    production_version: str | None,
    live_feedback: dict[str, Any] | None = None,
) -> dict[str, str]:
    """Write ``<run>/report/report.json`` and ``report.html``; return their URIs. ``live_feedback``: the
    gate's document of production's live feedback (``evaluation.live_feedback``), shown beside its offline score."""
    scores: list[dict[str, Any]] = []
    if eval_result is not None:
        try:
            table = pq.read_table(io.BytesIO(storage.read_bytes(eval_result["scores_uri"])))
            scores = table.select(["model", "reward"]).to_pylist()
        except storage.StorageError:
            scores = []
    history = (train_result or {}).get("history", [])
    document = {
        "run_uri": run_uri,
        "candidate_version": candidate_version,
        "production_version": production_version,
        "dataset": {
            k: dataset_manifest.get(k) for k in ("dataset_id", "window", "counts", "counts_by_agent")
        },
        "training": {
            k: (train_result or {}).get(k) for k in ("steps", "metrics", "versions", "base_model_version")
        },
        "evaluation": {
            k: (eval_result or {}).get(k)
            for k in ("prompts", "mean_reward", "tool_call_validity", "mean_response_chars")
        },
        "decision": decision,
        "history": history,
        "live_feedback": live_feedback,
    }
    images = _plots(history, scores, decision.get("slices") or {})
    verdict = "PROMOTE" if decision.get("promote") else "REJECT"

    def section(title: str, body: str) -> str:
        return f"<h2>{html.escape(title)}</h2>{body}"

    def pre(value: Any) -> str:
        return f"<pre>{html.escape(json.dumps(value, indent=2, sort_keys=True, default=str))}</pre>"

    image_tags = "".join(
        f'<figure><img alt="{name}" src="data:image/png;base64,{data}"><figcaption>{name.replace("_", " ")}</figcaption></figure>'
        for name, data in images.items()
    )
    reasons = "".join(f"<li>{html.escape(r)}</li>" for r in decision.get("reasons", []))
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>Training run report</title>"
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}figure{display:inline-block;margin:0 1em}"
        "pre{background:#f4f4f4;padding:.5em;overflow:auto}.verdict{font-size:1.4em;font-weight:bold}</style></head><body>"
        f"<h1>Training run report</h1><p>{html.escape(run_uri)}</p>"
        f"<p class='verdict'>Gate: {verdict} candidate {html.escape(str(candidate_version))} "
        f"(production {html.escape(str(production_version))})</p><ul>{reasons}</ul>"
        + section("Plots", image_tags)
        + report_section(live_feedback, eval_result)
        + section("Dataset", pre(document["dataset"]))
        + section("Training", pre(document["training"]))
        + section("Evaluation", pre(document["evaluation"]))
        + section("Decision", pre(decision))
        + "</body></html>"
    )
    json_uri = storage.join(run_uri, "report", "report.json")
    html_uri = storage.join(run_uri, "report", "report.html")
    storage.write_json(json_uri, document)
    storage.write_bytes(html_uri, page.encode())
    return {"json": json_uri, "html": html_uri}
