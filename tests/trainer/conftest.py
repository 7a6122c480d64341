"""Fixtures shared by the trainer tests: the tiny models, the chat-template render spy, a fresh reward cache."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from continuous_learning.models import chat_templates
from continuous_learning_trainer import reward_function

from tests.trainer.helpers import build_tiny


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-models")
    return {
        "plain": build_tiny(root / "plain", chatml=False),
        "chatml": build_tiny(root / "chatml", chatml=True),
    }


@pytest.fixture
def rendered(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[Any, Any]]]:
    """Records every ``chat_templates.render_prompt`` call; until the module renders, the template is
    applied directly (what render_prompt does for a template that takes tools)."""
    calls: list[tuple[Any, Any]] = []
    real = chat_templates.render_prompt

    def spy(tokenizer: Any, messages: list[dict[str, Any]], tools: Any) -> str:
        calls.append((messages, tools))
        try:
            return real(tokenizer, messages, tools)
        except NotImplementedError:
            text = tokenizer.apply_chat_template(
                messages, tools=tools, add_generation_prompt=True, tokenize=False
            )
            return str(text)

    monkeypatch.setattr(chat_templates, "render_prompt", spy)
    yield calls


@pytest.fixture(autouse=True)
def fresh_reward_cache() -> Iterator[None]:
    reward_function.clear_cache()
    yield
    reward_function.clear_cache()
