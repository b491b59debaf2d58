"""Sample generations during training: what the adapter answers to a few fixed prompts, at every checkpoint.

At each evaluation and each save, :class:`SampleGenerationsCallback` answers the same prompts with the adapter
as it is at that step, logs the answers, and writes :data:`SAMPLES_FILE` into ``checkpoint-N/``, so the
checkpoint pushed to the Hub (branch ``step-N``) carries what step N says. The file holds every step so far
(step 0 is the untrained adapter, i.e. the base model's answers), so the latest checkpoint and the final adapter
show how the answers changed over training.

File layout (``format_version`` 1)::

    {"format_version": 1, "step": 30, "source": "eval split",
     "gen_params": {"temperature": 0.0, "max_new_tokens": 64, ...},
     "prompts": [{"messages": [{"role": "user", "content": "..."}], "reference": "..." or null}],
     "steps": [{"step": 0, "epoch": 0.0, "answers": [{"text": "...", "finish_reason": "stop", "new_tokens": 9}]},
               {"step": 15, ...}, {"step": 30, ...}]}

``answers[i]`` answers ``prompts[i]``. When no prompt qualifies (every candidate conversation was cut by
``max_length`` before its first answer ended), training goes on without samples and the file holds no prompts and
a ``note`` saying why, which the model card shows.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from transformers import GenerationConfig, TrainerCallback

from phi3_lora_hub.decoding import config_from_settings, settings_of
from phi3_lora_hub.distributed.processes import weights_are_sharded
from phi3_lora_hub.errors import ConfigError
from phi3_lora_hub.evaluation.settings import EVALUATION_DEFAULTS
from phi3_lora_hub.generation import generate_replies

logger = logging.getLogger(__name__)

SAMPLES_FILE = "sample_generations.json"
SAMPLES_FORMAT_VERSION = 1
SAMPLE_MAX_NEW_TOKENS: int = EVALUATION_DEFAULTS["sample_max_new_tokens"]


@dataclass
class SamplePrompt:
    messages: list[dict[str, str]]
    reference: str | None = None


@dataclass
class SampleAnswer:
    text: str
    finish_reason: str
    new_tokens: int


@dataclass
class StepSamples:
    step: int
    epoch: float | None
    answers: list[SampleAnswer]


@dataclass
class SampleGenerations:
    """Answers to fixed prompts at successive training steps (the contents of :data:`SAMPLES_FILE`)."""

    prompts: list[SamplePrompt]
    gen_params: GenerationConfig
    source: str
    """Where the prompts came from: ``user``, ``eval split`` or ``train split``."""
    steps: list[StepSamples] = field(default_factory=list)
    format_version: int = SAMPLES_FORMAT_VERSION
    note: str | None = None
    """Why there are no sample answers (no prompt qualified), or ``None``."""

    @property
    def step(self) -> int | None:
        """The latest step with answers."""
        return self.steps[-1].step if self.steps else None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["gen_params"] = settings_of(self.gen_params)
        data["step"] = self.step
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SampleGenerations:
        if data.get("format_version", SAMPLES_FORMAT_VERSION) > SAMPLES_FORMAT_VERSION:
            raise ValueError(f"{SAMPLES_FILE} is newer than this library; upgrade phi3-lora-hub.")
        return cls(
            prompts=[SamplePrompt(**prompt) for prompt in data["prompts"]],
            gen_params=config_from_settings(data["gen_params"]),
            source=data.get("source", ""),
            steps=[
                StepSamples(s["step"], s.get("epoch"), [SampleAnswer(**a) for a in s["answers"]])
                for s in data.get("steps", [])
            ],
            note=data.get("note"),
        )

    def up_to(self, step: int) -> SampleGenerations:
        """A copy holding only the steps up to ``step`` (what a checkpoint at ``step`` knows)."""
        steps = [s for s in self.steps if s.step <= step]
        return SampleGenerations(self.prompts, self.gen_params, self.source, steps, note=self.note)

    def write(self, directory: str | Path) -> Path:
        """Write :data:`SAMPLES_FILE` into ``directory`` atomically: a crash while writing leaves the previous
        file (or none), never a half-written one, in the checkpoint a resumed run reads it back from."""
        path = Path(directory) / SAMPLES_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{SAMPLES_FILE}.partial")
        partial.write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        os.replace(partial, path)
        return path

    @classmethod
    def read(cls, directory: str | Path) -> SampleGenerations | None:
        """The samples stored in ``directory`` (a checkpoint or adapter), or ``None`` when there are none."""
        path = Path(directory) / SAMPLES_FILE
        if not path.is_file():
            return None
        return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))

    def markdown(self, *, last: int | None = 4) -> str:
        """A Markdown section: per prompt, the answer at each of the ``last`` steps (all when ``None``), or the note
        saying why there are none."""
        if not self.prompts:
            return f"No sample answers: {self.note or 'no prompts'}.\n"
        steps = self.steps if last is None else self.steps[-last:]
        parts = []
        for index, prompt in enumerate(self.prompts):
            # Every user turn, so a follow-up ("And its capital?") keeps its context.
            question = " → ".join(m["content"] for m in prompt.messages if m["role"] == "user")
            parts.append(f"**Prompt {index + 1}:** {question}")
            if prompt.reference:
                parts.append(f"- reference: {prompt.reference}")
            for entry in steps:
                answer = entry.answers[index]
                cut = "" if answer.finish_reason == "stop" else " *(cut at max_new_tokens)*"
                label = "step 0 (base)" if entry.step == 0 else f"step {entry.step}"
                parts.append(f"- {label}: {answer.text or '(empty)'}{cut}")
            parts.append("")
        return "\n".join(parts).rstrip() + "\n"


class SampleGenerationsCallback(TrainerCallback):
    """Answers fixed prompts at step 0, at every evaluation and at every save; stores them in each checkpoint.

    Args:
        prompts: conversations to answer, each a list of ``{"role", "content"}`` messages ending with the user's
            turn (or a :class:`SamplePrompt`, which may carry a reference answer).
        generation_config: how to decode; default: greedy, ``max_new_tokens=64``. Generation always stops on
            Phi-3's end-of-turn tokens (``<|end|>``, ``<|assistant|>``, ``<|endoftext|>``).
        source: where the prompts came from, as the file and the model card say (``user``, ``eval split``, ...).
        seed: seeds sampling, in a private RNG state, so answers repeat and training randomness is untouched.
        note: with no prompts, why there are none (required then).

    Runs on the main process only. Answers for a step are generated once even when an evaluation and a save
    happen at the same step. Must come before any callback that uploads checkpoints, so the file is there.

    With no prompts, ``note`` is logged once when training begins and written into every checkpoint's file (and so
    its model card) instead of answers.
    """

    def __init__(
        self,
        prompts: Sequence[Sequence[Mapping[str, str]] | SamplePrompt],
        generation_config: GenerationConfig | None = None,
        *,
        source: str = "user",
        seed: int | None = 0,
        note: str | None = None,
    ) -> None:
        if not prompts and not note:
            raise ValueError("SampleGenerationsCallback without prompts needs a note saying why there are none")
        prompts = [p if isinstance(p, SamplePrompt) else SamplePrompt([dict(m) for m in p]) for p in prompts]
        for index, prompt in enumerate(prompts):
            if not prompt.messages or prompt.messages[-1].get("role") != "user":
                raise ConfigError(f"Sample prompt {index} must end with a user message: the model answers it.")
        config = copy.deepcopy(generation_config) if generation_config is not None else None
        config = config or GenerationConfig(do_sample=False, max_new_tokens=SAMPLE_MAX_NEW_TOKENS)
        config.seed = seed  # generate_replies seeds a private RNG state with the config's seed entry
        self.generation_config = config
        self.samples = SampleGenerations(prompts, config, source, note=None if prompts else note)
        self._disabled = not prompts

    def _answers_at(self, args, state, model, tokenizer) -> StepSamples | None:
        if self._disabled or not state.is_world_process_zero or model is None or tokenizer is None:
            return None
        if weights_are_sharded(args):
            logger.warning(
                "Sample generations are off: the weights are sharded across processes (FSDP or ZeRO-3), so the "
                "main process cannot generate alone."
            )
            self._disabled = True
            return None
        existing = next((s for s in self.samples.steps if s.step == state.global_step), None)
        if existing is not None:
            return existing
        generations = generate_replies(
            model,
            tokenizer,
            [prompt.messages for prompt in self.samples.prompts],
            self.samples.gen_params,
            batch_size=len(self.samples.prompts),
        )
        entry = StepSamples(
            state.global_step,
            state.epoch,
            [SampleAnswer(g.text, g.finish_reason, g.new_tokens) for g in generations],
        )
        self.samples.steps = sorted([*self.samples.steps, entry], key=lambda s: s.step)
        self._log(entry)
        return entry

    def _log(self, entry: StepSamples) -> None:
        lines = [f"Sample answers at step {entry.step}:"]
        for prompt, answer in zip(self.samples.prompts, entry.answers, strict=True):
            cut = "" if answer.finish_reason == "stop" else " [cut at max_new_tokens]"
            lines.append(f"  Q: {prompt.messages[-1]['content']}\n  A: {answer.text}{cut}")
        logger.info("\n".join(lines))

    def on_train_begin(self, args, state, control, **kwargs):
        if self.samples.note is not None and state.is_world_process_zero:
            logger.warning("No sample answers during training: %s.", self.samples.note)
        if state.global_step > 0:  # resumed: keep the history stored with the checkpoint
            checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            try:
                stored = SampleGenerations.read(checkpoint)
            except (OSError, ValueError, KeyError, TypeError) as error:  # e.g. cut short by a crash
                logger.warning("Ignoring the sample answers stored in %s, which cannot be read: %s", checkpoint, error)
                stored = None
            if stored is not None and [p.messages for p in stored.prompts] == [
                p.messages for p in self.samples.prompts
            ]:
                self.samples.steps = stored.steps
        self._answers_at(args, state, kwargs.get("model"), kwargs.get("processing_class"))
        return control

    def on_evaluate(self, args, state, control, **kwargs):
        self._answers_at(args, state, kwargs.get("model"), kwargs.get("processing_class"))
        return control

    def on_save(self, args, state, control, **kwargs):
        answered = self._answers_at(args, state, kwargs.get("model"), kwargs.get("processing_class")) is not None
        if answered or (self.samples.note is not None and state.is_world_process_zero):
            self.samples.up_to(state.global_step).write(Path(args.output_dir) / f"checkpoint-{state.global_step}")
        return control

    def write_final(self, directory: str | Path, model, tokenizer, state) -> Path | None:
        """Store the samples in the final adapter directory, answering at the final step if not done yet."""
        if not state.is_world_process_zero:
            return None
        answered = self._answers_at(None, state, model, tokenizer) is not None
        if not answered and not self.samples.steps and self.samples.note is None:
            return None
        return self.samples.write(directory)
