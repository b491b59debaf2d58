"""Ctrl-C during ``train()``: say which checkpoint is complete and how to resume from it.

:func:`reporting_interrupts` turns the ``KeyboardInterrupt`` of an interrupted run into :class:`TrainingInterrupted`
(still a ``KeyboardInterrupt``, so everything that stops on Ctrl-C still does), which knows the step reached and
the newest *complete* checkpoint (partial ones, cut by the interrupt itself, are skipped). Its message says how to
resume from the Python API; the command line prints the command instead.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from phi3_lora_hub.hub.resume import checkpoint_step, newest_complete_checkpoint
from phi3_lora_hub.training.progress import close_progress_bars

if TYPE_CHECKING:
    from transformers import Trainer


@dataclass
class InterruptedRun:
    """Where an interrupted run stands."""

    output_dir: Path
    step: int | None
    """The last optimizer step done (``None`` when training had not started)."""
    checkpoint: Path | None
    """The newest complete ``checkpoint-N`` in ``output_dir``, which resuming continues from (``None``: none)."""

    def describe(self) -> str:
        """One line: where training stopped and which checkpoint is complete."""
        stopped = "Training interrupted" + (f" at step {self.step}" if self.step is not None else "")
        if self.checkpoint is None:
            return f"{stopped}. No checkpoint in {self.output_dir} is complete yet: a new run starts at step 0."
        return (
            f"{stopped}. The newest complete checkpoint is {self.checkpoint} (step {checkpoint_step(self.checkpoint)})."
        )


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped ``train()``; ``run`` says where it stands. Catch ``KeyboardInterrupt`` to handle it."""

    def __init__(self, run: InterruptedRun) -> None:
        self.run = run
        resume = " Resume it with train(resume_from_checkpoint=True)." if run.checkpoint is not None else ""
        super().__init__(run.describe() + resume)


@contextlib.contextmanager
def reporting_interrupts(output_dir: str | Path, current_trainer: Callable[[], Trainer | None]) -> Iterator[None]:
    """Raise :class:`TrainingInterrupted` (from the original) when Ctrl-C interrupts the block.

    ``current_trainer`` returns the trainer at the moment of the interrupt (``None`` before one is built), whose
    progress bars are closed and whose step is reported; checkpoints are looked for in ``output_dir``.
    """
    try:
        yield
    except TrainingInterrupted:
        raise
    except KeyboardInterrupt as interrupt:
        trainer = current_trainer()
        if trainer is not None:
            close_progress_bars(trainer)  # or the bar redraws itself after the message when Python exits
        step = trainer.state.global_step if trainer is not None else None
        run = InterruptedRun(Path(output_dir), step, newest_complete_checkpoint(Path(output_dir)))
        raise TrainingInterrupted(run) from interrupt
