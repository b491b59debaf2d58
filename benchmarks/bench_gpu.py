"""GPU training step: the full-size Phi-3-mini architecture (random weights, bf16, sequences up to 2048 tokens),
LoRA r 16 on all linear layers: tokens/s, model FLOPs utilisation and peak memory, recipe vs plain SFTTrainer
defaults, plus one QLoRA run of the recipe.

- **recipe**: ``Phi3SFTTrainer`` with the recipe's resolved defaults for this GPU (bf16, gradient checkpointing,
  padding-free batches with FlashAttention when ``flash_attn`` is installed or per-sequence SDPA otherwise, chunked
  loss head, Liger kernels when installed).
- **trl**: ``SFTTrainer(model, args=SFTConfig(output_dir, batch size, max_steps, max_length=2048), train_dataset,
  peft_config=LoraConfig(...))`` with TRL's defaults otherwise (bf16, gradient checkpointing, padded batches, SDPA).
- **recipe-qlora**: the recipe with 4-bit NF4 base weights (needs ``bitsandbytes``).

Data: pre-tokenized random sequences; ``--lengths fixed`` makes every sequence ``--seq-len`` long, ``mixed`` draws
lengths from a log-normal (median 512, clipped to [32, seq-len], seed 0), the shape of real chat data. The first
30% of each sequence is prompt (label -100). Every contender sees the same sequences in the same order.

MFU = model FLOPs per second / the bf16 matmul peak measured on the same GPU (an 8192^3 matmul). Model FLOPs per
trained token: forward ``2 N`` (N = parameters in the linear layers and the LM head), backward ``2 N`` (input
gradients only: the base is frozen; LoRA's own FLOPs are negligible), plus causal attention ``3 x 4 d L_avg`` per
layer; activation recomputation is not counted (it is overhead, not model work).

Targets on an H100/H200-class GPU: at least 40% MFU and at least 1.3x plain SFTTrainer on ``--lengths mixed``.
Without a CUDA GPU the script says so and exits 0; ``--dry-run`` runs the same code path on CPU at tiny sizes::

    python benchmarks/bench_gpu.py                 # on a CUDA machine
    python benchmarks/bench_gpu.py --dry-run       # anywhere: tiny model, CPU, 2 steps per contender
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PHI3_MINI, ModelSize, build_model, lora_config, machine, table

TINY = ModelSize(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, vocab_size=1152)


def matmul_peak(device: str, dtype, size: int, repeats: int = 20) -> float:
    """Measured dense matmul throughput (FLOP/s) of ``size^3`` products in ``dtype`` on ``device``."""
    import torch

    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    _synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    _synchronize(device)
    return 2 * size**3 * repeats / (time.perf_counter() - start)


def _synchronize(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def sequence_lengths(count: int, seq_len: int, mode: str, seed: int = 0) -> list[int]:
    """``count`` lengths: all ``seq_len`` (fixed) or log-normal around ``seq_len / 4`` clipped to [32, seq_len]."""
    import random

    if mode == "fixed":
        return [seq_len] * count
    rng = random.Random(seed)
    median = seq_len / 4
    return [max(min(seq_len, 32), min(seq_len, round(rng.lognormvariate(math.log(median), 0.8)))) for _ in range(count)]


def make_dataset(lengths: list[int], vocab: int, seed: int = 0):
    """Pre-tokenized random sequences (ids above the special tokens); the first 30% of each is prompt."""
    import datasets
    import torch

    generator = torch.Generator().manual_seed(seed)
    rows = {"input_ids": [], "labels": []}
    for length in lengths:
        ids = torch.randint(3, vocab - 100, (length,), generator=generator).tolist()
        prompt = int(length * 0.3)
        rows["input_ids"].append(ids)
        rows["labels"].append([-100] * prompt + ids[prompt:])
    return datasets.Dataset.from_dict(rows)


def model_flops(size: ModelSize, lengths: list[int]) -> float:
    """Model FLOPs of one LoRA training pass over sequences of ``lengths`` (see the module docstring)."""
    d, layers = size.hidden_size, size.num_hidden_layers
    per_layer = d * 3 * d + d * d + d * 2 * size.intermediate_size + size.intermediate_size * d
    linear = layers * per_layer + d * size.vocab_size
    tokens = sum(lengths)
    attention = sum(layers * 3 * 4 * d * (length + 1) / 2 * length for length in lengths)
    return 4 * linear * tokens + attention


class StepClock:
    """A ``TrainerCallback`` that stamps the end of every optimizer step."""

    def __new__(cls):
        from transformers import TrainerCallback

        class _Clock(TrainerCallback):
            def __init__(self) -> None:
                self.stamps: list[float] = []
                self.device = "cpu"

            def on_step_end(self, args, state, control, **kwargs):
                _synchronize(self.device)
                self.stamps.append(time.perf_counter())

        return _Clock()


def _tokenizer():
    """A Phi-3-style tokenizer (pads with ``<unk>``, id 0); the data is pre-tokenized, so only padding uses it."""
    from phi3_lora_hub.model.loading import prepare_tokenizer
    from phi3_lora_hub.model.tiny import build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()
    prepare_tokenizer(tokenizer, for_training=True)
    return tokenizer


def run_contender(name: str, args: argparse.Namespace, size: ModelSize, dataset, device: str) -> dict[str, Any]:
    """Train ``args.warmup + args.steps`` steps and measure the last ``args.steps``."""
    import torch
    from trl import SFTConfig, SFTTrainer

    from phi3_lora_hub.config.lora import build_lora_config, resolve_lora
    from phi3_lora_hub.config.training import resolve_training
    from phi3_lora_hub.hardware import detect_hardware
    from phi3_lora_hub.training.trainer import Phi3SFTTrainer, trainer_arguments

    hardware = detect_hardware()
    steps = args.warmup + args.steps
    common = {"per_device_train_batch_size": args.batch_size, "max_steps": steps, "report_to": "none"}
    common |= {"train_sampling_strategy": "sequential", "save_strategy": "no", "use_cpu": device == "cpu"}
    clock = StepClock()
    clock.device = device
    with tempfile.TemporaryDirectory() as output_dir:
        if name == "trl":
            model = build_model(size, dtype=args.dtype, device=device)
            config = SFTConfig(output_dir=output_dir, max_length=args.seq_len, **common)
            trainer = SFTTrainer(
                model,
                args=config,
                train_dataset=dataset,
                processing_class=_tokenizer(),
                peft_config=lora_config(),
                callbacks=[clock],
            )
        else:
            training = resolve_training({**common, "gradient_accumulation_steps": 1}, hardware)
            training.pop("use_cpu", None)
            model = build_model(size, dtype=args.dtype, device=device, attn_implementation=hardware.attn_implementation)
            if name == "recipe-qlora":
                model = _quantized(model, output_dir, hardware)
            config = SFTConfig(output_dir=output_dir, use_cpu=device == "cpu", **trainer_arguments(training))
            trainer = Phi3SFTTrainer(
                model,
                args=config,
                train_dataset=dataset,
                processing_class=_tokenizer(),
                peft_config=build_lora_config(resolve_lora(None), base_model_name_or_path="bench"),
                callbacks=[clock],
            )
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        trainer.train()
        peak = torch.cuda.max_memory_allocated() if device == "cuda" else float("nan")
    lengths = [len(ids) for ids in dataset["input_ids"]][args.warmup * args.batch_size : steps * args.batch_size]
    seconds = clock.stamps[-1] - clock.stamps[args.warmup - 1]
    return {
        "contender": name,
        "tokens": sum(lengths),
        "seconds": seconds,
        "tokens_per_second": sum(lengths) / seconds,
        "model_flops_per_second": model_flops(size, lengths) / seconds,
        "peak_memory_gib": peak / 2**30,
        "gradient_checkpointing": bool(config.gradient_checkpointing),
        "attention": "per-sequence sdpa" if getattr(trainer, "_varlen_attention", False) else _attention(trainer),
    }


def _attention(trainer) -> str:
    model = trainer.model.get_base_model() if hasattr(trainer.model, "get_base_model") else trainer.model
    return str(model.config._attn_implementation)


def _quantized(model, output_dir: str, hardware):
    """The same random weights reloaded in 4-bit NF4 (as the recipe loads a QLoRA base), ready for k-bit training."""
    import torch
    from peft import prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM

    from phi3_lora_hub.model.quantization import bnb_4bit_config

    path = Path(output_dir) / "base"
    model.save_pretrained(path)
    del model
    quantized = AutoModelForCausalLM.from_pretrained(
        str(path),
        dtype=torch.bfloat16,
        quantization_config=bnb_4bit_config(hardware),
        device_map={"": torch.cuda.current_device()},
        attn_implementation=hardware.attn_implementation,
    )
    return prepare_model_for_kbit_training(quantized, use_gradient_checkpointing=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on CPU, same code path")
    parser.add_argument("--lengths", choices=("fixed", "mixed"), default="mixed")
    parser.add_argument("--seq-len", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--contenders", default="recipe,trl,recipe-qlora")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    import importlib.util

    import torch

    if not torch.cuda.is_available() and not args.dry_run:
        print(
            "bench_gpu: no CUDA GPU on this machine, nothing to measure. Run it on a CUDA machine, or pass "
            "--dry-run to exercise the same code path on CPU at tiny sizes."
        )
        return 0
    device = "cpu" if args.dry_run else "cuda"
    size = TINY if args.dry_run else PHI3_MINI
    if args.dry_run:
        args = argparse.Namespace(**{**vars(args), "seq_len": min(args.seq_len, 64), "warmup": 1, "steps": 2})
    args.dtype = "float32" if args.dry_run else "bfloat16"
    size = replace(size, max_position_embeddings=max(size.max_position_embeddings, args.seq_len))
    peak = matmul_peak(device, torch.float32 if args.dry_run else torch.bfloat16, 256 if args.dry_run else 8192)
    lengths = sequence_lengths((args.warmup + args.steps) * args.batch_size, args.seq_len, args.lengths)
    dataset = make_dataset(lengths, size.vocab_size)
    info = machine()
    print(
        f"# bench_gpu{' (dry run: tiny model on CPU)' if args.dry_run else ''}: {info['gpu'] or info['cpu']}; "
        f"matmul peak {peak / 1e12:.1f} TFLOP/s ({args.dtype}); lengths {args.lengths} up to {args.seq_len}, "
        f"batch {args.batch_size}, {args.steps} measured steps after {args.warmup}"
    )
    results, rows = [], []
    for name in args.contenders.split(","):
        if name == "recipe-qlora" and (device != "cuda" or importlib.util.find_spec("bitsandbytes") is None):
            results.append({"contender": name, "skipped": "needs CUDA and bitsandbytes"})
            continue
        results.append(run_contender(name, args, size, dataset, device))
    reference = next((r["tokens_per_second"] for r in results if r["contender"] == "trl"), None)
    for result in results:
        if "skipped" in result:
            rows.append([result["contender"], f"skipped: {result['skipped']}", "", "", "", "", ""])
            continue
        rows.append(
            [
                result["contender"],
                f"{result['tokens_per_second']:.0f}",
                f"{100 * result['model_flops_per_second'] / peak:.1f}%",
                f"{result['tokens_per_second'] / reference:.2f}x" if reference else "-",
                "-" if math.isnan(result["peak_memory_gib"]) else f"{result['peak_memory_gib']:.1f}",
                result["attention"],
                result["gradient_checkpointing"],
            ]
        )
    print(table(["contender", "tokens/s", "MFU", "vs trl", "peak GiB", "attention", "grad ckpt"], rows))
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "matmul_peak": peak, "runs": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
