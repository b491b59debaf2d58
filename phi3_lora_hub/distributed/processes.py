"""Who does what when the recipe runs as several processes (``accelerate launch``, ``torchrun``, several machines).

Every process runs the same ``train()``; they differ only in who writes. The rules the recipe follows:

- Data preparation: the global main process first, then the main process of each other node, then everyone else
  (:func:`main_process_first`), so the on-disk cache of :mod:`phi3_lora_hub.data.prepare` is written once per
  cache that the processes share (once in all with a shared file system, once per node with node-local disks)
  and read by the others.
- Files that exist once (the final adapter, reports, the Hub): the global main process (:func:`is_main_process`).
- Collective work (training, the Trainer's evaluation, gathering a sharded model to save it): every process.

Single-process runs take the same code paths; every helper here is then a no-op.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from phi3_lora_hub.distributed.launch_plan import read_launch_plan

logger = logging.getLogger(__name__)

# TrainingArguments' own default for `ddp_timeout` (seconds): a barrier waits this long for the slowest process.
_DEFAULT_TIMEOUT_S = 1800


def process_state(training: Mapping[str, Any] | None = None):
    """The process group as ``accelerate.PartialState``, set up the way the Trainer would set it up.

    The first call initialises ``torch.distributed`` when the process was started by a launcher. The Trainer's
    arguments re-create the state later but keep the process group, so the backend and timeout chosen here are the
    ones of the whole run: they come from the recipe's ``training`` settings (``use_cpu``, ``ddp_backend``,
    ``ddp_timeout``), exactly as ``TrainingArguments`` reads them. Later calls return the existing state: once it is
    initialised (by an earlier call or by ``TrainingArguments``), ``PartialState`` ignores its arguments.
    """
    from accelerate import PartialState

    training = training or {}
    kwargs: dict[str, Any] = {"timeout": timedelta(seconds=training.get("ddp_timeout") or _DEFAULT_TIMEOUT_S)}
    if training.get("ddp_backend"):
        kwargs["backend"] = training["ddp_backend"]
    return PartialState(cpu=bool(training.get("use_cpu")), **kwargs)


def is_main_process() -> bool:
    """True on the one process that writes run-wide files and talks to the Hub (global rank 0).

    Until the process group is set up, the answer is the launcher's ``RANK`` (set by torchrun, accelerate and
    deepspeed), so asking early, before the recipe sets up distribution with its own settings, sets nothing up.
    """
    import torch.distributed

    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return int(os.environ.get("RANK", "0")) == 0
    return process_state().is_main_process


@contextlib.contextmanager
def main_process_first(training: Mapping[str, Any] | None = None) -> Iterator[None]:
    """Run the block on the global main process, then on the main process of each other node, then on the rest.

    Work that fills an on-disk cache inside the block is then done once per cache the processes can read: the
    global main fills a shared cache for everyone, the local mains fill node-local ones, the others find it filled.

    Unlike ``PartialState.main_process_first``, a process whose block raises still releases the processes waiting
    for it, so they do not hang until the timeout: they run the block themselves and, with the same inputs, stop on
    the same error.
    """
    state = process_state(training)
    if state.num_processes == 1:
        yield
        return
    with _goes_first(state, state.is_main_process), _goes_first(state, state.is_local_main_process):
        yield


@contextlib.contextmanager
def _goes_first(state, first: bool) -> Iterator[None]:
    if not first:
        state.wait_for_everyone()  # wait for the ones going first to finish the block
    try:
        yield
    finally:
        if first:
            state.wait_for_everyone()  # let the others in, even when the block raised


def weights_are_sharded(args: Any = None) -> bool:
    """True when no single process holds the whole model (FSDP with sharding, DeepSpeed ZeRO-3).

    Then a forward pass on one process alone waits forever for the others, so main-process-only work that runs the
    model (sample generations, the generation-based evaluation) must not run. Read from the Trainer's accelerator
    state when it exists, else from the training arguments and the launcher's environment.
    """
    from accelerate.state import AcceleratorState, DistributedType, is_initialized

    # The Trainer's Accelerator fills AcceleratorState (constructing it before that would initialise it here);
    # its plugin attributes exist only for their own strategy.
    state = AcceleratorState() if is_initialized() else None
    kind = state.distributed_type if state is not None else None
    if kind == DistributedType.FSDP:
        from torch.distributed.fsdp import ShardingStrategy

        plugin = state.fsdp_plugin
        return plugin.fsdp_version == 2 or plugin.sharding_strategy != ShardingStrategy.NO_SHARD
    if kind == DistributedType.DEEPSPEED:
        return state.deepspeed_plugin.zero_stage == 3
    if kind is not None:
        return False
    if getattr(args, "fsdp", None) or getattr(args, "deepspeed", None):
        return True
    return read_launch_plan().shards_weights


def save_trained_adapter(trainer, directory: str | Path) -> None:
    """Write the PEFT adapter of ``trainer`` to ``directory`` once; every process must call this.

    ``Trainer.save_model`` is the path every checkpoint takes: it gathers FSDP (full state dict) and ZeRO-3
    (16-bit) shards collectively and writes on the process that saves (``args.should_save``). Its pickled
    ``training_args.bin`` is deleted: a pickle runs code when loaded, and an adapter directory is for sharing.
    """
    from transformers.trainer import TRAINING_ARGS_NAME

    trainer.save_model(str(directory))
    if trainer.args.should_save:
        (Path(directory) / TRAINING_ARGS_NAME).unlink(missing_ok=True)


def global_batch_summary(training: Mapping[str, Any], processes: int) -> str:
    """One line saying how many rows one optimizer step sees, and where the factors come from."""
    per_device = int(training.get("per_device_train_batch_size", 8))
    accumulation = int(training.get("gradient_accumulation_steps", 1))
    total = per_device * accumulation * processes
    return (
        f"Global batch: {total} rows per optimizer step = {per_device} per device x {accumulation} accumulation "
        f"step(s) x {processes} process(es)"
    )
