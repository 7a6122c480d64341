"""The project's small extensions of VeRL 0.9.1, loaded inside VeRL's own processes.

- **Tool parsers** ``llama3_json`` and ``mistral`` (VeRL registers ``hermes`` and others, not these two):
  ``ToolParser.register`` subclasses that read the response with
  :func:`continuous_learning.models.tool_calls.parse`, the parser the reward uses.
- **Agent loop** ``cl_tool_agent``: VeRL's tool agent loop, as a class of this module. VeRL's
  ``AgentLoopWorker.__init__`` (verl/experimental/agent_loop/agent_loop.py) reads
  ``rollout.agent.agent_loop_config_path`` (:func:`agent_loop_config`) into its registry, and
  ``_run_agent_loop`` builds each loop with ``hydra.utils.instantiate({"_target_": ...})``, which imports
  this module in the agent-loop worker process before ``ToolAgentLoop.__init__`` asks
  ``ToolParser.get_tool_parser(multi_turn.format)`` for its parser: that is what makes the
  registrations above exist in the process that needs them (the driver's imports do not reach it).
- **SFT dataset** :class:`JsonMultiTurnSFTDataset` (``data.custom_cls`` of ``verl.trainer.sft_trainer_ray``):
  VeRL's ``MultiTurnSFTDataset`` with ``messages`` and ``tools`` stored as JSON text, because a parquet
  struct column gives every row the union of all rows' keys (a tool's parameters would gain the other
  tools' parameters as nulls).

Everything VeRL-specific sits behind a guarded import: this module imports without VeRL (the dev venv,
the launcher's pure helpers), and then defines only the functions.
"""

from __future__ import annotations

import json
import logging
from typing import Any

log = logging.getLogger(__name__)

MODULE = "continuous_learning_trainer.verl_plugins"
TOOL_AGENT = "cl_tool_agent"
#: VeRL's own single-turn loop: rows without tools never need a tool parser.
SINGLE_TURN_AGENT = "single_turn_agent"
SFT_DATASET = "JsonMultiTurnSFTDataset"
#: Tool-call formats whose parser this module registers (VeRL 0.9.1 has its own ``hermes``).
REGISTERED_FORMATS = ("llama3_json", "mistral")
#: Special tokens that are part of a format's tool-call syntax, kept when a response is decoded.
FORMAT_MARKERS = {"llama3_json": ("<|python_tag|>",), "mistral": ("[TOOL_CALLS]",)}


# --------------------------------------------------------------------------- pure helpers


def agent_loop_config() -> list[dict[str, str]]:
    """The document for ``rollout.agent.agent_loop_config_path``: name -> class of each agent loop
    (``name`` also reaches the class as a keyword, which ``AgentLoopBase`` takes in ``**kwargs``)."""
    return [{"name": TOOL_AGENT, "_target_": f"{MODULE}.ToolAgentLoop"}]


def parse_tool_calls(text: str, fmt: str) -> tuple[str, list[tuple[str, str]]]:
    """(remaining text, [(name, JSON arguments)]) of a response in format ``fmt``, read by the
    project's parser (the one the reward scores with); malformed calls are left out."""
    from continuous_learning.models import tool_calls

    parsed = tool_calls.parse(text, fmt)  # type: ignore[arg-type]
    calls = [(str(c["name"]), json.dumps(c["arguments"], ensure_ascii=False)) for c in parsed.tool_calls]
    return parsed.text, calls


def response_text(tokenizer: Any, response_ids: list[int], fmt: str) -> str:
    """A response's text with the format's own special tokens kept (Mistral's ``[TOOL_CALLS]``,
    Llama's ``<|python_tag|>``) and the others (end of turn, padding) dropped."""
    text = str(tokenizer.decode(list(response_ids), skip_special_tokens=False))
    keep = set(FORMAT_MARKERS.get(fmt, ()))
    decoder = getattr(tokenizer, "added_tokens_decoder", None) or {}
    specials = {str(t) for t in decoder.values() if getattr(t, "special", False)}
    specials |= {t for t in (tokenizer.eos_token, tokenizer.pad_token, tokenizer.bos_token) if t}
    for token in sorted(specials - keep, key=len, reverse=True):
        text = text.replace(token, "")
    return text


# --------------------------------------------------------------------------- VeRL registrations

try:  # VeRL (and torch) exist in the trainer image; the dev venv has neither
    from verl.experimental.agent_loop.tool_agent_loop import ToolAgentLoop as _ToolAgentLoop
    from verl.experimental.agent_loop.tool_parser import FunctionCall, ToolParser
except ImportError:  # pragma: no cover - depends on the environment
    HAVE_VERL = False
else:
    HAVE_VERL = True

try:
    from verl.utils.dataset.multiturn_sft_dataset import MultiTurnSFTDataset as _MultiTurnSFTDataset
except ImportError:  # pragma: no cover - depends on the environment
    _MultiTurnSFTDataset = None


if HAVE_VERL:

    class _ProjectToolParser(ToolParser):  # type: ignore[misc,valid-type]
        """A VeRL tool parser reading one of the project's formats (``FORMAT``)."""

        FORMAT = ""

        async def extract_tool_calls(
            self, responses_ids: list[int], tools: Any = None
        ) -> tuple[str, list[Any]]:
            import asyncio

            loop = asyncio.get_running_loop()
            text = await loop.run_in_executor(None, response_text, self.tokenizer, responses_ids, self.FORMAT)
            content, calls = parse_tool_calls(text, self.FORMAT)
            return content, [FunctionCall(name=name, arguments=arguments) for name, arguments in calls]

    @ToolParser.register("llama3_json")
    class Llama3JsonToolParser(_ProjectToolParser):
        FORMAT = "llama3_json"

    @ToolParser.register("mistral")
    class MistralToolParser(_ProjectToolParser):
        FORMAT = "mistral"

    class ToolAgentLoop(_ToolAgentLoop):  # type: ignore[misc,valid-type]
        """VeRL's tool agent loop, unchanged: being this module's class is what loads the parsers above
        into the worker that runs it. Messages and tools reach the chat template as VeRL passes them,
        which is what evaluation renders (``continuous_learning.models.chat_templates.render_prompt``)."""


if _MultiTurnSFTDataset is not None:

    class JsonMultiTurnSFTDataset(_MultiTurnSFTDataset):  # type: ignore[misc,valid-type]
        """VeRL's multi-turn SFT dataset over JSON text columns: ``data.messages_key`` holds the
        conversation (JSON list of messages), ``data.tools_key`` the tools (JSON list, or empty)."""

        def _read_files_and_process(self) -> None:
            super()._read_files_and_process()
            self.tools = [
                (json.loads(t) or None) if isinstance(t, str) and t else None
                for t in self.dataframe[self.tools_key].tolist()
            ]

        def _build_messages(self, example: dict[str, Any]) -> Any:
            messages = example[self.messages_key]
            if isinstance(messages, str):
                example = {**example, self.messages_key: json.loads(messages)}
            return super()._build_messages(example)
