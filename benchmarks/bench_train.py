"""Training throughput: effective (non-padding) tokens per second and peak memory, the recipe vs TRL configured as
an expert would configure it.

Contenders, all on the same model (random weights, Phi-3 architecture at ``--hidden``/``--layers`` with the real
32,064-entry vocabulary), the same conversations, batch size, ``max_length``, optimizer and LoRA (r 16, alpha 32,
all linear layers), one epoch each, each in a fresh process, interleaved (A B C, B C A, ...):

- ``recipe``: ``Phi3LoraRecipe(...).build_trainer().train()`` with its defaults for this machine.
- ``trl-best``: ``SFTTrainer`` as a TRL expert sets it up for CPU and this loss: ``bf16=False`` (fp32),
  ``gradient_checkpointing=False``, ``assistant_only_loss=True`` (TRL swaps in its own Phi-3 training template, with
  ``{% generation %}`` markers, so the loss covers the assistant answers only, as the recipe's), batches of similar
  lengths (``train_sampling_strategy="group_by_length"``) padded to the longest.
- ``trl-packed``: as ``trl-best`` plus ``packing=True`` (best-fit-decreasing packing into ``max_length`` bins, which
  TRL runs padding-free: no attention mask, ``position_ids`` restarting at every conversation). With SDPA,
  transformers (5.x, ``masking_utils.find_packed_sequence_indices``) turns those restarts into a block-diagonal mask,
  so no conversation attends to another; the mask is dense over the whole flattened batch.
- ``trl-padfree``: as ``trl-best`` plus ``padding_free=True`` without packing (the batch flattened into one row, the
  same block-diagonal SDPA mask). TRL refuses ``max_length`` there, so this one runs with ``max_length=None``: rows
  longer than ``--max-length`` are not truncated (its token count says so).
- ablations (opt-in): ``trl`` (plain ``SFTTrainer`` defaults: ``bf16=True`` autocast, gradient checkpointing,
  loss on every token, random-order padded batches), ``trl-fp32`` (``trl`` with ``bf16=False,
  gradient_checkpointing=False``), ``trl-best-bf16`` (``trl-best`` under CPU bf16 autocast) and ``cookbook`` (the
  Phi-3 cookbook pattern: every example padded to ``max_length``, ``transformers.Trainer`` with ``bf16`` and
  gradient checkpointing, ``--cookbook-steps`` steps only).

Effective tokens/s = real tokens of the examples trained / wall time of ``trainer.train()``. Peak memory = highest
resident set size sampled during ``train()``. The summary line gives the recipe's ratio to the fastest ``trl*``
contender run, with both peaks. Run from the repository root::

    python benchmarks/bench_train.py --assets ../shared/assets --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    DISTRIBUTIONS,
    ModelSize,
    PeakMemory,
    assets_dir,
    build_model,
    conversations,
    interleaved,
    lora_config,
    machine,
    median,
    run_worker,
    table,
    timed,
)

CONTENDERS = ("recipe", "trl-best", "trl-packed", "trl-padfree")
ABLATIONS = ("trl", "trl-fp32", "trl-best-bf16", "cookbook")
OPTIMIZER = "adamw_torch"
# What a TRL expert changes on CPU for chat data: fp32 (the recipe's precision on CPU), no gradient checkpointing
# (the activations fit), loss on the assistant answers only.
_TRL_EXPERT: dict[str, Any] = {"bf16": False, "gradient_checkpointing": False, "assistant_only_loss": True}
TRL_SETTINGS: dict[str, dict[str, Any]] = {
    "trl": {},
    "trl-fp32": {"bf16": False, "gradient_checkpointing": False},
    "trl-best": {**_TRL_EXPERT, "train_sampling_strategy": "group_by_length"},
    "trl-packed": {**_TRL_EXPERT, "packing": True, "packing_strategy": "bfd"},
    "trl-padfree": {**_TRL_EXPERT, "padding_free": True, "max_length": None},
    "trl-best-bf16": {**_TRL_EXPERT, "bf16": True, "train_sampling_strategy": "group_by_length"},
}


def _model_dir(args: argparse.Namespace) -> Path:
    """The benchmark model saved once (random weights, seed 0) with the real tokenizer, so every worker loads it."""
    from transformers import AutoTokenizer

    size = ModelSize(hidden_size=args.hidden, intermediate_size=args.intermediate, num_hidden_layers=args.layers)
    directory = Path(tempfile.gettempdir()) / f"phi3-bench-model-{args.hidden}-{args.intermediate}-{args.layers}"
    if not (directory / "config.json").is_file():
        build_model(size).save_pretrained(directory)
        AutoTokenizer.from_pretrained(str(Path(args.assets) / "phi3-mini-4k-instruct")).save_pretrained(directory)
    return directory


def _load_model(model_dir: Path):
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32, attn_implementation="sdpa")


def _recipe(model_dir: Path, chats, args, output_dir: str):
    from phi3_lora_hub.recipe import Phi3LoraRecipe

    recipe = Phi3LoraRecipe(
        str(model_dir),
        [{"messages": chat} for chat in chats],
        output_dir=output_dir,
        training={
            "per_device_train_batch_size": args.batch_size,
            "gradient_accumulation_steps": 1,
            "max_steps": len(chats) // args.batch_size,
            "max_length": args.max_length,
            "optim": OPTIMIZER,
            "save_strategy": "no",
        },
    )
    trainer = recipe.build_trainer()
    return trainer, int(sum(trainer.train_dataset["length"]))


def _plain_trl(model_dir: Path, chats, args, output_dir: str, **overrides: Any):
    import datasets
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    settings = {"max_length": args.max_length, **overrides}
    config = SFTConfig(
        output_dir=output_dir,
        use_cpu=not _cuda(),
        per_device_train_batch_size=args.batch_size,
        num_train_epochs=1,
        optim=OPTIMIZER,
        report_to="none",
        save_strategy="no",
        **settings,
    )
    trainer = SFTTrainer(
        _load_model(model_dir),
        args=config,
        train_dataset=datasets.Dataset.from_list([{"messages": chat} for chat in chats]),
        processing_class=tokenizer,
        peft_config=lora_config(),
    )
    return trainer, int(sum(len(ids) for ids in trainer.train_dataset["input_ids"]))


def _cookbook(model_dir: Path, chats, args, output_dir: str):
    import datasets
    from peft import get_peft_model
    from transformers import AutoTokenizer, Trainer, TrainingArguments

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    tokenizer.pad_token, tokenizer.padding_side = tokenizer.unk_token, "right"  # as sample_finetune.py does
    chats = chats[: args.cookbook_steps * args.batch_size]
    texts = [tokenizer.apply_chat_template(chat, tokenize=False) for chat in chats]
    encoded = tokenizer(
        texts, padding="max_length", truncation=True, max_length=args.max_length, add_special_tokens=False
    )
    encoded["labels"] = [
        [token if keep else -100 for token, keep in zip(ids, mask, strict=True)]
        for ids, mask in zip(encoded["input_ids"], encoded["attention_mask"], strict=True)
    ]
    model = get_peft_model(_load_model(model_dir), lora_config())
    model.enable_input_require_grads()  # gradient checkpointing through frozen embeddings (transformers#42489)
    training_args = TrainingArguments(
        output_dir=output_dir,
        use_cpu=not _cuda(),
        per_device_train_batch_size=args.batch_size,
        max_steps=args.cookbook_steps,
        bf16=True,
        gradient_checkpointing=True,
        gradient_checkpointing_kwargs={"use_reentrant": False},
        optim=OPTIMIZER,
        train_sampling_strategy="sequential",
        report_to="none",
        save_strategy="no",
    )
    trainer = Trainer(model=model, args=training_args, train_dataset=datasets.Dataset.from_dict(dict(encoded)))
    return trainer, int(sum(map(sum, encoded["attention_mask"])))


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def worker(args: argparse.Namespace) -> dict[str, Any]:
    """Train one contender once on one distribution and report its throughput and memory."""
    import torch

    torch.set_num_threads(args.threads)
    os.environ.setdefault("PHI3_LORA_HUB_CACHE", tempfile.mkdtemp(prefix="phi3-bench-cache-"))
    model_dir = Path(args.model_dir)
    chats = conversations(Path(args.assets), args.distribution, args.examples, seed=args.seed)
    chats = chats[: len(chats) // args.batch_size * args.batch_size]
    with tempfile.TemporaryDirectory() as output_dir:
        if args.contender == "recipe":
            trainer, tokens = _recipe(model_dir, chats, args, output_dir)
        elif args.contender in TRL_SETTINGS:
            trainer, tokens = _plain_trl(model_dir, chats, args, output_dir, **TRL_SETTINGS[args.contender])
        else:
            trainer, tokens = _cookbook(model_dir, chats, args, output_dir)
        with PeakMemory() as memory:
            _, seconds = timed(trainer.train)
    return {
        "contender": args.contender,
        "distribution": args.distribution,
        "steps": trainer.state.global_step,
        "tokens": tokens,
        "seconds": seconds,
        "tokens_per_second": tokens / seconds,
        "peak_rss_mib": memory.peak / 2**20,
        "train_rss_mib": (memory.peak - memory.start) / 2**20,
        "threads": torch.get_num_threads(),
    }


def fastest_trl(entries: dict[str, dict[str, Any]]) -> str | None:
    """The ``trl*`` contender with the highest median effective tokens/s, or ``None`` when none ran."""
    trl = [name for name in entries if name.startswith("trl")]
    return max(trl, key=lambda name: entries[name]["tokens_per_second"]) if trl else None


def _report(entries: dict[str, dict[str, Any]]) -> str:
    """The table of one distribution, each rate as a ratio to the fastest TRL contender, and the recipe's verdict."""
    reference = fastest_trl(entries)
    best = entries[reference] if reference else None
    rows = [
        [
            name,
            entry["tokens"],
            f"{entry['seconds']:.1f}",
            f"{entry['tokens_per_second']:.0f}",
            f"{entry['tokens_per_second'] / best['tokens_per_second']:.2f}x" if best else "-",
            f"{entry['peak_rss_mib']:.0f}",
            f"{entry['train_rss_mib']:.0f}",
        ]
        for name, entry in entries.items()
    ]
    headers = ["contender", "real tokens", "median s", "eff. tokens/s", f"vs {reference or 'trl'}", "peak RSS MiB"]
    text = table([*headers, "RSS growth in train MiB"], rows)
    if best and "recipe" in entries:
        recipe = entries["recipe"]
        text += (
            f"\n\nrecipe vs the fastest TRL contender ({reference}): "
            f"{recipe['tokens_per_second'] / best['tokens_per_second']:.2f}x effective tokens/s, "
            f"peak RSS {recipe['peak_rss_mib']:.0f} vs {best['peak_rss_mib']:.0f} MiB"
        )
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--assets", default=None, help="folder with phi3-mini-4k-instruct/ and data/")
    parser.add_argument("--distributions", default="short,medium,long,mixed")
    parser.add_argument("--contenders", default=",".join(CONTENDERS), help=f"also: {', '.join(ABLATIONS)}")
    parser.add_argument("--examples", type=int, default=32, help="conversations per run (a multiple of the batch)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--cookbook-steps", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads in every worker")
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--intermediate", type=int, default=1408)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write every run and the summary to this file")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--contender", help=argparse.SUPPRESS)
    parser.add_argument("--distribution", help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.assets = str(assets_dir(args.assets))
    if args.worker:
        print(json.dumps(worker(args)))
        return

    contenders = args.contenders.split(",")
    model_dir = _model_dir(args)
    info = machine()
    print(
        f"# bench_train: {info['cpu']}, {info['cores']} cores, torch.set_num_threads({args.threads}), "
        f"load average {info['load_average'][0]:.2f}"
    )
    print(
        f"# model: Phi-3 hidden {args.hidden}, intermediate {args.intermediate}, {args.layers} layers, vocab 32064; "
        f"batch {args.batch_size}, max_length {args.max_length}, {args.examples} conversations, {args.repeats} repeats"
    )
    runs, summary = [], {}
    base = ["--worker", "--assets", args.assets, "--model-dir", str(model_dir)]
    shared = [
        f"--{key.replace('_', '-')}={getattr(args, key)}"
        for key in ("examples", "batch_size", "max_length", "cookbook_steps", "threads", "seed")
    ]
    for distribution in args.distributions.split(","):
        if distribution not in DISTRIBUTIONS:
            sys.exit(f"unknown distribution {distribution!r}; choose from {', '.join(DISTRIBUTIONS)}")
        results: dict[str, list[dict[str, Any]]] = {name: [] for name in contenders}
        for _, name in interleaved(contenders, args.repeats):
            argv_ = [__file__, *base, *shared, "--contender", name, "--distribution", distribution]
            result = run_worker(argv_)
            results[name].append(result)
            runs.append(result)
            print(
                f"# run {len(runs)}: {name} {result['tokens_per_second']:.1f} tokens/s, {result['seconds']:.1f} s, "
                f"peak RSS {result['peak_rss_mib']:.0f} MiB, load average {os.getloadavg()[0]:.2f}",
                flush=True,
            )
        for name in contenders:
            summary.setdefault(distribution, {})[name] = {
                "tokens_per_second": median([r["tokens_per_second"] for r in results[name]]),
                "peak_rss_mib": median([r["peak_rss_mib"] for r in results[name]]),
                "train_rss_mib": median([r["train_rss_mib"] for r in results[name]]),
                "tokens": results[name][0]["tokens"],
                "seconds": median([r["seconds"] for r in results[name]]),
            }
        print(f"\n## {distribution} ({', '.join(DISTRIBUTIONS[distribution])})\n")
        print(_report(summary[distribution]))
    info["load_average_end"] = os.getloadavg()
    print(f"\n# load average at the end: {info['load_average_end'][0]:.2f}")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"machine": info, "args": vars(args), "summary": summary, "runs": runs}, indent=2)
        )


if __name__ == "__main__":
    main()
