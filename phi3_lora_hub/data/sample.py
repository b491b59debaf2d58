"""The bundled sample dataset: deterministic multi-turn geography chats written by this project.

"Compass" answers questions about countries in one fixed style (a short factual sentence, then "Safe travels!").
The style is simple enough that the offline tiny Phi-3 visibly learns it in under a minute on a CPU, so the
quickstart can show a base answer and an adapter answer that really differ. Rows are OpenAI-style
``{"messages": [...]}`` dicts; the same seed always gives the same rows.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import NamedTuple


class Country(NamedTuple):
    name: str
    capital: str
    currency: str
    language: str
    continent: str


COUNTRIES: tuple[Country, ...] = (
    Country("France", "Paris", "the euro", "French", "Europe"),
    Country("Germany", "Berlin", "the euro", "German", "Europe"),
    Country("Italy", "Rome", "the euro", "Italian", "Europe"),
    Country("Spain", "Madrid", "the euro", "Spanish", "Europe"),
    Country("Portugal", "Lisbon", "the euro", "Portuguese", "Europe"),
    Country("Greece", "Athens", "the euro", "Greek", "Europe"),
    Country("Poland", "Warsaw", "the zloty", "Polish", "Europe"),
    Country("Sweden", "Stockholm", "the krona", "Swedish", "Europe"),
    Country("Norway", "Oslo", "the krone", "Norwegian", "Europe"),
    Country("Hungary", "Budapest", "the forint", "Hungarian", "Europe"),
    Country("Japan", "Tokyo", "the yen", "Japanese", "Asia"),
    Country("China", "Beijing", "the yuan", "Mandarin", "Asia"),
    Country("India", "New Delhi", "the rupee", "Hindi", "Asia"),
    Country("Thailand", "Bangkok", "the baht", "Thai", "Asia"),
    Country("Vietnam", "Hanoi", "the dong", "Vietnamese", "Asia"),
    Country("Indonesia", "Jakarta", "the rupiah", "Indonesian", "Asia"),
    Country("South Korea", "Seoul", "the won", "Korean", "Asia"),
    Country("Turkey", "Ankara", "the lira", "Turkish", "Asia"),
    Country("Egypt", "Cairo", "the pound", "Arabic", "Africa"),
    Country("Kenya", "Nairobi", "the shilling", "Swahili", "Africa"),
    Country("Morocco", "Rabat", "the dirham", "Arabic", "Africa"),
    Country("Nigeria", "Abuja", "the naira", "English", "Africa"),
    Country("Ghana", "Accra", "the cedi", "English", "Africa"),
    Country("Ethiopia", "Addis Ababa", "the birr", "Amharic", "Africa"),
    Country("Brazil", "Brasilia", "the real", "Portuguese", "South America"),
    Country("Argentina", "Buenos Aires", "the peso", "Spanish", "South America"),
    Country("Peru", "Lima", "the sol", "Spanish", "South America"),
    Country("Chile", "Santiago", "the peso", "Spanish", "South America"),
    Country("Colombia", "Bogota", "the peso", "Spanish", "South America"),
    Country("Canada", "Ottawa", "the dollar", "English", "North America"),
    Country("Mexico", "Mexico City", "the peso", "Spanish", "North America"),
    Country("Cuba", "Havana", "the peso", "Spanish", "North America"),
    Country("Australia", "Canberra", "the dollar", "English", "Oceania"),
    Country("New Zealand", "Wellington", "the dollar", "English", "Oceania"),
    Country("Fiji", "Suva", "the dollar", "English", "Oceania"),
    Country("Iceland", "Reykjavik", "the krona", "Icelandic", "Europe"),
)

SYSTEM_PROMPTS: tuple[str, ...] = (
    "You are Compass, a concise geography assistant.",
    "You are Compass. Answer travel questions in one short sentence.",
    "You are Compass, a friendly guide to the countries of the world.",
)

_QUESTIONS = {
    "capital": ("What is the capital of {c}?", "Which city is the capital of {c}?", "Tell me the capital of {c}."),
    "currency": ("What currency is used in {c}?", "What money do they use in {c}?", "Which currency does {c} use?"),
    "language": ("What language is spoken in {c}?", "Which language do people speak in {c}?"),
    "continent": ("Where is {c}?", "On which continent is {c}?"),
}
_FOLLOW_UPS = {
    "capital": ("And its capital?", "What about the capital?"),
    "currency": ("And the currency?", "What money should I bring?"),
    "language": ("And the language?", "What do people speak there?"),
    "continent": ("Which continent is that on?", "Where is it?"),
}
_ANSWERS = {
    "capital": "The capital of {c} is {v}.",
    "currency": "{c} uses {v}.",
    "language": "People in {c} speak {v}.",
    "continent": "{c} is in {v}.",
}
SIGN_OFF = "Safe travels!"

DEFAULT_SIZE = 400
DEFAULT_SEED = 7


def _answer(topic: str, country: Country) -> str:
    return _ANSWERS[topic].format(c=country.name, v=getattr(country, topic))


def _conversation(rng: random.Random) -> dict[str, list[dict[str, str]]]:
    country = rng.choice(COUNTRIES)
    topics = rng.sample(list(_QUESTIONS), k=rng.choice((1, 2, 2, 3)))
    messages = [{"role": "system", "content": rng.choice(SYSTEM_PROMPTS)}]
    for turn, topic in enumerate(topics):
        template = rng.choice(_QUESTIONS[topic] if turn == 0 else _FOLLOW_UPS[topic])
        messages.append({"role": "user", "content": template.format(c=country.name)})
        messages.append({"role": "assistant", "content": f"{_answer(topic, country)} {SIGN_OFF}"})
    return {"messages": messages}


def sample_conversations(n: int = DEFAULT_SIZE, *, seed: int = DEFAULT_SEED) -> list[dict[str, list[dict[str, str]]]]:
    """Return ``n`` sample conversations; the same ``n`` and ``seed`` always give the same rows."""
    rng = random.Random(seed)
    return [_conversation(rng) for _ in range(n)]


_PLAIN_ANSWERS = {
    "capital": "{v} is the capital of {c}.",
    "currency": "In {c} they pay with {v}.",
    "language": "Most people in {c} speak {v}.",
    "continent": "{c} lies in {v}.",
}


def plain_conversations(n: int, *, seed: int = DEFAULT_SEED) -> list[dict[str, list[dict[str, str]]]]:
    """Single-turn chats answered tersely, in a different style from the sample data.

    The tiny base model is pre-trained on these, so it knows the facts but not Compass's style: after LoRA
    training on :func:`sample_conversations`, base and adapter answer the same question visibly differently.
    """
    rng = random.Random(seed + 1)
    rows = []
    for _ in range(n):
        country, topic = rng.choice(COUNTRIES), rng.choice(list(_QUESTIONS))
        question = rng.choice(_QUESTIONS[topic]).format(c=country.name)
        answer = _PLAIN_ANSWERS[topic].format(c=country.name, v=getattr(country, topic))
        rows.append({"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]})
    return rows


def sample_prompts() -> list[list[dict[str, str]]]:
    """A few fixed prompts (system + user) used to show what a model answers, before and after training."""
    return [
        [
            {"role": "system", "content": SYSTEM_PROMPTS[0]},
            {"role": "user", "content": "What is the capital of Japan?"},
        ],
        [
            {"role": "system", "content": SYSTEM_PROMPTS[1]},
            {"role": "user", "content": "What currency is used in Peru?"},
        ],
        [{"role": "system", "content": SYSTEM_PROMPTS[2]}, {"role": "user", "content": "Where is Kenya?"}],
    ]


def write_sample_dataset(path: str | Path, n: int = DEFAULT_SIZE, *, seed: int = DEFAULT_SEED) -> Path:
    """Write the sample conversations to a JSONL file and return its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for row in sample_conversations(n, seed=seed):
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path
