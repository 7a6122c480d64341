"""The reward a run scores with: the user's function when the spec names one, else the project's.

One place for training (CPU GRPO, VeRL through :func:`compute_score`) and evaluation alike.

A user's reward is named ``package.module:function`` (importable where the trainer runs) or a Python
file ``file:///path/my_reward.py:function`` / ``s3://bucket/my_reward.py:function`` (downloaded and
loaded as a module). It is called as ``function(response, reference, tools, **kwargs) -> float`` with
``reference`` the parsed ``reward_model.ground_truth`` (``{"content", "tool_calls", "negatives"}``),
``tools`` the prompt's OpenAI tool specs (or None) and ``kwargs`` the spec's ``reward.kwargs``.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import math
import sys
import types
from collections.abc import Callable
from typing import Any

from continuous_learning import storage
from continuous_learning.contracts import RewardFunction, RewardWeights

from continuous_learning_trainer import rewards

RewardCallable = Callable[..., float]

#: Loaded user functions, by their ``function`` string: one import (or download) per process.
_LOADED: dict[str, RewardCallable] = {}


class RewardFunctionError(ValueError):
    """A user's reward function cannot be loaded or called; the message names the problem."""


def _split(path: str) -> tuple[str, str]:
    location, sep, attribute = path.rpartition(":")
    if not sep or not location or not attribute.isidentifier():
        raise RewardFunctionError(
            f"reward function {path!r}: expected 'package.module:function' or 'file:///path/x.py:function' "
            "(or s3://bucket/x.py:function)"
        )
    return location, attribute


def _module_from_source(path: str, location: str) -> types.ModuleType:
    uri = location if "://" in location else f"file://{location}"
    try:
        source = storage.read_bytes(uri)
    except (storage.StorageError, OSError) as exc:
        raise RewardFunctionError(f"reward function {path!r}: cannot read {uri}: {exc}") from None
    name = "cl_user_reward_" + hashlib.sha256(uri.encode() + source).hexdigest()[:16]
    module = types.ModuleType(name)
    module.__file__ = uri
    sys.modules[name] = module  # dataclasses and pickling look the module up by name while it executes
    try:
        exec(compile(source, uri, "exec"), module.__dict__)  # the user's reward, by design
    except Exception as exc:
        del sys.modules[name]
        raise RewardFunctionError(
            f"reward function {path!r}: loading {uri} failed: {type(exc).__name__}: {exc}"
        ) from exc
    return module


def _import_module(path: str, location: str) -> types.ModuleType:
    try:
        return importlib.import_module(location)
    except ModuleNotFoundError as exc:
        missing = exc.name or str(exc)
        if missing == location or location.startswith(f"{missing}."):
            raise RewardFunctionError(f"reward function {path!r}: module {location!r} not found") from None
        raise RewardFunctionError(
            f"reward function {path!r}: module {location!r} imports {missing!r}, which is not installed"
        ) from exc
    except Exception as exc:
        raise RewardFunctionError(
            f"reward function {path!r}: importing {location!r} failed: {type(exc).__name__}: {exc}"
        ) from exc


def clear_cache() -> None:
    """Forget the loaded user functions (a changed file is loaded again on next use)."""
    _LOADED.clear()


def load_reward(function: RewardFunction | str) -> RewardCallable:
    """The user's reward function named by ``function`` (cached per process).

    Raises :class:`RewardFunctionError` naming the problem: a malformed name, a module or file that
    cannot be found or loaded, no such attribute, or an attribute that is not callable.
    """
    path = function if isinstance(function, str) else function.function
    if not path:
        raise RewardFunctionError("no reward function named (RewardFunction.function is unset)")
    if path in _LOADED:
        return _LOADED[path]
    location, attribute = _split(path)
    is_file = "://" in location or location.endswith(".py")
    module = _module_from_source(path, location) if is_file else _import_module(path, location)
    where = module.__file__ if is_file else f"module {location!r}"
    if not hasattr(module, attribute):
        raise RewardFunctionError(f"reward function {path!r}: {where} has no attribute {attribute!r}")
    found = getattr(module, attribute)
    if not callable(found):
        raise RewardFunctionError(
            f"reward function {path!r}: {attribute!r} is a {type(found).__name__}, not callable"
        )
    _LOADED[path] = found
    return found  # type: ignore[no-any-return]


#: Whether ``rewards.score_response`` takes ``tool_call_format`` yet (it parses Hermes only before that).
_SCORE_TAKES_FORMAT = "tool_call_format" in inspect.signature(rewards.score_response).parameters


def breakdown(
    response: str,
    reference: dict[str, Any],
    tools: list[dict[str, Any]] | None,
    weights: RewardWeights,
    tool_call_format: str = "hermes",
) -> rewards.RewardBreakdown:
    """The project's reward with its parts (the guardrail columns of evaluation)."""
    score_response: Any = rewards.score_response
    if _SCORE_TAKES_FORMAT:
        return score_response(response, reference, tools, weights, tool_call_format=tool_call_format)  # type: ignore[no-any-return]
    if tool_call_format != "hermes":
        raise NotImplementedError(f"the reward module cannot parse tool-call format {tool_call_format!r} yet")
    return score_response(response, reference, tools, weights)  # type: ignore[no-any-return]


def score(
    response: str,
    reference: dict[str, Any],
    tools: list[dict[str, Any]] | None,
    *,
    reward: RewardFunction,
    weights: RewardWeights,
    tool_call_format: str = "hermes",
) -> float:
    """The run's reward of ``response``: the user's function when ``reward.function`` is set, else
    the project's total (:func:`continuous_learning_trainer.rewards.score_response`)."""
    if not reward.function:
        return breakdown(response, reference, tools, weights, tool_call_format).total
    fn = load_reward(reward)
    try:
        value = float(fn(response, reference, tools, **reward.kwargs))
    except Exception as exc:
        raise RewardFunctionError(
            f"reward function {reward.function!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
    if math.isnan(value):
        raise RewardFunctionError(f"reward function {reward.function!r} returned NaN")
    return value


def compute_score(
    data_source: str,
    solution_str: str,
    ground_truth: str,
    extra_info: dict[str, Any] | None = None,
    **reward_kwargs: Any,
) -> float:
    """VeRL's ``reward.custom_reward_function`` entry point.

    ``reward_kwargs`` (VeRL's ``reward.custom_reward_function.reward_kwargs``) carry the run spec's
    ``RewardWeights`` fields (``format=0.2``, ...), ``tool_call_format``, ``reward_function`` (the
    user's function name, or None) and ``reward_function_kwargs`` (a dict); other keyword arguments
    VeRL passes are ignored. The user's function is loaded once per process.
    """
    tools_json = (extra_info or {}).get("tools_json")
    tools = json.loads(tools_json) if tools_json else None
    fields = RewardWeights.model_fields
    weights = RewardWeights(**{k: float(v) for k, v in reward_kwargs.items() if k in fields})
    reward = RewardFunction(
        function=reward_kwargs.get("reward_function") or None,
        kwargs=dict(reward_kwargs.get("reward_function_kwargs") or {}),
    )
    reference = json.loads(ground_truth) if isinstance(ground_truth, str) else dict(ground_truth)
    return score(
        solution_str,
        reference,
        tools,
        reward=reward,
        weights=weights,
        tool_call_format=str(reward_kwargs.get("tool_call_format") or "hermes"),
    )
