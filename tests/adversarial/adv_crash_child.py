"""Child process of the crash-safety tests: one training run of the tiny Phi-3 that may SIGKILL itself on purpose.

    python adv_crash_child.py CONFIG_JSON

CONFIG_JSON (a string) holds ``base``, ``data``, ``output``, ``repo_id`` (``null``: no Hub), ``resume``
(``"none"``, ``"local"`` or ``"hub"``), ``step_sleep`` (seconds slept after each step, so that the parent can kill
the run at a random time in the middle of it), ``progress`` (a JSON-lines file of events: ``train_begin`` with
the step training starts from, ``save`` for each checkpoint, ``train_end``) and ``kill`` (``null``, or where the
process kills itself with SIGKILL, leaving whatever a real crash would leave):

- ``{"at": "write", "step": N, "name": F}``: halfway through writing file ``F`` of ``checkpoint-N``, or a
  temporary file it is written through (``torch.save`` files such as ``optimizer.pt``, or text files such as
  ``trainer_state.json``): half the bytes reach the disk;
- ``{"at": "optimizer_step", "step": N}``: in the middle of training step N, after the optimizer updated the
  weights in memory and before the step is counted;
- ``{"at": "stage", "step": N}``: while the push callback stages ``checkpoint-N`` for the Hub (after the first
  file was linked).

Prints the final ``global_step`` as JSON when the run finishes.
"""

from __future__ import annotations

import builtins
import io
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

TRAINING: dict[str, Any] = {
    "max_steps": 8,
    "save_steps": 2,
    "per_device_train_batch_size": 4,
    "learning_rate": 2e-3,
    "logging_steps": 1,
    "disable_tqdm": True,
    "seed": 7,
}
"""8 steps, a checkpoint every 2 (with evaluation and sample answers at each: ``eval_size`` is set)."""


def die() -> None:
    """What a crash looks like to the files: no cleanup, no flush of Python buffers, no atexit."""
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


class _HalfWriter(io.RawIOBase):
    """A file opened for writing that dies after putting half of the first write on disk."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle

    def write(self, data: Any) -> int:
        self.handle.write(data[: max(1, len(data) // 2)])
        self.handle.flush()
        die()
        return 0  # pragma: no cover

    def __enter__(self) -> _HalfWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.handle.close()


def install_write_kill(step: int, name: str) -> None:
    """SIGKILL halfway through writing ``checkpoint-<step>/<name>``, whichever way it is written."""
    import torch

    real_save, real_open = torch.save, builtins.open

    def matches(file: Any) -> bool:
        """The file itself, or a temporary file it is written through (``.name.partial``, ``name.tmp``...)."""
        if not isinstance(file, (str, os.PathLike)):
            return False
        path = Path(file)
        return path.parent.name == f"checkpoint-{step}" and name in path.name

    def save(obj: Any, file: Any, *args: Any, **kwargs: Any) -> None:
        if not matches(file):
            return real_save(obj, file, *args, **kwargs)
        buffer = io.BytesIO()
        real_save(obj, buffer, *args, **kwargs)
        with real_open(file, "wb") as handle:
            _HalfWriter(handle).write(buffer.getvalue())

    def open_(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        handle = real_open(file, mode, *args, **kwargs)
        return _HalfWriter(handle) if matches(file) and ("w" in mode or "a" in mode) else handle

    torch.save = save
    builtins.open = open_
    io.open = open_


def install_stage_kill(step: int) -> None:
    """SIGKILL while ``checkpoint-<step>`` is being staged, after its first file was placed."""
    import phi3_lora_hub.hub.staging as staging

    real_link = os.link

    def link(source: Any, target: Any, *args: Any, **kwargs: Any) -> None:
        real_link(source, target, *args, **kwargs)
        if f"{os.sep}step-{step}{os.sep}" in os.fspath(target):
            die()

    staging.os.link = link  # type: ignore[attr-defined]


class Progress(TrainerCallback):
    """Appends events to the progress file, sleeps after each step, kills in the middle of a chosen step."""

    def __init__(self, path: Path, step_sleep: float, kill_step: int | None) -> None:
        self.path, self.step_sleep, self.kill_step = path, step_sleep, kill_step

    def event(self, name: str, step: int) -> None:
        with self.path.open("a") as handle:
            handle.write(json.dumps({"event": name, "step": step, "time": time.time()}) + "\n")

    def on_train_begin(self, args, state, control, **kwargs):
        self.event("train_begin", state.global_step)
        return control

    def on_optimizer_step(self, args, state, control, **kwargs):
        if self.kill_step is not None and state.global_step + 1 == self.kill_step:
            die()
        return control

    def on_step_end(self, args, state, control, **kwargs):
        if self.step_sleep:
            time.sleep(self.step_sleep)
        return control

    def on_save(self, args, state, control, **kwargs):
        self.event("save", state.global_step)
        return control

    def on_train_end(self, args, state, control, **kwargs):
        self.event("train_end", state.global_step)
        return control


def main() -> int:
    config = json.loads(sys.argv[1])
    kill = config.get("kill") or {}
    if kill.get("at") == "write":
        install_write_kill(kill["step"], kill["name"])
    elif kill.get("at") == "stage":
        install_stage_kill(kill["step"])
    from phi3_lora_hub import Phi3LoraRecipe

    repo_id = config.get("repo_id")
    progress = Progress(
        Path(config["progress"]),
        float(config.get("step_sleep", 0.0)),
        kill["step"] if kill.get("at") == "optimizer_step" else None,
    )
    recipe = Phi3LoraRecipe(
        config["base"],
        config["data"],
        output_dir=config["output"],
        eval_size=8,
        hub_model_id=repo_id,
        hub_push_resumable_state=repo_id is not None,
        training=TRAINING,
        callbacks=[progress],
    )
    resume = config.get("resume", "none")
    result = recipe.train(resume_from_checkpoint=True if resume == "local" else None, resume_from_hub=resume == "hub")
    print(json.dumps({"global_step": result.global_step, "hub_ok": None if result.hub is None else result.hub.ok}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
