"""Answer both panes at once, token by token, each with its own model, on one base model.

Activation of a PEFT adapter is global state, so two panes cannot stream from two threads. Instead both
conversations go into **one batched** ``generate`` call with ``adapter_names=[left, right]`` (PEFT's mixed-batch
inference; ``__base__`` = no adapter): every decoding step runs both rows, each through its own adapter, so the
panes advance together. A streamer splits each step's tokens by row and reports each pane's text, its token
count and, when the row emits a Phi-3 stop token, its latency. Rows are left-padded, so panes with
conversations of different lengths share the batch.

DoRA adapters cannot share a mixed batch (PEFT refuses): then the panes are answered one after the other, each
with its adapter activated by :func:`phi3_lora_hub.evaluation.models.active_adapter`.

Generation runs in a worker thread holding the registry lock (:meth:`AdapterRegistry.use`) and hands progress
to the caller's iterator through a queue; closing the iterator (a visitor pressing Stop, a dropped connection)
stops generation at the next token and releases the lock.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from transformers import GenerationConfig, StoppingCriteria, StoppingCriteriaList

from phi3_lora_hub.evaluation.models import active_adapter
from phi3_lora_hub.generation import decoding_config, left_padded, private_rng, prompt_ids, stop_ids_of
from phi3_lora_hub.space.base_model import ServedBase
from phi3_lora_hub.space.hub_adapters import LocalAdapter
from phi3_lora_hub.space.refusal import Refusal
from phi3_lora_hub.space.registry import BASE_NAME, AdapterRegistry, Loaded

Messages = Sequence[dict[str, str]]
_DONE = object()


@dataclass(frozen=True)
class SideRequest:
    """One pane's turn: the conversation so far (system prompt first, ending with the user) and its model."""

    messages: Messages
    adapter: LocalAdapter | None
    """``None`` for the base model."""


@dataclass(frozen=True)
class SideProgress:
    """How far one pane's answer got."""

    text: str = ""
    new_tokens: int = 0
    finish_reason: str | None = None
    """``stop`` (the model ended its turn), ``length`` (``max_new_tokens`` reached), ``error``; ``None`` while
    generating, or when generation was stopped before the end."""
    latency_s: float | None = None
    """Seconds from the start of generation to this pane's last token (set when it finished)."""

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None


class Cancelled(StoppingCriteria):
    """Ends generation for every row once ``event`` is set."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


class RowStreamer:
    """A ``generate`` streamer for a batch: splits each step's tokens by row into the slots of ``slots``.

    The first ``put`` (the prompt) is skipped. A row is finished at its first Phi-3 stop token (``stop``, not
    counted) or at ``max_new_tokens`` (``length``); later tokens of that row (padding) are ignored. Each change
    is reported as ``(slot, SideProgress)`` on ``events``.
    """

    def __init__(
        self,
        tokenizer: Any,
        slots: Sequence[int],
        *,
        stop_ids: Sequence[int],
        max_new_tokens: int,
        events: queue.Queue,
        started: float,
    ) -> None:
        self.tokenizer = tokenizer
        self.slots = list(slots)
        self.stop_ids = set(stop_ids)
        self.max_new_tokens = max_new_tokens
        self.events = events
        self.started = started
        self.tokens: list[list[int]] = [[] for _ in self.slots]
        self.finished = [False] * len(self.slots)
        self._prompt_seen = False

    def put(self, value: Any) -> None:
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        step = value.reshape(len(self.slots), -1).tolist()
        for row, tokens in enumerate(step):
            for token in tokens:
                if self.finished[row]:
                    break
                if token in self.stop_ids:
                    self._finish(row, "stop")
                    break
                self.tokens[row].append(token)
                if len(self.tokens[row]) >= self.max_new_tokens:
                    self._finish(row, "length")
                else:
                    self._report(row, None)

    def end(self) -> None:
        """Rows still open when generation ends were cut off (by ``max_new_tokens`` or a stop request)."""
        for row in range(len(self.slots)):
            if not self.finished[row] and len(self.tokens[row]) >= self.max_new_tokens:
                self._finish(row, "length")

    def _finish(self, row: int, reason: str) -> None:
        self.finished[row] = True
        self._report(row, reason)

    def _report(self, row: int, reason: str | None) -> None:
        text = self.tokenizer.decode(self.tokens[row], skip_special_tokens=True)
        # Hold back a partial multi-byte character (byte-fallback tokens) until its last byte arrives.
        text = text.strip() if reason else text.lstrip().rstrip("\ufffd")
        latency = time.perf_counter() - self.started if reason else None
        self.events.put((self.slots[row], SideProgress(text, len(self.tokens[row]), reason, latency)))


def check_fits(base: ServedBase, conversations: Sequence[Messages], max_new_tokens: int) -> None:
    """Raise :class:`Refusal` when a conversation plus ``max_new_tokens`` exceeds the base's context."""
    for ids in prompt_ids(base.tokenizer, conversations):
        length = len(ids)
        if length + max_new_tokens > base.context_tokens:
            raise Refusal(
                f"The conversation is {length} tokens long; with {max_new_tokens} new tokens it would not fit the "
                f"model's {base.context_tokens}-token window. Clear the chat, or lower max new tokens."
            )


def stream_pair(
    base: ServedBase,
    registry: AdapterRegistry,
    sides: Sequence[SideRequest],
    params: GenerationConfig,
    *,
    cancel: threading.Event | None = None,
) -> Iterator[list[SideProgress]]:
    """Answer every side at once; yields the progress of all sides after each change, the last when all ended.

    Raises :class:`Refusal` (before generating) when a conversation does not fit the context. An error during
    generation ends the unfinished sides with ``finish_reason="error"``. Closing the iterator early stops the
    generation.
    """
    check_fits(base, [side.messages for side in sides], params.max_new_tokens)
    cancel = cancel or threading.Event()
    events: queue.Queue = queue.Queue()
    worker = threading.Thread(
        target=_generate_all, args=(base, registry, list(sides), params, cancel, events), daemon=True
    )
    progress = [SideProgress() for _ in sides]
    worker.start()
    try:
        while True:
            item = events.get()
            items = [item]
            while not events.empty():  # coalesce what arrived meanwhile into one update
                items.append(events.get_nowait())
            done = False
            for event in items:
                if event is _DONE:
                    done = True
                elif isinstance(event, BaseException):
                    progress = [p if p.finished else replace(p, finish_reason="error") for p in progress]
                else:
                    slot, side = event
                    progress[slot] = side
            yield list(progress)
            if done:
                return
    finally:
        cancel.set()
        worker.join(timeout=30)


def _generate_all(
    base: ServedBase,
    registry: AdapterRegistry,
    sides: list[SideRequest],
    params: GenerationConfig,
    cancel: threading.Event,
    events: queue.Queue,
) -> None:
    try:
        with registry.use([side.adapter for side in sides]) as loaded:
            if all(entry is None or entry.mixed_batch for entry in loaded):
                names = [BASE_NAME if entry is None else entry.name for entry in loaded]
                _generate(base, registry.model, sides, range(len(sides)), params, cancel, events, adapter_names=names)
            else:
                for slot, (side, entry) in enumerate(zip(sides, loaded, strict=True)):
                    with active_adapter(registry.model, _name(entry)):
                        _generate(base, registry.model, [side], [slot], params, cancel, events)
    except BaseException as error:  # reported to the caller, which marks the open sides as failed
        events.put(error)
    finally:
        events.put(_DONE)


def _name(entry: Loaded | None) -> str | None:
    return None if entry is None else entry.name


def _generate(
    base: ServedBase,
    model: Any,
    sides: Sequence[SideRequest],
    slots: Sequence[int],
    params: GenerationConfig,
    cancel: threading.Event,
    events: queue.Queue,
    **extra: Any,
) -> None:
    device = base.device
    config = decoding_config(base.tokenizer, params)
    inputs = left_padded(prompt_ids(base.tokenizer, [side.messages for side in sides]), config.pad_token_id, device)
    streamer = RowStreamer(
        base.tokenizer,
        slots,
        stop_ids=sorted(stop_ids_of(config)),
        max_new_tokens=config.max_new_tokens,
        events=events,
        started=time.perf_counter(),
    )
    with private_rng(config, device), torch.inference_mode():
        model.generate(
            **inputs,
            generation_config=config,
            streamer=streamer,
            stopping_criteria=StoppingCriteriaList([Cancelled(cancel)]),
            **extra,
        )
