"""The run's reward: a user's function by import path or file (file://, s3://), else the project's."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from continuous_learning import storage
from continuous_learning.contracts import RewardFunction, RewardWeights
from continuous_learning.models.tool_calls import format_calls
from continuous_learning_trainer import reward_function, rewards
from continuous_learning_trainer.reward_function import RewardFunctionError, compute_score, load_reward, score

from tests.trainer.helpers import TOOLS

REFERENCE = {
    "content": None,
    "tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}],
    "negatives": [],
}
GOOD = '<tool_call>{"name":"get_weather","arguments":{"city":"Paris"}}</tool_call>'
LENGTH_REWARD = """
LOADS = [1]

def length(response, reference, tools, scale=1.0):
    assert isinstance(reference, dict) and (tools is None or isinstance(tools, list))
    return len(response) * scale

not_a_function = 3
"""


@pytest.fixture(autouse=True)
def fresh_cache() -> Iterator[None]:
    reward_function.clear_cache()
    yield
    reward_function.clear_cache()


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """An importable module ``cl_test_user_reward`` (as if installed, or shipped with the job)."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "cl_test_user_reward.py").write_text(LENGTH_REWARD)
    monkeypatch.syspath_prepend(str(tmp_path / "pkg"))
    return "cl_test_user_reward"


def test_default_is_the_projects_reward() -> None:
    weights = RewardWeights()
    expected = rewards.score_response(GOOD, REFERENCE, TOOLS, weights).total
    got = score(GOOD, REFERENCE, TOOLS, reward=RewardFunction(), weights=weights, tool_call_format="hermes")
    assert got == expected == pytest.approx(1.0)


def test_import_path_is_called_with_kwargs(user_module: str) -> None:
    reward = RewardFunction(function=f"{user_module}:length", kwargs={"scale": 0.5})
    assert score("abcd", REFERENCE, TOOLS, reward=reward, weights=RewardWeights()) == 2.0
    assert load_reward(reward) is load_reward(f"{user_module}:length")  # cached per process


def test_file_uri_is_loaded_as_a_module(tmp_path: Path) -> None:
    (tmp_path / "my_reward.py").write_text(LENGTH_REWARD)
    reward = RewardFunction(function=f"file://{tmp_path}/my_reward.py:length")
    assert score("abc", REFERENCE, None, reward=reward, weights=RewardWeights()) == 3.0
    module_globals = load_reward(reward).__globals__
    assert module_globals["__file__"] == f"file://{tmp_path}/my_reward.py"


def test_s3_uri_is_read_through_storage(monkeypatch: pytest.MonkeyPatch) -> None:
    read: list[str] = []

    def fake_read(uri: str) -> bytes:
        read.append(uri)
        return LENGTH_REWARD.encode()

    monkeypatch.setattr(storage, "read_bytes", fake_read)
    reward = RewardFunction(function="s3://bucket/rewards/x.py:length")
    for _ in range(3):
        assert score("ab", REFERENCE, None, reward=reward, weights=RewardWeights()) == 2.0
    assert read == ["s3://bucket/rewards/x.py"]  # downloaded once per process


@pytest.mark.parametrize(
    ("function", "message"),
    [
        ("cl_no_such_module_xyz:fn", "module 'cl_no_such_module_xyz' not found"),
        ("{module}:missing", "has no attribute 'missing'"),
        ("{module}:not_a_function", "'not_a_function' is a int, not callable"),
        ("file:///nonexistent/dir/r.py:fn", "cannot read file:///nonexistent/dir/r.py"),
        ("{file_broken}:fn", "loading file://"),
        ("{file_missing_dep}:fn", "ModuleNotFoundError"),
        ("{module_missing_dep}:fn", "imports 'cl_absent_dependency_xyz', which is not installed"),
    ],
)
def test_bad_names_fail_with_the_problem_named(
    function: str, message: str, user_module: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "broken.py").write_text("def fn(:\n")
    (tmp_path / "needs_dep.py").write_text("import cl_absent_dependency_xyz\n")
    (tmp_path / "pkg" / "cl_test_needs_dep.py").write_text("import cl_absent_dependency_xyz\n")
    name = function.format(
        module=user_module,
        file_broken=f"file://{tmp_path}/broken.py",
        file_missing_dep=f"file://{tmp_path}/needs_dep.py",
        module_missing_dep="cl_test_needs_dep",
    )
    with pytest.raises(RewardFunctionError, match=message.replace("(", r"\(")) as caught:
        load_reward(RewardFunction(function=name))
    assert name in str(caught.value)


def test_a_failing_user_function_names_itself(tmp_path: Path) -> None:
    (tmp_path / "r.py").write_text("def fn(response, reference, tools):\n    return reference['missing']\n")
    reward = RewardFunction(function=f"file://{tmp_path}/r.py:fn")
    with pytest.raises(RewardFunctionError, match=r"r\.py:fn' failed: KeyError"):
        score("x", REFERENCE, None, reward=reward, weights=RewardWeights())


def test_verl_entry_point_takes_weights_format_and_user_function(user_module: str) -> None:
    truth = json.dumps(REFERENCE)
    extra = {"tools_json": json.dumps(TOOLS)}
    ours = compute_score("agent/travel", GOOD, truth, extra, format=0.2, tool_name=0.4, arguments=0.4)
    assert ours == pytest.approx(1.0)
    wrong = '<tool_call>{"name":"get_weather","arguments":{"city":"Rome"}}</tool_call>'
    only_name = compute_score(
        "agent/travel",
        wrong,
        truth,
        extra,
        format=0.0,
        tool_name=1.0,
        arguments=0.0,
        tool_call_format="hermes",
    )
    assert only_name == pytest.approx(1.0)
    user = compute_score(
        "agent/travel",
        "abcdef",
        truth,
        extra,
        format=0.2,
        tool_call_format="hermes",
        reward_function=f"{user_module}:length",
        reward_function_kwargs={"scale": 2.0},
    )
    assert user == 12.0
    assert compute_score("agent/travel", "abc", truth, None, reward_function=None) == pytest.approx(0.0)


def test_verl_entry_point_scores_multi_call_answers_in_each_format() -> None:
    """VeRL hands the decoded response and the JSON ground truth: a two-call reference, answered in full,
    with its second call missing, and in the wrong order, in each family's format."""
    first = {"name": "get_weather", "arguments": {"city": "Paris"}}
    second = {"name": "get_weather", "arguments": {"city": "Oslo"}}
    truth = json.dumps({"content": None, "tool_calls": [first, second], "negatives": []})
    extra = {"tools_json": json.dumps(TOOLS)}
    for fmt in ("hermes", "llama3_json", "mistral"):

        def total(calls: list[dict[str, object]], fmt: str = fmt) -> float:
            return compute_score("agent/travel", format_calls(calls, fmt), truth, extra, tool_call_format=fmt)  # type: ignore[arg-type]

        assert total([first, second]) == pytest.approx(1.0), fmt
        assert total([first]) == pytest.approx(0.2 + 0.4 * 0.5 + 0.4 * 0.5), fmt
        assert total([second, first]) == pytest.approx(0.2 + 0.4 * 0.75 + 0.4), fmt  # one of two in order
