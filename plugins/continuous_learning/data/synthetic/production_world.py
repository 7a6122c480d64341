"""The production synthetic world (``world="production"``): headroom for learning from feedback.

Overlapping tools, arguments to normalise, two-call answers and an agent with systematic blind spots that
thumbs-down and corrections expose (the section comment below says how). Kept together in one module: the
agents, their request kinds and the blind spots are one table, read side by side."""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from continuous_learning.data.synthetic.default_world import (
    CITIES,
    FIRST_NAMES,
    LAST_NAMES,
    PII_SNIPPETS,
    TOPICS,
    Serving,
    function_tool,
    interaction_record,
    tool_call,
    user_feedback,
)

# --- The production world ------------------------------------------------------------------------------
#
# ``world="production"``: harder and closer to production than the default world (default_world.py, which stays
# byte-identical). Four agents with tools whose purposes overlap (current weather / forecast, one-way /
# round trip, refund / store credit, track order / track shipment, return / exchange, event / reminder),
# arguments that must be normalised (dates relative to the day in the system prompt -> YYYY-MM-DD, amounts
# "$1,250.50" -> 1250.5 plus a currency code, ids "invoice #4821" -> "INV-004821", "3:30pm" -> "15:30",
# "half an hour" -> 30), and requests answered by two calls in order. The logged agent has blind spots: on the
# requests that trip it (a keyword that points at the wrong tool, a phrasing it does not normalise, a
# second request in the same sentence) it makes the same mistake most of the time -- wrong tool, raw
# arguments, the second call missing -- and users' thumbs-down and reviewers' corrections (the right calls)
# expose it. A model that imitates the logged answers keeps the blind spots; the corrections say how to
# lose them. Each record says what the world knows (unlisted fields, kept as metadata by ingest): ``mistake``
# and, where the logged answer is not it, ``usual_answer``. ``benchmarks/world/`` measures the headroom.

Call = tuple[str, dict[str, Any]]
_DATE = {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}$", "description": "YYYY-MM-DD"}
_TIME = {"type": "string", "pattern": r"^\d{2}:\d{2}$", "description": "24-hour HH:MM"}
_AMOUNT = {"type": "number", "description": "plain number: no currency sign, no thousands separator"}
_CURRENCY = {"type": "string", "enum": ["USD", "EUR", "GBP"]}
_CITY = {"type": "string", "description": "city name"}
_SIZES = ["S", "M", "L", "XL"]
_REASONS = ["damaged", "wrong_item", "not_needed"]
_WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
           "October", "November", "December"]  # fmt: skip
# How often the agent makes the mistake a request invites (its blind spots), and a little noise elsewhere.
_SLIP_RATE = {"missing_call": 0.8, "wrong_tool": 0.8, "raw_arguments": 0.8}
_SLIP_ORDER = ("missing_call", "wrong_tool", "raw_arguments")
_NOISE_RATE = 0.03


def _id_schema(prefix: str) -> dict[str, Any]:
    pattern, example = f"^{prefix}-\\d{{6}}$", f"{prefix}-000123"
    return {"type": "string", "pattern": pattern, "description": f"{prefix}- and six digits, e.g. {example}"}


def _ptool(name: str, description: str, **properties: dict[str, Any]) -> dict[str, Any]:
    return function_tool(name, description, properties)


@dataclass(frozen=True)
class _Request:
    """A user request, its right answer and the agent's mistakes it invites (by kind of mistake)."""

    text: str
    calls: list[Call]
    slips: dict[str, list[Call]] = field(default_factory=dict)


@dataclass(frozen=True)
class _Phrase:
    """A value as the user wrote it (``text``), its normal form, and what a careless agent passes."""

    text: str
    value: Any
    raw: Any


def _date_phrase(rng: random.Random, today: date, earliest: int = 0) -> _Phrase:
    offset = rng.randrange(earliest, 20)
    target = today + timedelta(days=offset)
    iso = target.isoformat()
    forms = ["iso", "month_day", "day_month"]
    if offset <= 1:
        forms += ["relative", "relative"]
    elif offset <= 6:
        forms += ["weekday", "in_days"]
    else:
        forms += ["in_days"]
    form = rng.choice(forms)
    # The agent normalises ISO dates, today/tomorrow, "November 5", "5 Nov" and "in 2 days"; "on friday" and
    # "in 9 days" it passes as written.
    if form == "relative":
        return _Phrase("today" if offset == 0 else "tomorrow", iso, iso)
    if form == "weekday":
        word = _WEEKDAYS[target.weekday()]
        return _Phrase(f"on {word}", iso, word)
    if form == "in_days":
        return _Phrase(f"in {offset} days", iso, iso if offset <= 3 else f"in {offset} days")
    if form == "month_day":
        return _Phrase(f"on {_MONTHS[target.month - 1]} {target.day}", iso, iso)
    if form == "day_month":
        return _Phrase(f"on {target.day} {_MONTHS[target.month - 1][:3]}", iso, iso)
    return _Phrase(f"on {iso}", iso, iso)


def _amount_phrase(rng: random.Random) -> tuple[_Phrase, str]:
    currency = rng.choice(["USD", "EUR", "GBP"])
    whole = rng.choice([5, 12, 40, 85, 120, 249, 1250, 2400])
    cents = rng.choice([0, 0, 50, 99, 25])
    value: float | int = whole + cents / 100 if cents else whole
    number = f"{value:,.2f}" if cents else f"{whole:,}"
    symbol = {"USD": "$", "EUR": "€", "GBP": "£"}[currency]
    word = {"USD": "dollars", "EUR": "euros", "GBP": "pounds"}[currency]
    form = rng.randrange(3)
    if form == 0:
        text = f"{number} {currency}"
    elif form == 1:
        text = f"{symbol}{number}"
    else:
        text = f"{number} {word}"
    # The agent turns "40 EUR" and "$249.50" into numbers, not "$1,250" or "40 euros".
    tricky = form == 2 or "," in number
    return _Phrase(text, value, text if tricky else value), currency


def _id_phrase(rng: random.Random, prefix: str, noun: str) -> _Phrase:
    number = rng.randrange(100, 100_000)
    canonical = f"{prefix}-{number:06d}"
    form = rng.randrange(5)
    if form == 0:
        return _Phrase(f"{noun} {number}", canonical, str(number))
    if form == 1:
        return _Phrase(f"{noun} #{number}", canonical, f"#{number}")
    # The agent rewrites "inv-4821" and "INV004821" into the canonical id, not a bare number.
    if form == 2:
        return _Phrase(f"{noun} {prefix.lower()}-{number}", canonical, canonical)
    if form == 3:
        return _Phrase(f"{noun} {prefix}{number:06d}", canonical, canonical)
    return _Phrase(f"{noun} {canonical}", canonical, canonical)


def _time_phrase(rng: random.Random) -> _Phrase:
    hour, minute = rng.choice([8, 9, 10, 11, 12, 13, 14, 15, 16, 17]), rng.choice([0, 0, 30])
    canonical = f"{hour:02d}:{minute:02d}"
    if rng.random() < 0.25:
        return _Phrase(canonical, canonical, canonical)
    if hour == 12 and minute == 0:
        return _Phrase("noon", canonical, "noon")
    twelve = hour - 12 if hour > 12 else hour
    words = f"{twelve}{':30' if minute else ''}{'pm' if hour >= 12 else 'am'}"
    return _Phrase(words, canonical, words if minute else canonical)  # "3pm" it reads, "3:30pm" not


def _duration_phrase(rng: random.Random) -> _Phrase:
    text, minutes = rng.choice(
        [("an hour", 60), ("half an hour", 30), ("90 minutes", 90), ("2 hours", 120), ("45 minutes", 45)]
    )
    handled = text != "half an hour"  # which it passes as text
    return _Phrase(f"for {text}", minutes, minutes if handled else text)


def _with_raw(calls: list[Call], raw: dict[str, Any]) -> list[Call] | None:
    """``calls`` with the raw values of ``raw`` (argument -> raw value), or None if nothing changes."""
    changed = [(name, {k: raw.get(k, v) for k, v in args.items()}) for name, args in calls]
    return changed if changed != calls else None


def _slips(calls: list[Call], raw: dict[str, Any], **others: list[Call]) -> dict[str, list[Call]]:
    slips = dict(others)
    raw_calls = _with_raw(calls, raw)
    if raw_calls is not None:
        slips["raw_arguments"] = raw_calls
    return slips


def _phrasing(rng: random.Random, trap: str, plain: str, share: float = 0.3) -> tuple[str, bool]:
    """One of two phrasings of a request: the one that trips the agent (True; ``share`` of the requests)
    or the one it gets right."""
    return (trap, True) if rng.random() < share else (plain, False)


def _if(condition: bool, **slips: list[Call]) -> dict[str, list[Call]]:
    return slips if condition else {}


# Request kinds, one function each: (rng, today) -> _Request.


def _weather_now(rng: random.Random, today: date) -> _Request:
    city = rng.choice(CITIES)
    text = rng.choice(["what is the weather in {c} right now", "is it cold in {c} at the moment"])
    return _Request(text.format(c=city), [("get_current_weather", {"city": city})])


def _forecast(rng: random.Random, today: date) -> _Request:
    city, when = rng.choice(CITIES), _date_phrase(rng, today, earliest=1)
    template = rng.choice(
        ["will it rain in {c} {w}", "forecast for {c} {w}", "what will the weather be in {c} {w}"]
    )
    calls: list[Call] = [("get_forecast", {"city": city, "date": when.value})]
    # "weather" sends this agent to the current-weather tool, whatever the day.
    wrong = _if("weather" in template, wrong_tool=[("get_current_weather", {"city": city})])
    return _Request(template.format(c=city, w=when.text), calls, _slips(calls, {"date": when.raw}, **wrong))


def _one_way(rng: random.Random, today: date) -> _Request:
    origin, destination = rng.sample(CITIES, 2)
    when = _date_phrase(rng, today, earliest=1)
    text = rng.choice(["flights from {o} to {d} {w}", "I need to fly {o} to {d} {w}"])
    calls: list[Call] = [
        ("search_flights", {"origin": origin, "destination": destination, "date": when.value})
    ]
    return _Request(
        text.format(o=origin, d=destination, w=when.text), calls, _slips(calls, {"date": when.raw})
    )


def _round_trip(rng: random.Random, today: date) -> _Request:
    origin, destination = rng.sample(CITIES, 2)
    out = _date_phrase(rng, today, earliest=1)
    back = today + timedelta(days=rng.randrange(21, 30))
    # "a return flight" reads as a one-way search to this agent; "round trip" it gets right.
    text, trapped = _phrasing(
        rng,
        f"a return flight {origin} to {destination} leaving {out.text}, coming back on {back.isoformat()}",
        f"round trip {origin} to {destination}, out {out.text}, back on {back.isoformat()}",
    )
    args = {
        "origin": origin,
        "destination": destination,
        "depart_date": out.value,
        "return_date": back.isoformat(),
    }
    calls: list[Call] = [("search_round_trip", args)]
    one_way = [("search_flights", {"origin": origin, "destination": destination, "date": out.value})]
    return _Request(text, calls, _slips(calls, {"depart_date": out.raw}, **_if(trapped, wrong_tool=one_way)))


def _flight_and_hotel(rng: random.Random, today: date) -> _Request:
    origin, destination = rng.sample(CITIES, 2)
    when, nights = _date_phrase(rng, today, earliest=1), rng.randrange(1, 8)
    # Two requests in one sentence: the agent answers the first only; "first ..., then ..." it follows.
    text, trapped = _phrasing(
        rng,
        f"fly me from {origin} to {destination} {when.text} and find a hotel there for {nights} nights",
        f"first flights from {origin} to {destination} {when.text}, then a hotel there for {nights} nights",
        share=0.5,  # more of the two-call requests trip it: enough missing calls to learn from
    )
    first: Call = ("search_flights", {"origin": origin, "destination": destination, "date": when.value})
    calls = [first, ("search_hotels", {"city": destination, "check_in": when.value, "nights": nights})]
    return _Request(
        text,
        calls,
        _slips(calls, {"date": when.raw, "check_in": when.raw}, **_if(trapped, missing_call=[first])),
    )


def _invoice(rng: random.Random, today: date) -> _Request:
    invoice = _id_phrase(rng, "INV", "invoice")
    text = rng.choice(["can you pull up {i}", "I have a question about {i}"]).format(i=invoice.text)
    calls: list[Call] = [("lookup_invoice", {"invoice_id": invoice.value})]
    return _Request(text, calls, _slips(calls, {"invoice_id": invoice.raw}))


def _refund(rng: random.Random, today: date) -> _Request:
    payment, (amount, currency) = _id_phrase(rng, "PAY", "payment"), _amount_phrase(rng)
    text = rng.choice(["please refund {a} of {p}", "I was overcharged {a} on {p}, refund it"])
    calls: list[Call] = [
        ("refund_payment", {"payment_id": payment.value, "amount": amount.value, "currency": currency})
    ]
    raw = {"payment_id": payment.raw, "amount": amount.raw}
    return _Request(text.format(a=amount.text, p=payment.text), calls, _slips(calls, raw))


def _store_credit(rng: random.Random, today: date) -> _Request:
    account, (amount, currency) = _id_phrase(rng, "ACC", "account"), _amount_phrase(rng)
    text, trapped = _phrasing(
        rng,
        f"instead of a refund, put {amount.text} of store credit on {account.text}",
        f"add {amount.text} store credit to {account.text}",
    )
    args = {"account_id": account.value, "amount": amount.value, "currency": currency}
    calls: list[Call] = [("issue_store_credit", args)]
    # "refund" in the request sends the agent to refund_payment (with the account id as a payment id).
    refund = [("refund_payment", {"payment_id": account.value, "amount": amount.value, "currency": currency})]
    return _Request(
        text,
        calls,
        _slips(calls, {"account_id": account.raw, "amount": amount.raw}, **_if(trapped, wrong_tool=refund)),
    )


def _cancel_and_refund(rng: random.Random, today: date) -> _Request:
    subscription, payment = _id_phrase(rng, "SUB", "subscription"), _id_phrase(rng, "PAY", "payment")
    when, (amount, currency) = _date_phrase(rng, today), _amount_phrase(rng)
    since = when.text.removeprefix("on ")
    text, trapped = _phrasing(
        rng,
        f"cancel {subscription.text} from {since} and refund {amount.text} of {payment.text}",
        f"two things: cancel {subscription.text} from {since}; then refund {amount.text} of {payment.text}",
        share=0.5,  # more of the two-call requests trip it: enough missing calls to learn from
    )
    first: Call = (
        "cancel_subscription",
        {"subscription_id": subscription.value, "effective_date": when.value},
    )
    second: Call = (
        "refund_payment",
        {"payment_id": payment.value, "amount": amount.value, "currency": currency},
    )
    calls = [first, second]
    raw = {"effective_date": when.raw, "amount": amount.raw}
    return _Request(text, calls, _slips(calls, raw, **_if(trapped, missing_call=[first])))


def _track_order(rng: random.Random, today: date) -> _Request:
    order = _id_phrase(rng, "ORD", "order")
    text = rng.choice(["where is {o}", "has {o} shipped yet"]).format(o=order.text)
    calls: list[Call] = [("track_order", {"order_id": order.value})]
    return _Request(text, calls, _slips(calls, {"order_id": order.raw}))


def _track_parcel(rng: random.Random, today: date) -> _Request:
    number = f"1Z{rng.randrange(10**9):09d}"
    # "where is" sends the agent to track_order, whatever follows.
    text, trapped = _phrasing(
        rng, f"where is my package, the tracking number is {number}", f"track parcel {number}"
    )
    calls: list[Call] = [("track_shipment", {"tracking_number": number})]
    return _Request(text, calls, _if(trapped, wrong_tool=[("track_order", {"order_id": number})]))


def _exchange(rng: random.Random, today: date) -> _Request:
    order, size = _id_phrase(rng, "ORD", "order"), rng.choice(_SIZES)
    text, trapped = _phrasing(
        rng,
        f"the jacket from {order.text} does not fit, I want to send it back for a size {size}",
        f"can I exchange the jacket from {order.text} for a size {size}",
    )
    calls: list[Call] = [("exchange_item", {"order_id": order.value, "size": size})]
    # "send it back" reads as a return to this agent.
    returned = [("return_item", {"order_id": order.value, "reason": "wrong_item"})]
    return _Request(text, calls, _slips(calls, {"order_id": order.raw}, **_if(trapped, wrong_tool=returned)))


def _return_and_track(rng: random.Random, today: date) -> _Request:
    broken, other = _id_phrase(rng, "ORD", "order"), _id_phrase(rng, "ORD", "order")
    text, trapped = _phrasing(
        rng,
        f"{broken.text} arrived damaged, please return it, and where is {other.text}?",
        f"first return {broken.text}, it arrived damaged; then tell me where {other.text} is",
        share=0.5,  # more of the two-call requests trip it: enough missing calls to learn from
    )
    first: Call = ("return_item", {"order_id": broken.value, "reason": "damaged"})
    calls = [first, ("track_order", {"order_id": other.value})]
    return _Request(text, calls, _if(trapped, missing_call=[first]))


def _event(rng: random.Random, today: date) -> _Request:
    topic, when, at, length = (
        rng.choice(TOPICS),
        _date_phrase(rng, today),
        _time_phrase(rng),
        _duration_phrase(rng),
    )
    text = f"schedule a {topic} {when.text} at {at.text} {length.text}"
    args = {"title": topic, "date": when.value, "start_time": at.value, "duration_minutes": length.value}
    calls: list[Call] = [("create_event", args)]
    raw = {"date": when.raw, "start_time": at.raw, "duration_minutes": length.raw}
    return _Request(text, calls, _slips(calls, raw))


def _reminder(rng: random.Random, today: date) -> _Request:
    chore, when, at = (
        rng.choice(["call the bank", "renew my passport", "pay rent"]),
        _date_phrase(rng, today),
        _time_phrase(rng),
    )
    text, trapped = _phrasing(
        rng,
        f"remind me to {chore} {when.text} at {at.text}",
        f"set a reminder: {chore}, {when.text}, {at.text}",
    )
    calls: list[Call] = [("create_reminder", {"text": chore, "date": when.value, "time": at.value})]
    # The agent books reminders as half-hour events.
    event = [
        ("create_event", {"title": chore, "date": when.value, "start_time": at.value, "duration_minutes": 30})
    ]
    return _Request(
        text, calls, _slips(calls, {"date": when.raw, "time": at.raw}, **_if(trapped, wrong_tool=event))
    )


def _event_and_reminder(rng: random.Random, today: date) -> _Request:
    topic, when, at = rng.choice(TOPICS), _date_phrase(rng, today, earliest=2), _time_phrase(rng)
    day_before = (date.fromisoformat(when.value) - timedelta(days=1)).isoformat()
    text, trapped = _phrasing(
        rng,
        f"put a one-hour {topic} in my calendar {when.text} at {at.text} and remind me the day before at 9am",
        f"first a one-hour {topic} {when.text} at {at.text}, then a reminder the day before at 9am",
        share=0.5,  # more of the two-call requests trip it: enough missing calls to learn from
    )
    first: Call = (
        "create_event",
        {"title": topic, "date": when.value, "start_time": at.value, "duration_minutes": 60},
    )
    calls = [first, ("create_reminder", {"text": topic, "date": day_before, "time": "09:00"})]
    return _Request(text, calls, _if(trapped, missing_call=[first]))


def _agenda(rng: random.Random, today: date) -> _Request:
    when = _date_phrase(rng, today)
    text = rng.choice(["what is on my calendar {w}", "am I free {w}"]).format(w=when.text)
    calls: list[Call] = [("list_events", {"date": when.value})]
    return _Request(text, calls, _slips(calls, {"date": when.raw}))


@dataclass(frozen=True)
class _ProductionAgent:
    name: str
    tools: list[dict[str, Any]]
    requests: list[Any]  # request kinds: (rng, today) -> _Request


PRODUCTION_AGENTS = [
    _ProductionAgent(
        "travel_desk",
        [
            _ptool("get_current_weather", "Weather right now in a city", city=_CITY),
            _ptool("get_forecast", "Weather forecast for a city on a future date", city=_CITY, date=_DATE),
            _ptool("search_flights", "One-way flights", origin=_CITY, destination=_CITY, date=_DATE),
            _ptool(
                "search_round_trip", "Return flights", origin=_CITY, destination=_CITY,
                depart_date=_DATE, return_date=_DATE,
            ),
            _ptool(
                "search_hotels", "Hotels in a city", city=_CITY, check_in=_DATE,
                nights={"type": "integer", "minimum": 1, "description": "number of nights"},
            ),
        ],
        [_weather_now, _forecast, _forecast, _one_way, _round_trip, _flight_and_hotel],
    ),
    _ProductionAgent(
        "billing_desk",
        [
            _ptool("lookup_invoice", "Show an invoice", invoice_id=_id_schema("INV")),
            _ptool(
                "refund_payment", "Refund (part of) a payment to its original method",
                payment_id=_id_schema("PAY"), amount=_AMOUNT, currency=_CURRENCY,
            ),
            _ptool(
                "issue_store_credit", "Credit an account instead of refunding",
                account_id=_id_schema("ACC"), amount=_AMOUNT, currency=_CURRENCY,
            ),
            _ptool(
                "cancel_subscription", "Cancel a subscription from a date",
                subscription_id=_id_schema("SUB"), effective_date=_DATE,
            ),
        ],
        [_invoice, _refund, _refund, _store_credit, _cancel_and_refund],
    ),
    _ProductionAgent(
        "order_desk",
        [
            _ptool("track_order", "Status of an order", order_id=_id_schema("ORD")),
            _ptool(
                "track_shipment", "Where a parcel is, by carrier tracking number",
                tracking_number={"type": "string", "pattern": r"^1Z\d{9}$", "description": "1Z and nine digits"},
            ),
            _ptool(
                "return_item", "Return an order for a refund", order_id=_id_schema("ORD"),
                reason={"type": "string", "enum": _REASONS},
            ),
            _ptool(
                "exchange_item", "Exchange an order's item for another size", order_id=_id_schema("ORD"),
                size={"type": "string", "enum": _SIZES},
            ),
        ],
        [_track_order, _track_order, _track_parcel, _exchange, _return_and_track],
    ),
    _ProductionAgent(
        "calendar_desk",
        [
            _ptool(
                "create_event", "Create a calendar event", title={"type": "string"}, date=_DATE,
                start_time=_TIME, duration_minutes={"type": "integer", "minimum": 5, "description": "minutes"},
            ),
            _ptool("create_reminder", "A reminder at a time", text={"type": "string"}, date=_DATE, time=_TIME),
            _ptool("list_events", "Events of one day", date=_DATE),
        ],
        [_event, _event, _reminder, _event_and_reminder, _agenda],
    ),
]  # fmt: skip


def _calls_message(calls: list[Call], content: str | None = None) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": content,
        "tool_calls": [tool_call(f"c{n}", name, args) for n, (name, args) in enumerate(calls, 1)],
    }


def _noisy(rng: random.Random, calls: list[Call]) -> list[Call]:
    """A one-off slip outside the agent's blind spots: one argument of one call a little off (another
    city, a day or an hour later, a neighbouring id, one more)."""
    position = rng.randrange(len(calls))
    name, args = calls[position]
    key = rng.choice(sorted(args))
    value = args[key]
    wrong: Any = value
    if isinstance(value, int | float):
        wrong = value + 1
    elif value in CITIES:
        wrong = rng.choice([c for c in CITIES if c != value])
    elif re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        wrong = (date.fromisoformat(value) + timedelta(days=1)).isoformat()
    elif re.fullmatch(r"\d{2}:\d{2}", value):
        wrong = f"{(int(value[:2]) + 1) % 24:02d}{value[2:]}"
    elif re.fullmatch(r"[A-Z]{3}-\d{6}", value):
        wrong = f"{value[:4]}{(int(value[4:]) + 1) % 10**6:06d}"
    changed = list(calls)
    changed[position] = (name, {**args, key: wrong})
    return changed


def _agent_answer(rng: random.Random, request: _Request) -> tuple[list[Call], str | None]:
    """What the logged agent answered, and the kind of its mistake (None when it was right)."""
    for kind in _SLIP_ORDER:
        if kind in request.slips and rng.random() < _SLIP_RATE[kind]:
            return request.slips[kind], kind
    if rng.random() < _NOISE_RATE:
        noisy = _noisy(rng, request.calls)
        if noisy != request.calls:
            return noisy, "noise"
    return request.calls, None


def _usual_answer(request: _Request) -> list[Call]:
    """The agent's most likely answer to ``request`` (every slip rate is above one half, so the first
    blind spot that applies): what a perfect imitator of the agent answers."""
    kind = next((k for k in _SLIP_ORDER if k in request.slips), None)
    return request.slips[kind] if kind else request.calls


def make_production_interaction(
    rng: random.Random, day: date, index: int, serving: Serving | None = None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One interaction of the production world and its late feedback (see the section's comment).

    ``serving``: the model version stamped (this world's mistakes are its own: no other accuracy)."""
    if serving is not None and serving.accuracy is not None:
        raise ValueError("the production world's mistakes are systematic: Serving.accuracy is not supported")
    agent = rng.choice(PRODUCTION_AGENTS)
    ts = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(seconds=rng.randrange(86_400))
    interaction_id = f"{agent.name[:4]}-{day:%Y%m%d}-{index:06d}"
    system = (
        f"You are the {agent.name.replace('_', ' ')}. Today is {_WEEKDAYS[day.weekday()]} {day.isoformat()}. "
        "Call the tools with arguments in the formats their schemas give."
    )
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}]
    if rng.random() < 0.25:  # an earlier, completed turn: multi-turn context with tool results
        earlier = rng.choice(agent.requests)(rng, day)
        messages += [{"role": "user", "content": earlier.text}, _calls_message(earlier.calls)]
        messages += [
            {"role": "tool", "tool_call_id": f"c{n}", "content": json.dumps({"status": "ok"})}
            for n in range(1, len(earlier.calls) + 1)
        ]
        messages.append({"role": "assistant", "content": "Done."})
    request = rng.choice(agent.requests)(rng, day)
    text = request.text
    if rng.random() < 0.1:
        snippet = rng.choice(PII_SNIPPETS).format(
            first=rng.choice(FIRST_NAMES), last=rng.choice(LAST_NAMES), n3=f"{rng.randrange(1000):03d}"
        )
        text = f"{text}, {snippet}"
    messages.append({"role": "user", "content": text})
    answer, mistake = _agent_answer(rng, request)
    correct = mistake is None
    messages.append(_calls_message(answer))
    record = interaction_record(
        rng, interaction_id, ts, agent.name, agent.tools, messages, serving, correct, 0.5
    )
    # Unlisted fields, kept as metadata: the world's truth about this answer, for benchmarks/world/.
    record |= {"mistake": mistake, "calls_expected": len(request.calls)}
    usual = _usual_answer(request)
    if usual != answer:  # the agent's usual answer, where the logged one is not it
        record["usual_answer"] = [{"name": name, "arguments": args} for name, args in usual]
    inline, late = user_feedback(
        rng,
        ts,
        interaction_id,
        correct,
        _calls_message(request.calls),
        positive_share=0.55,
        negative_share=0.8,
    )
    if inline:
        record["feedback"] = inline
    return record, late
