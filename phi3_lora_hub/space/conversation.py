"""One visitor's comparison: two panes with their own history, blind-mode sides, and the vote it turns into.

A :class:`Match` lives in the visitor's ``gr.State``. Its two panes are kept *as displayed*: pane 0 is "A" on
the left, pane 1 is "B" on the right. The visitor picks two contenders; in named mode the first picked is A, in
blind mode a coin decides (``swapped`` = the first picked is on the right) and the names stay hidden until the
first vote. That vote ends the blind battle: the names are shown from then on, so later votes in the conversation
are recorded as named ones. Each pane keeps its own turns (the user turns are the same, the answers differ); the
shared system prompt is put in front when the conversation is sent to a model.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from transformers import GenerationConfig

from phi3_lora_hub.arena.votes import SideRecord, Vote, VoteRecord
from phi3_lora_hub.decoding import chat_generation_config
from phi3_lora_hub.model.identity import ModelRef
from phi3_lora_hub.space.hub_adapters import LocalAdapter
from phi3_lora_hub.space.refusal import Refusal
from phi3_lora_hub.space.streaming import SideProgress

SIDES = ("A", "B")
BASE_CHOICE = "base"


@dataclass(frozen=True)
class Contender:
    """A model a pane can show: the base (``adapter is None``) or an adapter that passed every check."""

    adapter: LocalAdapter | None = None

    @property
    def ref(self) -> ModelRef:
        return ModelRef.base() if self.adapter is None else self.adapter.ref

    @property
    def label(self) -> str:
        return "base model" if self.adapter is None else self.adapter.label

    @property
    def pick(self) -> tuple[str, str | None]:
        """The picker values (repo, revision) this contender was made from."""
        if self.adapter is None:
            return BASE_CHOICE, None
        return self.adapter.key.repo_id, self.adapter.revision


@dataclass
class Pane:
    """One displayed side: its contender, its turns (no system prompt), how its last answer went."""

    contender: Contender
    turns: list[dict[str, str]] = field(default_factory=list)
    progress: SideProgress | None = None
    chosen: bool = True
    """False while no model was chosen for the pane (its picker was refused): ``contender`` is a stand-in."""

    def chat(self) -> list[dict[str, str]]:
        """The turns as ``gr.Chatbot`` messages."""
        return [{"role": turn["role"], "content": turn["content"]} for turn in self.turns]


@dataclass
class Match:
    """The state of one visitor's comparison (see the module docstring)."""

    panes: list[Pane] = field(default_factory=lambda: [Pane(Contender(), chosen=False) for _ in SIDES])
    picks: tuple[Contender, Contender] | None = None
    """The contenders in the order they were picked (first, second); ``None`` until two were chosen."""
    blind: bool = False
    swapped: bool = False
    system_prompt: str = ""
    params: GenerationConfig | None = None
    voted: bool = False
    """A vote was cast on the last answers."""
    revealed: bool = False
    """A blind battle's names were shown (by a vote); they stay shown for the rest of the conversation."""
    conv_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def user_turns(self) -> int:
        return sum(turn["role"] == "user" for turn in self.panes[0].turns)

    @property
    def answered(self) -> bool:
        """True when both panes finished answering the last user turn."""
        return self.user_turns > 0 and all(
            pane.turns and pane.turns[-1]["role"] == "assistant" and pane.progress is not None for pane in self.panes
        )

    @property
    def can_vote(self) -> bool:
        return self.answered and not self.voted

    @property
    def hidden(self) -> bool:
        """True while the names are kept from the visitor: a blind battle before its first vote."""
        return self.blind and not (self.revealed or self.voted)

    @classmethod
    def between(cls, picks: tuple[Contender, Contender], *, blind: bool, rng: random.Random | None = None) -> Match:
        """A new, empty conversation between ``picks`` (see :meth:`start`)."""
        match = cls()
        match.start(picks, blind=blind, rng=rng)
        return match

    @classmethod
    def named(cls, picks: Sequence[Contender | None]) -> Match:
        """A new, empty named conversation between ``picks``, where ``None`` marks a pane without a model (its
        picker was refused): the panes show what they have, and the first prompt needs both."""
        first, second = picks
        if first is not None and second is not None:
            return cls.between((first, second), blind=False)
        return cls(panes=[Pane(pick or Contender(), chosen=pick is not None) for pick in picks])

    def start(self, picks: tuple[Contender, Contender], *, blind: bool, rng: random.Random | None = None) -> None:
        """Begin a new conversation between ``picks`` (blind: sides decided by a coin)."""
        swapped = blind and (rng or random).random() < 0.5
        first, second = picks
        self.panes = [Pane(second), Pane(first)] if swapped else [Pane(first), Pane(second)]
        self.picks, self.blind, self.swapped = picks, blind, swapped
        self.params, self.voted, self.revealed, self.conv_id = None, False, False, uuid.uuid4().hex

    def cleared(self) -> Match:
        """A new, empty conversation between the same contenders on the same sides (names stay as shown)."""
        fresh = Match(panes=[Pane(pane.contender) for pane in self.panes], picks=self.picks)
        fresh.blind, fresh.swapped, fresh.revealed = self.blind, self.swapped, self.blind and not self.hidden
        fresh.system_prompt = self.system_prompt
        return fresh

    def needs_restart(self, picks: tuple[Contender, Contender], blind: bool) -> bool:
        """A new conversation is needed when the contenders or the mode changed (answers would mix models)."""
        return self.picks is None or self.picks != picks or self.blind != blind

    def add_user_turn(self, prompt: str, *, max_turns: int) -> None:
        if self.user_turns >= max_turns:
            raise Refusal(f"This conversation reached {max_turns} turns, the limit here: clear it to start again.")
        for pane in self.panes:
            pane.turns.append({"role": "user", "content": prompt})
            pane.progress = None
        self.voted = False

    def drop_answers(self) -> None:
        """Remove the last answers (to regenerate them); :class:`Refusal` when there is nothing to regenerate."""
        if self.user_turns == 0:
            raise Refusal("There is nothing to regenerate yet: send a prompt first.")
        for pane in self.panes:
            if pane.turns and pane.turns[-1]["role"] == "assistant":
                pane.turns.pop()
            pane.progress = None
        self.voted = False

    def with_prompt(self, prompt: str) -> list[list[dict[str, str]]]:
        """Both transcripts as they would be with ``prompt`` added (to check they fit before adding it)."""
        return [[*self.transcript(side), {"role": "user", "content": prompt}] for side in range(len(self.panes))]

    def prompt_transcripts(self) -> list[list[dict[str, str]]]:
        """Both transcripts without their last answers: what a regeneration sends."""
        transcripts = [self.transcript(side) for side in range(len(self.panes))]
        return [t[:-1] if t and t[-1]["role"] == "assistant" else t for t in transcripts]

    def transcript(self, side: int) -> list[dict[str, str]]:
        """Pane ``side``'s conversation as sent to its model: system prompt (if any) first."""
        system = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        return system + [dict(turn) for turn in self.panes[side].turns]

    def show_progress(self, progress: Sequence[SideProgress]) -> None:
        """Put each pane's (partial) answer after its last user turn."""
        for pane, side in zip(self.panes, progress, strict=True):
            if pane.turns and pane.turns[-1]["role"] == "assistant":
                pane.turns[-1]["content"] = side.text
            else:
                pane.turns.append({"role": "assistant", "content": side.text})
            pane.progress = side

    def label(self, side: int) -> str:
        """The pane's title: the model and revision the pane answers with (``Model A · repo @ main (1a2b3c4)``),
        ``Model A · hidden`` in a blind battle until the vote, ``Model A · no model`` before any was chosen."""
        name = f"Model {SIDES[side]}"
        if self.hidden:
            return f"{name} · hidden"
        if not self.panes[side].chosen:
            return f"{name} · no model"
        return f"{name} · {self.panes[side].contender.label}"

    def cast_vote(self, vote: Vote, session_hash: str) -> VoteRecord:
        """The vote on the last answers (see :meth:`to_vote`); no second vote is taken on these answers. A vote
        in a blind battle reveals the names for the rest of the conversation."""
        record = self.to_vote(vote, session_hash)
        self.voted = True
        self.revealed = self.blind
        return record

    def to_vote(self, vote: Vote, session_hash: str) -> VoteRecord:
        """The vote on the last answers as a record; :class:`Refusal` when they cannot be voted on."""
        if not self.answered:
            raise Refusal("Vote once both models have answered.")
        if self.voted:
            raise Refusal("You already voted on these answers: send another prompt, or clear to start again.")
        sides = [
            SideRecord(
                model=pane.contender.ref,
                messages=self.transcript(index),
                latency_s=pane.progress.latency_s if pane.progress else None,
                new_tokens=pane.progress.new_tokens if pane.progress else None,
                finish_reason=pane.progress.finish_reason if pane.progress else None,  # type: ignore[arg-type]
            )
            for index, pane in enumerate(self.panes)
        ]
        return VoteRecord(
            left=sides[0],
            right=sides[1],
            vote=vote,
            gen_params=self.params or chat_generation_config(),
            system_prompt=self.system_prompt or None,
            source="human",
            mode="blind" if self.hidden else "named",
            swapped=self.swapped,
            session_hash=session_hash,
            conv_id=self.conv_id,
        )
