"""The run report: one HTML page (plots inline, tables a person reads at a glance) and its JSON, stored
with the run and the version.

Training curves read the metric names of whichever engine ran: TRL's on CPU (``reward``, ``kl``, ``loss``,
``completions/mean_length``) and VeRL's on GPU (``critic/rewards/mean``, ``actor/ppo_kl``, ``actor/pg_loss``,
``actor/entropy``, ``response_length/mean``, ``timing_s/step``; SFT: ``train/loss``). Each panel names the
metric it drew.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from continuous_learning import storage
from continuous_learning.evaluation.live_feedback import report_section

#: One panel per quantity: (title, the metric names that mean it, first present wins).
CURVES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("reward", ("reward", "critic/rewards/mean", "critic/score/mean")),
    ("KL", ("kl", "actor/ppo_kl", "actor/kl_loss")),
    ("loss", ("loss", "actor/pg_loss", "train/loss", "actor/loss")),
    ("entropy", ("entropy", "actor/entropy")),
    ("response length", ("completions/mean_length", "response_length/mean")),
    ("step time (s)", ("step_time", "timing_s/step")),
)

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:1150px;margin:2em auto;color:#222}"
    "figure{display:inline-block;margin:0 1em 1em 0}figcaption{text-align:center;color:#555}"
    "table{border-collapse:collapse;margin:.5em 0 1.2em}th,td{border:1px solid #ccc;padding:.3em .7em}"
    "th{background:#f0f0f0;text-align:left}td.num{text-align:right;font-variant-numeric:tabular-nums}"
    ".verdict{font-size:1.4em;font-weight:bold;padding:.4em .7em;display:inline-block;border-radius:4px}"
    ".promote{background:#d7f5dd;color:#11602a}.reject{background:#fbe0e0;color:#8a1c1c}"
    "tr.bad td{background:#fdeaea}tr.good td{background:#eefaf0}h2{border-bottom:1px solid #ddd}"
    "code{background:#f4f4f4;padding:0 .2em}"
)


def curve_keys(history: Sequence[Mapping[str, float]]) -> list[tuple[str, str]]:
    """(title, metric name) of each panel the history can draw, in :data:`CURVES` order."""
    present = {k for h in history for k in h}
    found = []
    for title, names in CURVES:
        name = next((n for n in names if n in present), None)
        if name is not None:
            found.append((title, name))
    return found


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
    present = curve_keys(history)
    if present:
        columns = min(3, len(present))
        rows = -(-len(present) // columns)
        fig, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3 * rows), squeeze=False)
        for axis, (title, key) in zip(axes.flat, present, strict=False):
            points = [(h.get("step", i + 1), h[key]) for i, h in enumerate(history) if key in h]
            axis.plot(
                [p[0] for p in points], [p[1] for p in points], marker="o" if len(points) < 20 else None
            )
            axis.set_title(f"{title}\n{key}", fontsize=10)
            axis.set_xlabel("step")
        for axis in list(axes.flat)[len(present) :]:
            axis.axis("off")
        fig.tight_layout()
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


def _cell(value: Any) -> str:
    if value is None:
        return "<td>-</td>"
    if isinstance(value, bool):
        return f"<td>{'yes' if value else 'no'}</td>"
    if isinstance(value, int):
        return f"<td class='num'>{value:,}</td>"
    if isinstance(value, float):
        text = f"{value:.4g}" if abs(value) < 1e5 else f"{value:,.0f}"
        return f"<td class='num'>{text}</td>"
    if isinstance(value, Mapping):
        return "<td>" + html.escape(", ".join(f"{k}: {v}" for k, v in value.items())) + "</td>"
    if isinstance(value, list | tuple):
        return "<td>" + html.escape(", ".join(str(v) for v in value)) + "</td>"
    return f"<td>{html.escape(str(value))}</td>"


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], classes: Sequence[str] | None = None) -> str:
    """An HTML table; ``classes``: one row class each (``good``, ``bad`` or empty)."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header) if any(header) else ""
    body = "".join(
        (f"<tr class='{classes[i]}'>" if classes and classes[i] else "<tr>")
        + "".join(_cell(v) for v in row)
        + "</tr>"
        for i, row in enumerate(rows)
    )
    thead = f"<thead><tr>{head}</tr></thead>" if head else ""
    return f"<table>{thead}<tbody>{body}</tbody></table>"


def _pairs(document: Mapping[str, Any]) -> str:
    return table(["", ""], [(k, v) for k, v in document.items() if v not in (None, {}, [])])


def dataset_section(dataset: Mapping[str, Any]) -> str:
    window = dataset.get("window") or {}
    counts = dataset.get("counts") or {}
    summary = _pairs({"dataset": dataset.get("dataset_id"), "window ends": window.get("end"),
                      "lookback days": window.get("lookback_days")})  # fmt: skip
    splits = [s for s in ("train", "validation", "test") if s in counts] + sorted(
        set(counts) - {"train", "validation", "test"}
    )
    by_agent = dataset.get("counts_by_agent") or {}
    agents = sorted({a for split in by_agent.values() for a in split})
    rows: list[list[Any]] = [[a, *[by_agent.get(s, {}).get(a, 0) for s in splits]] for a in agents]
    rows.append(["all agents", *[counts[s] for s in splits]])
    return summary + (table(["agent", *splits], rows) if splits else "")


def training_section(training: Mapping[str, Any], history: Sequence[Mapping[str, float]]) -> str:
    metrics = training.get("metrics") or {}
    summary = _pairs({"steps": training.get("steps"), "base model": training.get("base_model_version"),
                      "status": training.get("status"), "curves from": ", ".join(k for _, k in curve_keys(history))})  # fmt: skip
    versions = training.get("versions") or {}
    return (
        summary
        + (table(["metric", "value"], sorted(metrics.items())) if metrics else "")
        + (table(["package", "version"], sorted(versions.items())) if versions else "")
    )


def evaluation_section(evaluation: Mapping[str, Any]) -> str:
    columns = [("mean reward", "mean_reward"), ("tool-call validity", "tool_call_validity"),
               ("mean response chars", "mean_response_chars")]  # fmt: skip
    models = sorted({m for _, key in columns for m in (evaluation.get(key) or {})})
    rows = [[m, *[(evaluation.get(key) or {}).get(m) for _, key in columns]] for m in models]
    prompts = _pairs({"held-out prompts": evaluation.get("prompts")})
    return prompts + (table(["model", *[c for c, _ in columns]], rows) if rows else "")


def decision_section(decision: Mapping[str, Any]) -> str:
    intervals = [("overall", decision.get("overall")), *sorted((decision.get("slices") or {}).items())]
    rows, classes = [], []
    for name, interval in intervals:
        if not interval:
            continue
        rows.append(
            [name, interval.get("mean"), interval.get("low"), interval.get("high"), interval.get("n")]
        )
        classes.append("good" if interval.get("low", 0) > 0 else "bad" if interval.get("high", 0) < 0 else "")
    means = _pairs({"candidate mean reward": decision.get("candidate_mean"),
                    "production mean reward": decision.get("production_mean")})  # fmt: skip
    guardrails = decision.get("guardrails") or {}
    return (
        means
        + (
            table(["slice", "candidate - production", "CI low", "CI high", "prompts"], rows, classes)
            if rows
            else ""
        )
        + (table(["guardrail", "value"], sorted(guardrails.items())) if guardrails else "")
    )


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
            table_ = pq.read_table(io.BytesIO(storage.read_bytes(eval_result["scores_uri"])))
            scores = table_.select(["model", "reward"]).to_pylist()
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
            k: (train_result or {}).get(k)
            for k in ("steps", "status", "metrics", "versions", "base_model_version")
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
    promote = bool(decision.get("promote"))
    verdict = "PROMOTE" if promote else "REJECT"

    def section(title: str, body: str) -> str:
        return f"<section id='{title.lower()}'><h2>{html.escape(title)}</h2>{body}</section>"

    image_tags = "".join(
        f'<figure><img alt="{name}" src="data:image/png;base64,{data}"><figcaption>{name.replace("_", " ")}</figcaption></figure>'
        for name, data in images.items()
    )
    reasons = "".join(f"<li>{html.escape(r)}</li>" for r in decision.get("reasons", []))
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>Training run report</title><style>{_STYLE}</style>"
        f"</head><body><h1>Training run report</h1><p><code>{html.escape(run_uri)}</code></p>"
        f"<p class='verdict {'promote' if promote else 'reject'}'>Gate: {verdict} candidate "
        f"{html.escape(str(candidate_version))} (production {html.escape(str(production_version))})</p>"
        f"<ul>{reasons}</ul>"
        + section("Decision", decision_section(decision))
        + section("Plots", image_tags)
        + report_section(live_feedback, eval_result)
        + section("Dataset", dataset_section(document["dataset"]))
        + section("Training", training_section(document["training"], history))
        + section("Evaluation", evaluation_section(document["evaluation"]))
        + "</body></html>"
    )
    json_uri = storage.join(run_uri, "report", "report.json")
    html_uri = storage.join(run_uri, "report", "report.html")
    storage.write_json(json_uri, document)
    storage.write_bytes(html_uri, page.encode())
    return {"json": json_uri, "html": html_uri}
