"""Stopping a run: the stop request (signals, the time limit) and the wall-clock trainer's decisions."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from continuous_learning_trainer.stopping import CheckpointClock, StopRequest
from continuous_learning_trainer.verl_engine.wall_clock import StepDecision, after_step

from tests.trainer.helpers import REPO


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_time_limit_stops_when_another_step_would_pass_it() -> None:
    clock = Clock()
    stop = StopRequest(max_seconds=100, clock=clock)
    assert stop.should_stop() is None
    clock.now += 80
    assert stop.should_stop(step_seconds=10) is None
    assert stop.should_stop(step_seconds=25) == "time limit of 100 s"
    assert stop.reason == "time limit of 100 s"  # kept once set
    assert StopRequest.deadline(None).should_stop(1e9) is None


def test_signals_mark_the_request_and_handlers_are_put_back() -> None:
    before = signal.getsignal(signal.SIGTERM)
    stop = StopRequest().install()
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.wait(5) == "SIGTERM"
        os.kill(os.getpid(), signal.SIGTERM)  # again: still stopping, the first reason kept
        assert stop.reason == "SIGTERM"
    finally:
        stop.uninstall()
    assert signal.getsignal(signal.SIGTERM) is before


def test_checkpoint_clock() -> None:
    clock = Clock()
    every = CheckpointClock(60, clock=clock)
    clock.now += 59
    assert not every.due()
    clock.now += 1
    assert every.due()
    every.saved()
    assert not every.due() and not CheckpointClock(None, clock=clock).due()


def decide(step: int, now: float, **kw: float | None) -> StepDecision:
    args: dict = {"total_steps": 10, "save_freq": 5, "last_save": 0.0, "longest_step": 30.0}
    args |= {"every_seconds": None, "stop_at": None} | kw
    return after_step(global_step=step, now=now, **args)


def test_wall_clock_trainer_saves_what_verl_would_not_and_stops_before_the_deadline() -> None:
    assert decide(3, now=100.0) == StepDecision(save=False, checkpointed=False)
    assert decide(3, now=100.0, every_seconds=90.0) == StepDecision(save=True, checkpointed=True)
    assert decide(3, now=80.0, every_seconds=90.0).save is False
    # VeRL saves step 5 (save_freq) and the last step itself: no second save
    assert decide(5, now=100.0, every_seconds=90.0) == StepDecision(save=False, checkpointed=True)
    assert decide(10, now=100.0, every_seconds=90.0, stop_at=110.0) == StepDecision(
        save=False, checkpointed=True
    )
    # one more 30 s step would end past the deadline: save and stop now
    stopping = decide(3, now=200.0, stop_at=225.0)
    assert stopping.save and stopping.checkpointed and stopping.stop is not None
    assert stopping.stop.startswith("time limit: step 3 ended 25 s before the deadline")
    assert decide(3, now=100.0, stop_at=225.0).stop is None
    at_verl_save = decide(5, now=200.0, stop_at=225.0)
    assert not at_verl_save.save and at_verl_save.checkpointed and at_verl_save.stop


IMAGE_LOCK = REPO / ".tools" / "image-lock"
#: Run in the image-lock venv (VeRL and its dependencies as the image pins them): the wall-clock trainer
#: registers as a subclass of VeRL's sync V1 trainer, and the project's PPO entry point composes VeRL's
#: ppo_trainer config (Hydra ``--cfg job``: printed, not run) with the task runner replaced.
WALL_CLOCK_PROBE = """
import runpy, sys
from continuous_learning_trainer.verl_engine import main_ppo, wall_clock
from verl.trainer import main_ppo as verl_main_ppo
from verl.trainer.ppo.v1 import PPOTrainerSync, get_trainer_cls
trainer = wall_clock.register()
assert get_trainer_cls("cl_sync") is trainer and wall_clock.register() is trainer
assert issubclass(trainer, PPOTrainerSync) and trainer.step is wall_clock.WallClockSteps.step
sys.argv = ["main_ppo", "--cfg", "job", *sys.argv[1:]]
runpy.run_module("continuous_learning_trainer.verl_engine.main_ppo", run_name="__main__")
runner = verl_main_ppo.TaskRunnerV1.__ray_actor_class__
assert runner is main_ppo.WallClockTaskRunner, runner  # the importable class, not a __main__ copy
"""


@pytest.mark.skipif(not (IMAGE_LOCK / "bin" / "python").exists(), reason="run `make trainer-tools`")
def test_wall_clock_trainer_and_entry_point_against_the_image_lock(tmp_path: Path) -> None:
    import subprocess

    import yaml
    from continuous_learning_trainer.verl_engine.layout import Layout
    from continuous_learning_trainer.verl_engine.overrides import build_overrides

    from tests.trainer.helpers import run_spec

    spec = run_spec(hyperparameters={"checkpoint_every_seconds": 600.0})
    overrides = build_overrides(spec, Layout(Path("/fsx/runs/run-1")), train_rows=1000, stop_at=1.8e9)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "PYTHONPATH": f"{REPO / 'plugins'}:{REPO / 'trainer'}",
        "CUDA_VISIBLE_DEVICES": "",
        "LD_LIBRARY_PATH": str(IMAGE_LOCK / "cuda-driver-stub"),
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    out = subprocess.run(
        [str(IMAGE_LOCK / "bin" / "python"), "-c", WALL_CLOCK_PROBE, *overrides],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    config = yaml.safe_load(out.stdout)
    assert config["trainer"]["v1"]["trainer_mode"] == "cl_sync"
    assert config["continuous_learning"] == {"checkpoint_every_seconds": 600.0, "stop_at": 1.8e9}
    assert config["trainer"]["save_freq"] == 2
