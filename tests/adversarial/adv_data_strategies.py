"""Hypothesis strategies for fuzzing the data pipeline: hostile text, JSON-like rows in every chat format, and good
conversations written in each format (so conversion can be checked against the conversation it came from)."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from phi3_lora_hub import phi3_format
from phi3_lora_hub.data.formats import DEFAULT_ROLE_ALIASES

# Strings that look like Phi-3 control tokens without being one: case, spaces, fullwidth forms, invisible
# characters inside, halves, HTML escapes.
NEAR_MISSES: tuple[str, ...] = (
    "<|END|>",
    "<|End|>",
    "< |end| >",
    "<| end |>",
    "＜｜end｜＞",
    "<｜end｜>",
    "<|end|\u200b>",
    "<\u200c|end|>",
    "<|end\u200d|>",
    "<|end|",
    "|end|>",
    "<|",
    "|>",
    "&lt;|end|&gt;",
    "\\u003c|end|\\u003e",
    "<|assistant",
    "assistant|>",
    "<|ASSISTANT|>",
    "<||user||>",
    "<S>",
    "< s>",
    "<|placeholder7|>",
    "<|endoftext |>",
    "<0x0A>",
)
# Unicode that breaks naive text handling: RTL/LTR marks, zero-width (non-)joiners, BOM, NUL and other controls,
# combining marks, emoji sequences, line separators, SentencePiece's word marker, lone surrogates.
UNICODE_EDGES: tuple[str, ...] = (
    "\u200f",
    "\u200e",
    "\u202e",
    "\u200d",
    "\u200c",
    "\u200b",
    "\ufeff",
    "\x00",
    "\x1b[31m",
    "\x85",
    "\u2028",
    "\u2029",
    "\r\n",
    "\t",
    "e\u0301\u0301",
    "\u0301",
    "👨\u200d👩\u200d👧",
    "🏳️\u200d🌈",
    "שלום",
    "مرحبا",
    "日本語",
    "\U0010ffff",
    "\uffff",
    "▁",
    " ",
    "\n",
)
LONE_SURROGATES: tuple[str, ...] = ("\ud800", "\udfff", "\ud83d")
huge_text = st.integers(100_000, 400_000).map(lambda size: "x\u200d" * (size // 2))  # built here: a short repr

safe_chars = st.characters(codec="utf-8")
fragments = st.one_of(
    st.text(safe_chars, max_size=12),
    st.sampled_from(NEAR_MISSES),
    st.sampled_from(UNICODE_EDGES),
)
# Text that a tokenizer can encode and that holds no literal control token by construction... mostly: joined
# fragments may still spell one ("<|" + "end|>"), which validation must then refuse.
near_miss_text = st.lists(fragments, max_size=6).map("".join)
hostile_text = st.one_of(
    st.lists(
        st.one_of(fragments, st.sampled_from(phi3_format.CONTROL_TOKENS), st.sampled_from(LONE_SURROGATES)),
        max_size=6,
    ).map("".join),
    st.text(st.characters(exclude_categories=()), max_size=30),  # surrogates included
    st.sampled_from(["", " ", "\n\t "]),
    huge_text,
)

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True), hostile_text
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(hostile_text, children, max_size=3),
    max_leaves=8,
)
role_names = st.sampled_from([*DEFAULT_ROLE_ALIASES, "robot", "User", "", "<|assistant|>"])
text_parts = st.one_of(
    hostile_text,
    st.fixed_dictionaries(
        {"type": st.one_of(st.sampled_from(["text", "image_url", "tool_call"]), json_values)},
        optional={"text": st.one_of(hostile_text, json_values), "value": hostile_text},
    ),
)
contents = st.one_of(hostile_text, st.lists(text_parts, max_size=3), json_values)


def turns(role_key: str, content_key: str) -> st.SearchStrategy[Any]:
    """A list of turns with possibly wrong or missing roles and contents, or something that is not a list."""
    turn = st.fixed_dictionaries(
        {}, optional={role_key: st.one_of(role_names, json_values), content_key: contents}
    ) | st.fixed_dictionaries({role_key: role_names, content_key: contents})
    return st.one_of(st.lists(st.one_of(turn, json_values), max_size=5), json_values)


def _with_system(required: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(required, optional={"system": contents})


# One strategy per format (rows that fit the format's signature, with anything inside), and rows of any shape.
rows_by_format: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "messages": st.fixed_dictionaries({"messages": turns("role", "content")}),
    "sharegpt": _with_system({"conversations": turns("from", "value")}),
    "alpaca": st.fixed_dictionaries(
        {"instruction": contents, "output": contents},
        optional={
            "input": contents,
            "system": contents,
            "history": st.one_of(st.lists(st.lists(contents, max_size=3), max_size=3), json_values),
        },
    ),
    "prompt_response": _with_system({"prompt": contents, "response": contents}),
    "prompt_completion": _with_system(
        {
            "prompt": st.one_of(contents, turns("role", "content")),
            "completion": st.one_of(contents, turns("role", "content")),
        }
    ),
    "phi3_text": st.fixed_dictionaries({"text": st.one_of(hostile_text, json_values)}),
}
any_row = st.one_of(
    *rows_by_format.values(),
    st.dictionaries(  # an in-memory list may hold dicts with keys that are not strings
        st.one_of(st.sampled_from(["messages", "text", "prompt", "system"]), hostile_text, st.integers(), st.none()),
        json_values,
    ),
)

# -- good conversations ----------------------------------------------------------------------------------------


def _trainable(text: str) -> bool:
    return text == text.strip() and phi3_format.contains_control_token(text) is None


good_text = near_miss_text.map(str.strip).filter(_trainable)


@st.composite
def good_conversations(draw: st.DrawFn, max_pairs: int = 3) -> list[dict[str, str]]:
    """A trainable conversation: an optional system message, then user/assistant pairs; assistant text not empty."""
    messages = [{"role": "system", "content": draw(good_text.filter(bool))}] if draw(st.booleans()) else []
    for _ in range(draw(st.integers(1, max_pairs))):
        messages.append({"role": "user", "content": draw(good_text)})
        messages.append({"role": "assistant", "content": draw(good_text.filter(bool))})
    return messages


def written_as(data_format: str, messages: list[dict[str, str]]) -> dict[str, Any]:
    """``messages`` (from :func:`good_conversations`) as one row of ``data_format``."""
    system = [m["content"] for m in messages if m["role"] == "system"]
    chat = [m for m in messages if m["role"] != "system"]
    extra = {"system": system[0]} if system else {}
    if data_format == "messages":
        return {"messages": messages}
    if data_format == "sharegpt":
        names = {"user": "human", "assistant": "gpt"}
        return {"conversations": [{"from": names[m["role"]], "value": m["content"]} for m in chat], **extra}
    if data_format == "alpaca":
        history = [[chat[i]["content"], chat[i + 1]["content"]] for i in range(0, len(chat) - 2, 2)]
        return {"instruction": chat[-2]["content"], "output": chat[-1]["content"], "history": history, **extra}
    if data_format == "prompt_completion":
        return {"prompt": messages[:-1], "completion": messages[-1:]}
    if data_format == "prompt_response":
        return {"prompt": chat[-2]["content"], "response": chat[-1]["content"], **extra}
    return {"text": phi3_format.render(messages).text}
