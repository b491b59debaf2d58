"""GPU training throughput: the full-size Phi-3-mini architecture (random weights, bf16, sequences up to 2048
tokens), LoRA r 16 on all linear layers: tokens/s, model FLOPs utilisation and peak memory of the recipe against
the best TRL configuration a user could pick, plain TRL defaults, and one QLoRA run of the recipe.

Contenders, in this order (each trains on the same rows, for ``--warmup`` untimed optimizer steps then
``--measured-steps`` timed ones, or one epoch where that ends first):

- **trl-defaults**: ``SFTTrainer(model, args=SFTConfig(output_dir, max_length=2048), peft_config=...)``.
- **recipe**: ``Phi3SFTTrainer`` with the recipe's resolved defaults for this GPU (``resolve_training``): bf16,
  padding-free batches (one SDPA call per layer over the packed row on CUDA), chunked loss head on the trained
  tokens only, Liger kernels when installed, the global batch in the largest micro-batches the GPU holds,
  activation checkpointing only where the activations would not fit.
- **trl-grouped** and **trl-padding-free**: ``SFTTrainer`` as a TRL expert configures it: bf16, no gradient
  checkpointing, ``use_liger_kernel=True`` when Liger imports, FlashAttention 2 when ``flash_attn`` is installed
  (SDPA otherwise), the recipe's global batch of 16 in micro-batches as large as fit; padded rows grouped by length,
  or padding-free rows (exact with SDPA too: transformers masks the packed sequences apart). The recipe's ratio is
  to the faster of the two.
- **recipe-qlora**: the recipe with 4-bit NF4 base weights (needs ``bitsandbytes``), a few steps only.

Data: pre-tokenized random sequences; ``--lengths fixed`` makes every sequence ``--seq-len`` long, ``mixed`` draws
lengths from a log-normal (median seq-len / 4, clipped to [32, seq-len], seed 0), the shape of real chat data. The
first 30% of each sequence is prompt (label -100). Tokens are the non-padding input tokens the Trainer counts
(``include_num_input_tokens_seen="non_padding"``).

MFU = model FLOPs per second / the bf16 matmul peak measured on the same GPU (an 8192^3 matmul). Model FLOPs per
token: forward ``2 N`` (N = parameters in the linear layers and the LM head), backward ``2 N`` (input gradients
only: the base is frozen; LoRA's own FLOPs are negligible), plus causal attention ``3 x 4 d L`` per layer averaged
over the rows; recomputation and padding are not model work.

The run is made for one shot on a lent GPU: every contender runs in ``try``; a failure is a row of the table and the
others still run; the JSON report is rewritten after each contender; no contender starts once ``--budget-s`` would
be overrun. Without a CUDA GPU the script says so and exits 0; ``--dry-run`` runs the same code path on CPU at tiny
sizes::

    python benchmarks/bench_gpu.py --json bench_gpu.json   # on a CUDA machine (~4-6 min on an H200)
    python benchmarks/bench_gpu.py --dry-run               # anywhere: tiny model, CPU
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import math
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PHI3_MINI, ModelSize, build_model, lora_config, machine, table

TINY = ModelSize(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, vocab_size=1152)
# Plain defaults first: Liger patches transformers' Phi-3 classes for the whole process (liger_kernel's
# apply_liger_kernel_to_phi3 replaces modeling_phi3.Phi3MLP and Phi3RMSNorm), so every later model gets its kernels.
CONTENDERS = ("trl-defaults", "recipe", "trl-grouped", "trl-padding-free", "recipe-qlora")
# (per-device batch, accumulation) of the best-configured TRL contenders: the recipe's global batch of 16 rows, in the
# largest micro-batches that fit without checkpointing (8 padded rows of 2048 tokens would not: ~16k tokens x ~7 MiB).
BEST_TRL = {"trl-padding-free": (8, 2), "trl-grouped": (4, 4)}
START = time.perf_counter()


def log(message: str) -> None:
    """A progress line with the wall-clock time and the seconds since the script started."""
    print(f"[{time.strftime('%H:%M:%S')} +{time.perf_counter() - START:5.0f}s] {message}", flush=True)


def matmul_peak(device: str, dtype, size: int, repeats: int = 50) -> float:
    """Measured dense matmul throughput (FLOP/s) of ``size^3`` products in ``dtype`` on ``device`` (random data)."""
    import torch

    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(10):  # the clocks ramp up, cuBLAS picks its kernel
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


def flops_per_token(size: ModelSize, lengths: list[int]) -> float:
    """Model FLOPs of one LoRA training pass per token, attention averaged over ``lengths`` (module docstring)."""
    d, layers = size.hidden_size, size.num_hidden_layers
    per_layer = d * 3 * d + d * d + d * 2 * size.intermediate_size + size.intermediate_size * d
    linear = layers * per_layer + d * size.vocab_size
    attention = sum(layers * 3 * 4 * d * (length + 1) / 2 * length for length in lengths)
    return 4 * linear + attention / sum(lengths)


def step_clock(device: str):
    """A ``TrainerCallback`` stamping, at the end of every optimizer step, the time and the tokens seen so far."""
    from transformers import TrainerCallback

    class StepClock(TrainerCallback):
        def __init__(self) -> None:
            self.stamps: list[tuple[float, int]] = []

        def on_step_end(self, args, state, control, **kwargs):
            _synchronize(device)
            self.stamps.append((time.perf_counter(), state.num_input_tokens_seen))

    return StepClock()


def _tokenizer():
    """A Phi-3-style tokenizer (pads with ``<unk>``, id 0); the data is pre-tokenized, so only padding uses it."""
    from phi3_lora_hub.model.loading import prepare_tokenizer
    from phi3_lora_hub.model.tiny import build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()
    prepare_tokenizer(tokenizer, for_training=True)
    return tokenizer


def _attention_requested() -> str:
    """FlashAttention 2 where ``flash_attn`` is installed (and there is a GPU), else SDPA: the best a user can pick."""
    from phi3_lora_hub.hardware import detect_hardware

    return detect_hardware().attn_implementation


def _plumbing(args: argparse.Namespace, device: str) -> dict[str, Any]:
    """The SFTConfig keys every contender shares: measurement only, no speed setting."""
    return {
        "num_train_epochs": 1,
        "max_steps": args.max_steps,
        "report_to": "none",
        "save_strategy": "no",
        "logging_steps": 10_000,
        "use_cpu": device == "cpu",
        "include_num_input_tokens_seen": "non_padding",
        "dataloader_num_workers": 0,
        "disable_tqdm": True,
    }


def build_trainer(name: str, args: argparse.Namespace, size: ModelSize, dataset, device: str, workdir: str):
    """The trainer of contender ``name``, and the attention and Liger kernels it runs with."""
    from trl import SFTConfig, SFTTrainer

    from phi3_lora_hub.config.lora import build_lora_config, resolve_lora
    from phi3_lora_hub.config.training import resolve_training
    from phi3_lora_hub.hardware import detect_hardware
    from phi3_lora_hub.training.trainer import Phi3SFTTrainer, liger_available, trainer_arguments

    plumbing = _plumbing(args, device)
    attention = _attention_requested()
    if name.startswith("recipe"):
        hardware = detect_hardware()
        # the recipe decides the device itself; everything else it gets is measurement plumbing and the data's length
        user = {key: value for key, value in plumbing.items() if key != "use_cpu"} | {"max_length": args.seq_len}
        if name == "recipe-qlora":  # a check that QLoRA trains, and its speed: a few steps
            user["max_steps"] = min(args.max_steps, args.warmup + 3) if args.max_steps > 0 else args.warmup + 3
        training = resolve_training(user, hardware)
        model = build_model(size, dtype=args.dtype, device=device, attn_implementation=attention)
        if name == "recipe-qlora":
            model = _quantized(model, workdir, hardware, bool(training["activation_checkpointing"]))
        config = SFTConfig(output_dir=workdir, **trainer_arguments(training))
        trainer = Phi3SFTTrainer(
            model,
            args=config,
            train_dataset=dataset,
            processing_class=_tokenizer(),
            peft_config=build_lora_config(resolve_lora(None), base_model_name_or_path="bench"),
        )
        attention = "per-sequence sdpa" if trainer.varlen_attention else attention
        return trainer, {"attention": attention, "liger": liger_available()}
    model = build_model(size, dtype=args.dtype, device=device, attn_implementation=attention)
    if name == "trl-defaults":
        config = SFTConfig(output_dir=workdir, max_length=args.seq_len, **plumbing)
    else:
        expert = {
            "per_device_train_batch_size": BEST_TRL[name][0],
            "gradient_accumulation_steps": BEST_TRL[name][1],
            "gradient_checkpointing": False,
            "bf16": device == "cuda",
            "use_liger_kernel": device == "cuda" and importlib.util.find_spec("liger_kernel") is not None,
            "optim": "adamw_torch_fused" if device == "cuda" else "adamw_torch",
        }
        if name == "trl-padding-free":  # TRL refuses a max_length it would not enforce; the rows are within it
            expert |= {"padding_free": True, "max_length": None}
        else:
            expert |= {"max_length": args.seq_len, "train_sampling_strategy": "group_by_length"}
        config = SFTConfig(output_dir=workdir, **plumbing, **expert)
    trainer = SFTTrainer(
        model, args=config, train_dataset=dataset, processing_class=_tokenizer(), peft_config=lora_config()
    )
    # transformers has no public getter for the attention a loaded model runs (config._attn_implementation is
    # private): report the one requested, which from_config either honours or refuses.
    return trainer, {"attention": attention, "liger": bool(config.use_liger_kernel)}


def _quantized(model, workdir: str, hardware, checkpointing: bool):
    """The same random weights reloaded in 4-bit NF4 (as the recipe loads a QLoRA base), ready for k-bit training."""
    import torch
    from peft import prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM

    from phi3_lora_hub.model.loading import hub_kernels_arguments
    from phi3_lora_hub.model.quantization import bnb_4bit_config

    path = Path(workdir) / "base"
    model.save_pretrained(path)
    del model
    quantized = AutoModelForCausalLM.from_pretrained(
        str(path),
        dtype=torch.bfloat16,
        quantization_config=bnb_4bit_config(hardware),
        device_map={"": torch.cuda.current_device()},
        attn_implementation=hardware.attn_implementation,
        **hub_kernels_arguments(),
    )
    return prepare_model_for_kbit_training(quantized, use_gradient_checkpointing=checkpointing)


def run_contender(name: str, args: argparse.Namespace, size: ModelSize, dataset, device: str) -> dict[str, Any]:
    """Train contender ``name`` on ``dataset`` and measure every optimizer step after the first ``args.warmup``."""
    import torch

    clock = step_clock(device)
    with tempfile.TemporaryDirectory() as workdir:
        trainer, facts = build_trainer(name, args, size, dataset, device, workdir)
        trainer.add_callback(clock)
        config = trainer.args
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        try:
            trainer.train()
        finally:
            trainer.accelerator.free_memory()
            del trainer
            gc.collect()
    if len(clock.stamps) <= args.warmup:
        raise RuntimeError(f"only {len(clock.stamps)} optimizer steps ran: add rows (--rows) or lower --warmup")
    (start, seen_start), (end, seen_end) = clock.stamps[args.warmup - 1], clock.stamps[-1]
    tokens = seen_end - seen_start
    return {
        "contender": name,
        "tokens": tokens,
        "seconds": end - start,
        "steps": len(clock.stamps) - args.warmup,
        "tokens_per_second": tokens / (end - start),
        "model_flops_per_second": tokens * args.flops_per_token / (end - start),
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else float("nan"),
        "batch": f"{config.per_device_train_batch_size}x{config.gradient_accumulation_steps}",
        "gradient_checkpointing": bool(config.gradient_checkpointing),
        **facts,
    }


def _release(device: str) -> None:
    import torch

    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


def skip_reason(name: str, device: str, remaining: float, estimate: float) -> str | None:
    """Why contender ``name`` cannot run now (no GPU or library for QLoRA, or too little time left), else None."""
    if name == "recipe-qlora" and device != "cuda":
        return "QLoRA needs a CUDA GPU"
    if name == "recipe-qlora" and importlib.util.find_spec("bitsandbytes") is None:
        return "bitsandbytes is not installed (pip install bitsandbytes)"
    if remaining < estimate:
        return f"time budget: {remaining:.0f} s left, the contender needs ~{estimate:.0f} s"
    return None


def report_rows(results: list[dict[str, Any]], peak: float) -> list[list[Any]]:
    """Table rows; the ratio column is to the fastest best-configured TRL contender that ran."""
    best = max((r["tokens_per_second"] for r in results if r["contender"] in BEST_TRL and "tokens" in r), default=0)
    rows = []
    for result in results:
        if "tokens" not in result:
            reason = result.get("skipped") or result.get("error", "")
            rows.append([result["contender"], f"{'skipped' if 'skipped' in result else 'failed'}: {reason}"])
            rows[-1] += [""] * 7
            continue
        rows.append(
            [
                result["contender"],
                f"{result['tokens_per_second']:.0f}",
                f"{100 * result['model_flops_per_second'] / peak:.1f}%",
                f"{result['tokens_per_second'] / best:.2f}x" if best else "-",
                "-" if math.isnan(result["peak_memory_gib"]) else f"{result['peak_memory_gib']:.1f}",
                result["batch"],
                result["attention"],
                result["liger"],
                result["gradient_checkpointing"],
            ]
        )
    return rows


def run_all(
    names: list[str], args: argparse.Namespace, run: Callable[[str], dict[str, Any]], save: Callable[[list], None]
) -> list[dict[str, Any]]:
    """Run each contender in turn within ``args.budget_s`` (QLoRA counts double: it reloads the base), saving the
    results after each; a failing contender becomes an ``error`` row."""
    results: list[dict[str, Any]] = []
    longest = args.first_estimate_s
    for name in names:
        remaining = args.budget_s - (time.perf_counter() - START)
        reason = skip_reason(name, args.device, remaining, longest * (2 if name == "recipe-qlora" else 1))
        began = time.perf_counter()
        if reason:
            log(f"{name}: skipped ({reason})")
            results.append({"contender": name, "skipped": reason})
        else:
            log(f"{name}: start")
            try:
                results.append(run(name))
                log(f"{name}: {results[-1]['tokens_per_second']:.0f} tokens/s over {results[-1]['steps']} steps")
            except Exception as error:  # a failed contender is a result; the others still run
                traceback.print_exc()
                results.append({"contender": name, "error": f"{type(error).__name__}: {str(error)[:300]}"})
                log(f"{name}: failed ({results[-1]['error']})")
            finally:
                _release(args.device)
            longest = max(longest, time.perf_counter() - began)
        save(results)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on CPU, same code path")
    parser.add_argument("--lengths", choices=("fixed", "mixed"), default="mixed")
    parser.add_argument("--seq-len", type=int, default=2048)
    parser.add_argument("--rows", type=int, default=512, help="rows each contender trains on (one epoch at most)")
    parser.add_argument("--warmup", type=int, default=2, help="optimizer steps left out of the timing")
    parser.add_argument(
        "--max-steps",
        type=int,
        default=-1,
        help="stop each contender after this many steps (default: --warmup + --measured-steps)",
    )
    parser.add_argument(
        "--measured-steps",
        type=int,
        default=30,
        help="timed optimizer steps per contender; the global batch of 16 rows takes 512 rows for 32 steps, TRL's "
        "defaults (8 rows a step) stop halfway through them",
    )
    parser.add_argument("--contenders", default=",".join(CONTENDERS))
    parser.add_argument("--budget-s", type=float, default=420, help="start no contender past this many seconds")
    parser.add_argument("--first-estimate-s", type=float, default=45, help="assumed duration before one has run")
    parser.add_argument("--json", default=None, help="write the results here (rewritten after each contender)")
    args = parser.parse_args(argv)

    import torch

    if not torch.cuda.is_available() and not args.dry_run:
        print(
            "bench_gpu: no CUDA GPU on this machine, nothing to measure. Run it on a CUDA machine, or pass "
            "--dry-run to exercise the same code path on CPU at tiny sizes."
        )
        return 0
    args.device = "cpu" if args.dry_run else "cuda"
    size = TINY if args.dry_run else PHI3_MINI
    if args.dry_run:
        args.seq_len, args.rows, args.warmup = min(args.seq_len, 64), min(args.rows, 48), 1
        args.max_steps = 3 if args.max_steps < 0 else args.max_steps
    elif args.max_steps < 0:
        args.max_steps = args.warmup + args.measured_steps
    args.dtype = "float32" if args.dry_run else "bfloat16"
    size = replace(size, max_position_embeddings=max(size.max_position_embeddings, args.seq_len))
    log("measuring the matmul peak")
    peak = matmul_peak(args.device, torch.float32 if args.dry_run else torch.bfloat16, 256 if args.dry_run else 8192)
    lengths = sequence_lengths(args.rows, args.seq_len, args.lengths)
    args.flops_per_token = flops_per_token(size, lengths)
    dataset = make_dataset(lengths, size.vocab_size)
    info = machine()
    log(
        f"bench_gpu{' (dry run: tiny model on CPU)' if args.dry_run else ''}: {info['gpu'] or info['cpu']}; "
        f"matmul peak {peak / 1e12:.1f} TFLOP/s ({args.dtype}); {args.rows} rows, lengths {args.lengths} up to "
        f"{args.seq_len} ({sum(lengths)} tokens); {args.warmup} warm-up steps; budget {args.budget_s:.0f} s"
    )

    def save(results: list[dict[str, Any]]) -> None:
        if args.json:
            report = {"machine": info, "matmul_peak": peak, "arguments": vars(args), "runs": results}
            Path(args.json).write_text(json.dumps(report, indent=2, default=str))

    results = run_all(
        args.contenders.split(","), args, lambda name: run_contender(name, args, size, dataset, args.device), save
    )
    headers = ["contender", "tokens/s", "MFU", "vs best TRL", "peak GiB", "batch", "attention", "liger", "grad ckpt"]
    print(table(headers, report_rows(results, peak)))
    log("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
