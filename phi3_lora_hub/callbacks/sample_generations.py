"""The sample-generations callback: answers fixed prompts at every evaluation and save, stored in each checkpoint.

The file it writes and reads back is :class:`~phi3_lora_hub.evaluation.samples.SampleGenerations`.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from transformers import GenerationConfig, TrainerCallback

from phi3_lora_hub.distributed.processes import weights_are_sharded
from phi3_lora_hub.errors import ConfigError
from phi3_lora_hub.evaluation.samples import (
    SAMPLE_MAX_NEW_TOKENS,
    SampleAnswer,
    SampleGenerations,
    SamplePrompt,
    StepSamples,
)
from phi3_lora_hub.generation import generate_replies

logger = logging.getLogger(__name__)


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
