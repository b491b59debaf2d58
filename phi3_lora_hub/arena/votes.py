"""The pairwise vote record: one JSON object per line, written by the Space (human) and by ``compare`` (automatic).

A record says which two models answered (left and right *as displayed*), what each answered and how fast, the
generation settings both used, and the vote. ``winner`` follows FastChat's battle schema: ``model_a`` is always
the left model, ``model_b`` the right one, so a vote can be scored without knowing whether sides were swapped;
``swapped`` only records that blind mode randomized the display order (for position-bias analysis).

Records never hold an IP address: ``session_hash`` is Gradio's per-session hash (or empty for automatic votes),
and an IP address given there is refused.
"""

from __future__ import annotations

import ipaddress
import json
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, get_args

from transformers import GenerationConfig

from phi3_lora_hub.decoding import chat_generation_config, config_from_settings, settings_of
from phi3_lora_hub.model.identity import ModelRef
from phi3_lora_hub.version import __version__

SCHEMA_VERSION = 1

Vote = Literal["leftvote", "rightvote", "tievote", "bothbad_vote"]
Winner = Literal["model_a", "model_b", "tie", "tie (bothbad)"]
Source = Literal["human", "automatic"]
Mode = Literal["named", "blind"]
FinishReason = Literal["stop", "length", "error"]

VOTES: tuple[str, ...] = get_args(Vote)
SOURCES: tuple[str, ...] = get_args(Source)
MODES: tuple[str, ...] = get_args(Mode)
FINISH_REASONS: tuple[str, ...] = get_args(FinishReason)
WINNER_OF_VOTE: dict[str, str] = {
    "leftvote": "model_a",
    "rightvote": "model_b",
    "tievote": "tie",
    "bothbad_vote": "tie (bothbad)",
}


@dataclass
class SideRecord:
    """One side of a comparison: the model, its transcript (system prompt included) and how the answer went."""

    model: ModelRef
    messages: list[dict[str, str]]
    latency_s: float | None = None
    new_tokens: int | None = None
    finish_reason: FinishReason | None = None
    """``stop``: the model ended its turn; ``length``: it hit ``max_new_tokens``; ``error``: generation failed."""

    @property
    def answer(self) -> str:
        """The last assistant message (empty when there is none)."""
        return next((m["content"] for m in reversed(self.messages) if m["role"] == "assistant"), "")

    @property
    def len_chars(self) -> int:
        return len(self.answer)

    @property
    def tokens_per_s(self) -> float | None:
        if not self.latency_s or self.new_tokens is None:
            return None
        return self.new_tokens / self.latency_s

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["model"] = self.model.to_dict()
        data["tokens_per_s"] = self.tokens_per_s
        data["len_chars"] = self.len_chars
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SideRecord:
        model = data["model"]
        finish = data.get("finish_reason")
        if finish is not None and finish not in FINISH_REASONS:
            raise ValueError(f"finish_reason must be one of {FINISH_REASONS} or null, got {finish!r}")
        return cls(
            model=ModelRef.from_dict(model),
            messages=[{"role": m["role"], "content": m["content"]} for m in data["messages"]],
            latency_s=data.get("latency_s"),
            new_tokens=data.get("new_tokens"),
            finish_reason=finish,
        )


def _library_versions() -> dict[str, str]:
    from importlib import metadata

    versions = {}
    for name in ("phi3-lora-hub", "peft", "transformers", "torch", "gradio"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def _app_version() -> str:

    return __version__


@dataclass
class VoteRecord:
    """One vote on two answers to the same conversation (space-eval.md §7), human or automatic."""

    left: SideRecord
    right: SideRecord
    vote: Vote
    gen_params: GenerationConfig = field(default_factory=chat_generation_config)
    """The decoding settings both sides used; recorded as :func:`~phi3_lora_hub.decoding.settings_of`'s dict."""
    system_prompt: str | None = None
    source: Source = "human"
    mode: Mode = "named"
    swapped: bool = False
    """True when blind mode put the first-picked model on the right. Scoring ignores it: left is model_a."""
    session_hash: str = ""
    """Gradio's ``request.session_hash`` for human votes, empty for automatic ones. Never an IP address."""
    conv_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    tstamp: float = field(default_factory=time.time)
    judge: dict[str, Any] | None = None
    """For automatic votes: how the winner was decided (metric name, both scores, tie margin)."""
    app_version: str = field(default_factory=_app_version)
    versions: dict[str, str] = field(default_factory=_library_versions)
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.vote not in VOTES:
            raise ValueError(f"vote must be one of {VOTES}, got {self.vote!r}")
        if self.source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got {self.source!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if _is_ip_address(self.session_hash):
            raise ValueError("session_hash looks like an IP address; store gr.Request.session_hash, never an IP.")

    @property
    def winner(self) -> Winner:
        """``model_a`` (left won), ``model_b`` (right won), ``tie`` or ``tie (bothbad)``."""
        return WINNER_OF_VOTE[self.vote]  # type: ignore[return-value]

    @property
    def turn(self) -> int:
        """Number of user turns in the conversation (the same on both sides)."""
        return sum(m["role"] == "user" for m in self.left.messages)

    def without_transcripts(self) -> VoteRecord:
        """This vote with every message's text (and the system prompt) emptied: outcome, models and numbers stay."""

        def blank(side: SideRecord) -> SideRecord:
            return replace(side, messages=[{"role": m["role"], "content": ""} for m in side.messages])

        return replace(self, left=blank(self.left), right=blank(self.right), system_prompt=None)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["left"] = self.left.to_dict()
        data["right"] = self.right.to_dict()
        data["gen_params"] = settings_of(self.gen_params)
        data["winner"] = self.winner
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, sort_keys=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VoteRecord:
        """Rebuild a record from :meth:`to_dict` output; raises ``ValueError``/``KeyError`` on a malformed one."""
        version = data.get("schema_version", SCHEMA_VERSION)
        if version > SCHEMA_VERSION:
            raise ValueError(f"vote schema_version {version} is newer than this library ({SCHEMA_VERSION}); upgrade.")
        record = cls(
            left=SideRecord.from_dict(data["left"]),
            right=SideRecord.from_dict(data["right"]),
            vote=data["vote"],
            gen_params=config_from_settings(data.get("gen_params", {})),
            system_prompt=data.get("system_prompt"),
            source=data.get("source", "human"),
            mode=data.get("mode", "named"),
            swapped=bool(data.get("swapped", False)),
            session_hash=data.get("session_hash", ""),
            conv_id=data.get("conv_id") or uuid.uuid4().hex,
            tstamp=float(data["tstamp"]),
            judge=data.get("judge"),
            app_version=data.get("app_version", ""),
            versions=dict(data.get("versions", {})),
            schema_version=version,
        )
        stored = data.get("winner")
        if stored is not None and stored != record.winner:
            raise ValueError(f"winner {stored!r} contradicts vote {record.vote!r} (expected {record.winner!r})")
        return record


def _is_ip_address(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def append_votes(path: str | Path, records: Iterable[VoteRecord]) -> int:
    """Append ``records`` to the JSONL file at ``path`` (created with its folder if missing); returns how many.

    Each record is written with a single ``write`` of one line, so concurrent appenders never interleave lines.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("a", encoding="utf-8") as handle:
        for record in records:
            handle.write(record.to_json() + "\n")
            count += 1
    return count


def read_votes(paths: str | Path | Sequence[str | Path], *, skip_invalid: bool = False) -> list[VoteRecord]:
    """Read vote records from one or more JSONL files, in file order.

    A malformed line raises ``ValueError`` naming the file and line, unless ``skip_invalid`` (then it is skipped,
    e.g. a line cut short by a crash while appending).
    """
    files = [paths] if isinstance(paths, (str, Path)) else list(paths)
    records: list[VoteRecord] = []
    for file in files:
        with Path(file).open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    records.append(VoteRecord.from_dict(json.loads(line)))
                except (ValueError, KeyError, TypeError) as error:
                    if skip_invalid:
                        continue
                    raise ValueError(f"{file}, line {number}: not a valid vote record ({error!r})") from None
    return records


def to_battles(
    records: Iterable[VoteRecord], *, sources: Sequence[Source] = SOURCES, include_bothbad: bool = True
) -> list[dict[str, Any]]:
    """Records as FastChat battles: ``model_a``, ``model_b``, ``winner`` plus context for filtering.

    ``sources`` keeps only human or automatic votes; ``include_bothbad=False`` drops "both are bad" votes
    (otherwise they count as ties, as in FastChat).
    """
    battles = []
    for record in records:
        if record.source not in sources or (record.vote == "bothbad_vote" and not include_bothbad):
            continue
        battles.append(
            {
                "model_a": record.left.model.key,
                "model_b": record.right.model.key,
                "winner": record.winner,
                "judge": record.source if record.source == "human" else f"automatic:{_judge_name(record)}",
                "source": record.source,
                "anony": record.mode == "blind",
                "turn": record.turn,
                "tstamp": record.tstamp,
                "conv_metadata": {
                    "sum_assistant_a_tokens": record.left.new_tokens,
                    "sum_assistant_b_tokens": record.right.new_tokens,
                    "len_chars_a": record.left.len_chars,
                    "len_chars_b": record.right.len_chars,
                },
            }
        )
    return battles


def _judge_name(record: VoteRecord) -> str:
    return str((record.judge or {}).get("metric", "unknown"))


def export_battles(records: Iterable[VoteRecord], path: str | Path, **filters: Any) -> Path:
    """Write :func:`to_battles` output as a JSON list (the shape FastChat's rating scripts read); returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_battles(records, **filters), indent=1, ensure_ascii=False), encoding="utf-8")
    return path
