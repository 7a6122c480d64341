"""Synthetic agent logs in schema v1, with late feedback and a small share of bad lines.

Modules: ``default_world``, ``production_world`` (one world each) and ``logs`` (files, days, late feedback).

Two worlds (``generate_logs(..., world=...)``, ``python -m continuous_learning generate-logs --world``):

- ``default`` (the demo's; its bytes are pinned by the ingest identity tests): learnable by a tiny
  model. Each request names a tool's arguments in words, and the right response is one tool call with
  those arguments. The logged "production agent" is right about 60% of the time, its mistakes random;
  wrong answers draw thumbs-down and, often, a correction. A model trained on the logs learns the
  majority answer, which is right: little is left for learning from feedback.
- ``production``: headroom for learning from feedback. Overlapping tools, arguments to normalise
  (relative dates, amounts with symbols and separators, ids as users write them, 12-hour times,
  durations in words), two-call answers, and an agent whose mistakes are systematic: the phrasings that
  trip it (a word that points at the wrong tool, a form it does not normalise, two requests in one
  sentence) get the same mistake most of the time, so a model that imitates the logs learns them too.
  Thumbs-down and reviewers' corrections (the right calls) expose them. On held-out prompts the logged
  answers score about 0.58 on the reward against the references, the agent's usual answers about 0.55,
  the right answers 1.0 (``benchmarks/world/RESULTS.md``).
"""

from continuous_learning.data.synthetic.default_world import (
    AGENTS,
    DEFAULT_MODEL_VERSION,
    Serving,
    make_interaction,
)
from continuous_learning.data.synthetic.logs import WORLDS, GeneratedDay, generate_day, generate_logs
from continuous_learning.data.synthetic.production_world import (
    PRODUCTION_AGENTS,
    make_production_interaction,
)

__all__ = [
    "AGENTS",
    "DEFAULT_MODEL_VERSION",
    "PRODUCTION_AGENTS",
    "WORLDS",
    "GeneratedDay",
    "Serving",
    "generate_day",
    "generate_logs",
    "make_interaction",
    "make_production_interaction",
]
