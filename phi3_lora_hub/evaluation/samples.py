"""Sample generations during training: what the adapter answers to a few fixed prompts, at every checkpoint.

At each evaluation and each save, :class:`~phi3_lora_hub.callbacks.sample_generations.SampleGenerationsCallback`
answers the same prompts with the adapter
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

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from transformers import GenerationConfig

from phi3_lora_hub.atomic_write import atomic_write_text
from phi3_lora_hub.decoding import config_from_settings, settings_of
from phi3_lora_hub.evaluation.settings import EVALUATION_DEFAULTS
from phi3_lora_hub.run_file_names import SAMPLES_FILE

logger = logging.getLogger(__name__)

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
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n")
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
