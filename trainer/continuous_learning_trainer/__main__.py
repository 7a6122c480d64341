"""``python -m continuous_learning_trainer {train,import-model,bootstrap,evaluate} --spec URI``.

``train`` stops cleanly on SIGTERM/SIGINT or at its time limit (``--max-seconds``, else the spec's
``hyperparameters.max_seconds``): the engine merges the latest checkpoint and writes a ``stopped``
TrainResult (:mod:`continuous_learning_trainer.stopping`); the exit status is 0, as for a finished run.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from continuous_learning.contracts import BootstrapSpec, EvalSpec, ImportResult, ImportSpec, RunSpec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="continuous_learning_trainer")
    parser.add_argument("command", choices=["train", "import-model", "bootstrap", "evaluate"])
    parser.add_argument("--spec", required=True, help="URI of the spec document (file:// or s3://)")
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=None,
        help="train: stop after this much wall time, keeping the latest checkpoint (default: the spec's)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "import-model":
        print(import_model(ImportSpec.read(args.spec)).model_dump_json())
    elif args.command == "bootstrap":
        from continuous_learning_trainer.cpu_engine import bootstrap

        uri = bootstrap(BootstrapSpec.read(args.spec))
        print(json.dumps({"model_uri": uri}))
    elif args.command == "train":
        from continuous_learning_trainer.stopping import StopRequest

        spec = RunSpec.read(args.spec)
        stop = StopRequest(args.max_seconds or spec.hyperparameters.max_seconds).install()
        try:
            if spec.engine == "verl":
                from continuous_learning_trainer import verl_engine

                result = verl_engine.train(spec, stop=stop)
            else:
                from continuous_learning_trainer.cpu_engine import train

                result = train(spec, stop=stop)
        finally:
            stop.uninstall()
        print(result.model_dump_json())
    else:
        from continuous_learning_trainer.evaluate import run_evaluation

        print(run_evaluation(EvalSpec.read(args.spec)).model_dump_json())
    return 0


def import_model(spec: ImportSpec) -> ImportResult:
    """The user's model as the day-0 base: checked and fixed, optionally warm-started on the agent's logged
    answers (``spec.imitation``, for demos and tests whose model did not write the logs), then uploaded."""
    import tempfile
    from pathlib import Path

    from continuous_learning.models.importing import prepare_model, publish_model

    with tempfile.TemporaryDirectory(prefix="cl-import-") as tmp:
        prepared = prepare_model(spec, Path(tmp))
        imitation = None
        if spec.imitation is not None:
            from continuous_learning_trainer.sft import imitate_agent

            imitation = imitate_agent(
                prepared.folder, spec.imitation, prepared.tool_call_format, spec.cpu_threads
            )
        return publish_model(prepared, spec, imitation=imitation)


if __name__ == "__main__":
    sys.exit(main())
