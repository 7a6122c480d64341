"""Command line: ``python -m continuous_learning {generate-logs,ingest,build-dataset,assemble-dataset,
register-model}``.

Each command's last line of standard output is one JSON object with its counts (or the registered version).
"""

from __future__ import annotations

import argparse
import json
import logging
from datetime import date
from typing import Any

from continuous_learning.config import ConfigError, load_settings


def _day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {value!r}") from None


def _emit(document: dict[str, Any]) -> None:
    print(json.dumps(document, sort_keys=True, default=str))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="continuous_learning", description=__doc__)
    parser.add_argument("--env", choices=["local", "prod"], default=None, help="settings environment")
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate-logs", help="write synthetic raw logs (schema v1) and late feedback")
    gen.add_argument("--start", type=_day, required=True)
    gen.add_argument("--days", type=int, default=3)
    gen.add_argument("--out", required=True, help="base URI; writes <out>/raw and <out>/feedback")
    gen.add_argument("--per-day", type=int, default=400, help="interactions per day")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument(
        "--world",
        choices=["default", "production"],
        default="default",
        help="default: the demo's small world; production: overlapping tools, arguments to normalise, "
        "multi-call answers and an agent with systematic mistakes (see benchmarks/world/)",
    )

    ing = sub.add_parser("ingest", help="ingest one day of raw logs into a curated partition")
    ing.add_argument("--date", type=_day, required=True)
    ing.add_argument("--raw", help="raw logs prefix (default: settings)")
    ing.add_argument("--feedback", help="late feedback prefix (default: settings)")
    ing.add_argument("--out", help="data prefix (default: settings)")

    build = sub.add_parser("build-dataset", help="write one day's reward-dataset partition")
    build.add_argument("--date", type=_day, required=True)
    build.add_argument("--data", help="data prefix (default: settings)")

    assemble = sub.add_parser("assemble-dataset", help="union a lookback window into a training dataset")
    assemble.add_argument("--end", type=_day, required=True)
    assemble.add_argument("--days", type=int, help="lookback days (default: settings)")
    assemble.add_argument("--data", help="data prefix (default: settings)")

    reg = sub.add_parser(
        "register-model",
        help="onboard a model (Hugging Face format) as a registry version: validate, fix, copy, record lineage",
    )
    reg.add_argument(
        "--uri", required=True, help="s3://..., file://..., a folder, builtin:smollm2 or hf://org/name"
    )
    reg.add_argument("--chat-template", help="override: a shipped template name or a .jinja file")
    reg.add_argument("--tool-call-format", choices=["auto", "hermes", "llama3_json", "mistral"], default=None)
    reg.add_argument("--gguf-file", help="a GGUF file in the folder to convert")
    reg.add_argument("--dtype", choices=["auto", "bfloat16", "float16", "float32"], default=None)
    reg.add_argument("--promote", action="store_true", help="make it the production model")
    reg.add_argument("--reason", help="why (required with --promote; kept in the alias history)")

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings(args.env)
    except ConfigError as exc:
        parser.exit(2, f"error: {exc}\n")

    if args.command == "generate-logs":
        from continuous_learning.data.synthetic import generate_logs

        if args.days < 1 or args.per_day < 1:
            parser.error("--days and --per-day must be at least 1")
        days = generate_logs(args.out, args.start, args.days, args.per_day, args.seed, world=args.world)
        _emit({"days": [d.__dict__ for d in days]})
    elif args.command == "ingest":
        from continuous_learning.data.ingest import IngestError, ingest_day

        try:
            report = ingest_day(
                args.date,
                raw_uri=args.raw or settings.storage.raw_uri,
                out_uri=args.out or settings.storage.data_uri,
                feedback_uri=args.feedback or settings.storage.feedback_uri,
                max_record_bytes=settings.ingest.max_record_bytes,
                max_quarantine_share=settings.ingest.max_quarantine_share,
            )
        except IngestError as exc:
            parser.exit(1, f"error: {exc}\n")
        _emit(report.as_dict())
    elif args.command == "build-dataset":
        from continuous_learning.data.reward_dataset import build_day_partition

        day_report = build_day_partition(
            args.data or settings.storage.data_uri,
            args.date,
            settings.dataset.validation_share,
            settings.dataset.test_share,
        )
        _emit(day_report.__dict__)
    elif args.command == "register-model":
        from continuous_learning.models.onboarding import OnboardingError, register_model

        if args.promote and not (args.reason or "").strip():
            parser.error("--promote needs --reason")
        try:
            registered = register_model(
                settings,
                args.uri,
                chat_template=args.chat_template,
                tool_call_format=args.tool_call_format,
                gguf_file=args.gguf_file,
                dtype=args.dtype,
                promote_reason=args.reason if args.promote else None,
            )
        except OnboardingError as exc:
            parser.exit(1, f"error: {exc}\n")
        _emit(registered)
    else:
        from continuous_learning.data.reward_dataset import assemble_window

        dataset = assemble_window(
            args.data or settings.storage.data_uri, args.end, args.days or settings.dataset.lookback_days
        )
        _emit({"dataset_id": dataset.dataset_id, "uri": dataset.uri, "counts": dataset.counts})
    return 0
