"""Chat data formats: detect which one a dataset uses and convert each row to Phi-3 ``messages``.

Supported formats, by the column that identifies them:

=====================  ====================================================================================
``messages``           OpenAI chat: ``{"messages": [{"role", "content"}]}``; content a string or a list of
                       text parts (``{"type": "text", "text"|"value": ...}``).
``sharegpt``           ``{"conversations": [{"from": "human"|"gpt"|"system", "value": ...}]}``.
``alpaca``             ``{"instruction", "input"?, "output", "history"?: [[user, assistant], ...], "system"?}``.
``prompt_response``    ``{"prompt", "response"}`` (strings), optional ``system``.
``prompt_completion``  ``{"prompt", "completion"}``: strings, or TRL's conversational form (message lists).
``phi3_text``          ``{"text"}`` already written in the Phi-3 chat format.
=====================  ====================================================================================

Tool definitions: in ``messages`` and ``sharegpt`` data, a ``tools`` (or ``functions``) column holding a JSON list
of tool definitions (as a string or as a list) is rendered into the system turn, after the system prompt if there is
one: ``"You have access to the following tools:\n" + <the definitions as compact JSON>``. Phi-3 has no tool role or
tool tokens, so its function-calling fine-tunes read the available tools from the system prompt like this. Every
other column a format does not read is listed in the data report (:func:`unused_columns`).

A converter never raises on bad content: it returns the messages it could build and the problems it found,
so validation can report every problem of every row at once.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from phi3_lora_hub import phi3_format
from phi3_lora_hub.errors import ConfigError, DataError, DataProblem

FORMATS: tuple[str, ...] = ("messages", "sharegpt", "alpaca", "prompt_response", "prompt_completion", "phi3_text")
TOOL_COLUMNS: tuple[str, ...] = ("tools", "functions")
TOOLS_INTRO = "You have access to the following tools:"
"""The line before the tool definitions in the system turn."""
COLUMNS_READ: dict[str, frozenset[str]] = {
    "messages": frozenset({"messages", *TOOL_COLUMNS}),
    "sharegpt": frozenset({"conversations", "system", *TOOL_COLUMNS}),
    "alpaca": frozenset({"instruction", "input", "output", "history", "system"}),
    "prompt_response": frozenset({"prompt", "response", "system"}),
    "prompt_completion": frozenset({"prompt", "completion", "system"}),
    "phi3_text": frozenset({"text"}),
}
"""The columns each format reads; any other column is reported as unused."""

# Role names seen in the wild, mapped to Phi-3's three roles. Anything else needs an explicit role_map.
DEFAULT_ROLE_ALIASES: dict[str, str] = {
    "system": "system",
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "bot": "assistant",
    "model": "assistant",
    "chatgpt": "assistant",
}
DEFAULT_TEXT_PART_TYPES: tuple[str, ...] = ("text",)

Message = dict[str, str]
Converted = tuple[list[Message], list[DataProblem]]


class RowConverter:
    """Converts one row of a given format to messages, collecting problems instead of raising."""

    def __init__(
        self,
        data_format: str,
        *,
        role_map: Mapping[str, str] | None = None,
        text_part_types: Sequence[str] = DEFAULT_TEXT_PART_TYPES,
    ) -> None:
        if data_format not in FORMATS:
            raise ConfigError(f"Unknown data format {data_format!r}; choose one of {', '.join(FORMATS)}.")
        for source, target in (role_map or {}).items():
            if target not in phi3_format.ROLES:
                raise ConfigError(f"role_map maps {source!r} to {target!r}; Phi-3 roles are system, user, assistant.")
        self.format = data_format
        self.roles = {**DEFAULT_ROLE_ALIASES, **(role_map or {})}
        self.text_part_types = frozenset(text_part_types)
        self._convert: Callable[[int, Mapping[str, Any]], Converted] = getattr(self, f"_from_{data_format}")

    def __call__(self, index: int, row: Mapping[str, Any]) -> Converted:
        return self._convert(index, row)

    # -- helpers -----------------------------------------------------------------------------------------------

    def _text(self, index: int, field: str, value: Any, problems: list[DataProblem]) -> str:
        """Flatten a content value to a string, or record why it is not text."""
        if isinstance(value, str):
            return value.strip()
        if isinstance(value, list):
            texts = []
            for part_index, part in enumerate(value):
                where = f"{field}[{part_index}]"
                if isinstance(part, str):
                    texts.append(part)
                    continue
                part_type = part.get("type") if isinstance(part, Mapping) else None
                text = None
                if isinstance(part, Mapping):
                    text = part.get("text", part.get("value"))
                if not (isinstance(part_type, str) and part_type in self.text_part_types and isinstance(text, str)):
                    problems.append(
                        DataProblem(
                            index,
                            where,
                            f"non-text content (part type {part_type!r}); expected parts of type "
                            f"{sorted(self.text_part_types)} with a string 'text'. "
                            "Add the type to text_part_types to train on it as text.",
                        )
                    )
                    continue
                texts.append(text)
            return "\n".join(texts).strip()
        problems.append(DataProblem(index, field, f"non-text content ({type(value).__name__}); expected a string"))
        return ""

    def _role(self, index: int, field: str, value: Any, problems: list[DataProblem]) -> str | None:
        role = self.roles.get(value) if isinstance(value, str) else None
        if role is None:
            problems.append(
                DataProblem(
                    index,
                    field,
                    f"unknown role {value!r}; expected system, user or assistant "
                    f"(or an alias: {', '.join(sorted(set(self.roles) - set(phi3_format.ROLES)))}). "
                    f"Map it with role_map={{{value!r}: 'user' or 'assistant'}}.",
                )
            )
        return role

    def _turns(self, index: int, field: str, turns: Any, role_key: str, content_key: str) -> Converted:
        problems: list[DataProblem] = []
        if not isinstance(turns, list):
            return [], [DataProblem(index, field, f"expected a list of turns, got {type(turns).__name__}")]
        messages = []
        for turn_index, turn in enumerate(turns):
            where = f"{field}[{turn_index}]"
            if not isinstance(turn, Mapping):
                problems.append(DataProblem(index, where, f"expected an object, got {type(turn).__name__}"))
                continue
            if content_key not in turn:
                problems.append(DataProblem(index, f"{where}.{content_key}", "missing"))
                continue
            role = self._role(index, f"{where}.{role_key}", turn.get(role_key), problems)
            content = self._text(index, f"{where}.{content_key}", turn[content_key], problems)
            if role is not None:
                messages.append({"role": role, "content": content})
        return messages, problems

    def _string_field(self, index: int, row: Mapping[str, Any], key: str, problems: list[DataProblem]) -> str:
        if key not in row or row[key] is None:
            problems.append(DataProblem(index, key, "missing"))
            return ""
        return self._text(index, key, row[key], problems)

    def _system(self, index: int, row: Mapping[str, Any], problems: list[DataProblem]) -> list[Message]:
        """The optional ``system`` column as a system message; a non-text value is a problem, not dropped."""
        system = row.get("system")
        content = self._text(index, "system", system, problems) if system is not None else ""
        return [{"role": "system", "content": content}] if content else []

    # -- one method per format -----------------------------------------------------------------------------------

    def _tools(self, index: int, row: Mapping[str, Any], problems: list[DataProblem]) -> str:
        """The row's tool definitions (``tools`` or ``functions``) as the text the system turn gets, or ""."""
        for column in TOOL_COLUMNS:
            value = row.get(column)
            if isinstance(value, str):
                value = value.strip()
                try:
                    value = json.loads(value) if value else None
                except ValueError:
                    problems.append(DataProblem(index, column, "not valid JSON; expected a JSON list of tools"))
                    return ""
            if value is None or value == [] or value == {}:
                continue
            if not isinstance(value, (list, Mapping)):
                problems.append(
                    DataProblem(index, column, f"expected a list of tool definitions, got {type(value).__name__}")
                )
                return ""
            definitions = json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
            return f"{TOOLS_INTRO}\n{definitions}"
        return ""

    def _with_tools(self, index: int, row: Mapping[str, Any], messages: list[Message], problems) -> list[Message]:
        """``messages`` with the row's tool definitions added to the system turn (made when there is none)."""
        tools = self._tools(index, row, problems)
        if not tools:
            return messages
        if messages and messages[0]["role"] == "system":
            system = "\n\n".join(part for part in (messages[0]["content"], tools) if part)
            return [{"role": "system", "content": system}, *messages[1:]]
        return [{"role": "system", "content": tools}, *messages]

    def _from_messages(self, index: int, row: Mapping[str, Any]) -> Converted:
        messages, problems = self._turns(index, "messages", row.get("messages"), "role", "content")
        return self._with_tools(index, row, messages, problems), problems

    def _from_sharegpt(self, index: int, row: Mapping[str, Any]) -> Converted:
        problems: list[DataProblem] = []
        system = self._system(index, row, problems)
        messages, more = self._turns(index, "conversations", row.get("conversations"), "from", "value")
        problems += more
        return self._with_tools(index, row, system + messages, problems), problems

    def _from_alpaca(self, index: int, row: Mapping[str, Any]) -> Converted:
        problems: list[DataProblem] = []
        messages = self._system(index, row, problems)
        history = row.get("history") or []
        if not isinstance(history, list):
            problems.append(DataProblem(index, "history", "expected a list of [user, assistant] pairs"))
            history = []
        for pair_index, pair in enumerate(history):
            if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
                problems.append(DataProblem(index, f"history[{pair_index}]", "expected a [user, assistant] pair"))
                continue
            messages.append(
                {"role": "user", "content": self._text(index, f"history[{pair_index}][0]", pair[0], problems)}
            )
            messages.append(
                {"role": "assistant", "content": self._text(index, f"history[{pair_index}][1]", pair[1], problems)}
            )
        instruction = self._string_field(index, row, "instruction", problems)
        extra = row.get("input")
        extra = self._text(index, "input", extra, problems) if extra is not None else ""
        user = "\n\n".join(part for part in (instruction, extra) if part)  # no blank lines around a lone part
        messages.append({"role": "user", "content": user})
        messages.append({"role": "assistant", "content": self._string_field(index, row, "output", problems)})
        return messages, problems

    def _pair(self, index: int, row: Mapping[str, Any], answer_key: str) -> Converted:
        prompt, answer = row.get("prompt"), row.get(answer_key)
        problems: list[DataProblem] = []
        system = self._system(index, row, problems)
        if isinstance(prompt, list) or isinstance(answer, list):  # TRL's conversational prompt-completion
            prompt_messages, more = self._turns(index, "prompt", prompt, "role", "content")
            answer_messages, rest = self._turns(index, answer_key, answer, "role", "content")
            return system + prompt_messages + answer_messages, problems + more + rest
        user = self._string_field(index, row, "prompt", problems)
        assistant = self._string_field(index, row, answer_key, problems)
        messages = [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
        return [*system, *messages], problems

    def _from_prompt_response(self, index: int, row: Mapping[str, Any]) -> Converted:
        return self._pair(index, row, "response")

    def _from_prompt_completion(self, index: int, row: Mapping[str, Any]) -> Converted:
        return self._pair(index, row, "completion")

    def _from_phi3_text(self, index: int, row: Mapping[str, Any]) -> Converted:
        text = row.get("text")
        if not isinstance(text, str):
            return [], [DataProblem(index, "text", f"non-text content ({type(text).__name__}); expected a string")]
        try:
            return phi3_format.parse(text), []
        except ValueError as error:
            return [], [DataProblem(index, "text", f"not in the Phi-3 chat format: {error}")]


_SIGNATURES: tuple[tuple[str, frozenset[str]], ...] = (
    ("messages", frozenset({"messages"})),
    ("sharegpt", frozenset({"conversations"})),
    ("alpaca", frozenset({"instruction", "output"})),
    ("prompt_response", frozenset({"prompt", "response"})),
    ("prompt_completion", frozenset({"prompt", "completion"})),
    ("phi3_text", frozenset({"text"})),
)


def unused_columns(data_format: str, columns: Iterable[Any]) -> list[str]:
    """The columns of a dataset that ``data_format`` does not read (their content is not trained on)."""
    return sorted((str(column) for column in columns if column not in COLUMNS_READ[data_format]), key=str)


def detect_format(columns: Iterable[str]) -> str:
    """Name the format a dataset with these columns is in; raise ``DataError`` when none fits."""
    columns = frozenset(columns)
    for name, required in _SIGNATURES:
        if required <= columns:
            return name
    raise DataError(
        f"Cannot tell the chat format of a dataset with columns {sorted(columns, key=repr)}. Supported: "
        "messages (OpenAI), conversations (ShareGPT), instruction/input/output (Alpaca), prompt/response, "
        "prompt/completion, text (Phi-3 chat format). Rename the columns or pass format=."
    )
