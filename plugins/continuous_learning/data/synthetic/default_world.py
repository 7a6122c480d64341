"""The default synthetic world: the demo's small, learnable agent platform (its bytes are pinned by the
ingest identity tests). Each request names a tool's arguments in words; the logged agent is right about 60%
of the time, its mistakes random; wrong answers draw thumbs-down and, often, a correction."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

CITIES = ["Paris", "Berlin", "Tokyo", "Lima", "Oslo", "Cairo", "Delhi", "Rome", "Madrid", "Seoul"]
DAYS = ["today", "tomorrow", "monday", "friday", "sunday"]
PRODUCTS = ["laptop", "phone", "camera", "headphones", "keyboard", "monitor", "charger"]
ITEMS = ["milk", "bread", "eggs", "coffee", "apples", "rice"]
TIMES = ["09:00", "12:00", "15:00", "18:00"]
TOPICS = ["standup", "review", "lunch", "interview", "planning"]


def function_tool(name: str, description: str, properties: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI-style function tool whose arguments are all required."""
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {"type": "object", "properties": properties, "required": list(properties)},
        },
    }


def _tool(name: str, description: str, **params: list[str] | str) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    for arg, kind in params.items():
        properties[arg] = {"type": "string", "enum": kind} if isinstance(kind, list) else {"type": kind}
    return function_tool(name, description, properties)


@dataclass(frozen=True)
class Serving:
    """Which model serves a day's interactions, as the serving side stamps it into each record
    (``model_version``), and how often its answers are right (None: the world's own rate)."""

    model_version: str
    accuracy: float | None = None


#: The version the worlds stamp when no :class:`Serving` is given.
DEFAULT_MODEL_VERSION = "agent-prod-2026.11"


@dataclass(frozen=True)
class AgentSpec:
    name: str
    tools: list[dict[str, Any]]
    templates: dict[str, list[str]] = field(default_factory=dict)


AGENTS = [
    AgentSpec(
        "travel_assistant",
        [
            _tool("get_weather", "Weather forecast for a city", city=CITIES, day=DAYS),
            _tool("find_hotel", "Hotels in a city", city=CITIES, day=DAYS),
        ],
        {
            "get_weather": [
                "what is the weather in {city} {day}",
                "will it rain in {city} {day}",
                "forecast for {city} {day} please",
            ],
            "find_hotel": [
                "find me a hotel in {city} for {day}",
                "I need a room in {city} {day}",
            ],
        },
    ),
    AgentSpec(
        "shop_assistant",
        [
            _tool("track_order", "Where is my order", product=PRODUCTS),
            _tool("return_item", "Start a return", product=PRODUCTS),
            _tool("add_to_list", "Add to shopping list", item=ITEMS),
        ],
        {
            "track_order": ["where is my {product}", "track the {product} I ordered"],
            "return_item": ["I want to return the {product}", "the {product} is broken, send it back"],
            "add_to_list": ["add {item} to my list", "put {item} on the shopping list"],
        },
    ),
    AgentSpec(
        "calendar_assistant",
        [_tool("create_event", "Create a calendar event", topic=TOPICS, day=DAYS, time=TIMES)],
        {
            "create_event": [
                "schedule a {topic} on {day} at {time}",
                "book {topic} {day} {time}",
                "put a {topic} in my calendar {day} at {time}",
            ]
        },
    ),
]

_VALUES = {"city": CITIES, "day": DAYS, "product": PRODUCTS, "item": ITEMS, "time": TIMES, "topic": TOPICS}
PII_SNIPPETS = [
    "my email is {first}.{last}@example.com",
    "call me at +44 20 7946 0{n3}",
    "you can reach me on (415) 555-0{n3}",
    "my card is 4111 1111 1111 1111",
]
FIRST_NAMES = ["ana", "li", "omar", "jane", "kofi"]
LAST_NAMES = ["smith", "garcia", "chen", "okafor", "novak"]


def interaction_record(
    rng: random.Random,
    interaction_id: str,
    ts: datetime,
    agent: str,
    tools: list[dict[str, Any]],
    messages: list[dict[str, Any]],
    serving: Serving | None,
    correct: bool,
    outcome_share: float,
) -> dict[str, Any]:
    """One logged interaction as the platform writes it (both worlds); ``outcome_share``: how often the
    platform knows whether the task succeeded. Draws from ``rng`` in a fixed order: session, outcome, client."""
    return {
        "schema_version": 1,
        "interaction_id": interaction_id,
        "timestamp": ts.isoformat(),
        "agent": agent,
        "model_version": serving.model_version if serving is not None else DEFAULT_MODEL_VERSION,
        "session_id": f"s-{rng.randrange(10**8):08d}",
        "messages": messages,
        "tools": tools,
        "outcome": {"task_success": correct if rng.random() < outcome_share else None, "error": None},
        "client": rng.choice(["web", "ios", "android"]),  # an unlisted field: kept as metadata
    }


def tool_call(call_id: str, name: str, arguments: dict[str, str]) -> dict[str, Any]:
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(arguments)},
    }


def _random_request(rng: random.Random, agent: AgentSpec) -> tuple[str, str, dict[str, str]]:
    tool = rng.choice(agent.tools)["function"]
    name = tool["name"]
    args = {arg: rng.choice(_VALUES[arg]) for arg in tool["parameters"]["properties"]}
    text = rng.choice(agent.templates[name]).format(**args)
    return text, name, args


def _wrong_call(
    rng: random.Random, agent: AgentSpec, name: str, args: dict[str, str]
) -> tuple[str, dict[str, str]]:
    if len(agent.tools) > 1 and rng.random() < 0.5:
        other = rng.choice([t for t in agent.tools if t["function"]["name"] != name])["function"]
        props = other["parameters"]["properties"]
        return other["name"], {a: args.get(a, rng.choice(_VALUES[a])) for a in props}
    key = rng.choice(list(args))
    wrong = dict(args)
    wrong[key] = rng.choice([v for v in _VALUES[key] if v != args[key]])
    return name, wrong


def make_interaction(
    rng: random.Random, day: date, index: int, serving: Serving | None = None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One interaction and the late feedback events (arriving on later days) that refer to it.

    ``serving``: the model version stamped and its accuracy (default: ``DEFAULT_MODEL_VERSION``, right
    60% of the time; the same random draws either way, so only the answers' correctness changes)."""
    agent = rng.choice(AGENTS)
    ts = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(seconds=rng.randrange(86_400))
    interaction_id = f"{agent.name[:4]}-{day:%Y%m%d}-{index:06d}"
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": f"You are the {agent.name.replace('_', ' ')}. Use the tools."}
    ]
    if rng.random() < 0.25:  # an earlier, completed turn: multi-turn context with a tool result
        text, name, args = _random_request(rng, agent)
        messages += [
            {"role": "user", "content": text},
            {"role": "assistant", "content": None, "tool_calls": [tool_call("c0", name, args)]},
            {"role": "tool", "tool_call_id": "c0", "content": json.dumps({"status": "ok"})},
            {"role": "assistant", "content": "Done."},
        ]
    text, name, args = _random_request(rng, agent)
    if rng.random() < 0.1:
        snippet = rng.choice(PII_SNIPPETS).format(
            first=rng.choice(FIRST_NAMES), last=rng.choice(LAST_NAMES), n3=f"{rng.randrange(1000):03d}"
        )
        text = f"{text}, {snippet}"
    messages.append({"role": "user", "content": text})
    accuracy = serving.accuracy if serving is not None and serving.accuracy is not None else 0.6
    correct = rng.random() < accuracy
    answered_name, answered_args = (name, args) if correct else _wrong_call(rng, agent, name, args)
    messages.append(
        {"role": "assistant", "content": None, "tool_calls": [tool_call("c1", answered_name, answered_args)]}
    )
    record = interaction_record(
        rng, interaction_id, ts, agent.name, agent.tools, messages, serving, correct, 0.7
    )
    right = {"role": "assistant", "content": None, "tool_calls": [tool_call("c1", name, args)]}
    inline, late = user_feedback(
        rng, ts, interaction_id, correct, right, positive_share=0.75, negative_share=0.85
    )
    if inline:
        record["feedback"] = inline
    return record, late


def user_feedback(
    rng: random.Random,
    ts: datetime,
    interaction_id: str,
    correct: bool,
    right_answer: dict[str, Any],
    *,
    positive_share: float,
    negative_share: float,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Users' feedback on one answer (inline) and reviewers' corrections (late, holding ``right_answer``): a
    right answer draws a thumbs-up or good rating ``positive_share`` of the time, a wrong one a thumbs-down
    ``negative_share`` of the time and then, 70% of the time, a correction the same day or up to two days later."""
    inline: list[dict[str, Any]] = []
    late: list[dict[str, Any]] = []
    roll = rng.random()
    fb_ts = (ts + timedelta(minutes=rng.randrange(1, 120))).isoformat()
    if correct and roll < positive_share:
        kind = rng.choice(["thumbs", "rating"])
        value = 1 if kind == "thumbs" else rng.choice([4, 5])
        inline.append({"timestamp": fb_ts, "type": kind, "value": value, "source": "user"})
    elif not correct and roll < negative_share:
        inline.append({"timestamp": fb_ts, "type": "thumbs", "value": -1, "source": "user"})
        if rng.random() < 0.7:
            late.append(
                {
                    "interaction_id": interaction_id,
                    "timestamp": (ts + timedelta(days=rng.choice([0, 1, 1, 2]))).isoformat(),
                    "type": "correction",
                    "content": right_answer,
                    "source": "reviewer",
                }
            )
    return inline, late


def malformed_lines(rng: random.Random, good: dict[str, Any]) -> list[str]:
    broken_json = json.dumps(good)[: rng.randrange(20, 80)]
    missing = {k: v for k, v in good.items() if k != "agent"}
    wrong_type = dict(good, timestamp=12345)
    future = dict(good, schema_version=2, interaction_id=good["interaction_id"] + "-v2")
    return [broken_json, json.dumps(missing), json.dumps(wrong_type), json.dumps(future)]
