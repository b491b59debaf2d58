"""Evaluation throughput: answer tokens per second of the generation helper vs a plain ``model.generate`` loop.

Both contenders answer the same prompts with the same model (random weights, Phi-3 architecture at
``--hidden``/``--layers`` with the real 32,064-entry vocabulary), greedy, ``--max-new-tokens`` each, stopping on
Phi-3's three stop tokens, in one process, interleaved (helper, plain, plain, helper, ...):

- ``helper``: ``phi3_lora_hub.generation.generate_replies`` as ``eval``/``compare`` call it: batches of
  ``--batch-size`` prompts of similar length (longest first), left padding, KV cache.
- ``plain``: what a user writes: one prompt at a time, unpadded, ``model.generate(ids, max_new_tokens=...,
  do_sample=False, eos_token_id=<stop ids>)`` (KV cache on, transformers' default).

Tokens/s = answer tokens (up to the first stop token) of all prompts / wall time. The run fails unless both give
exactly the same answers, token for token. Prompts: the conversations of ``--distribution`` from the real assets
(each up to its last assistant turn, at most ``--max-prompt-tokens``), or, without assets, the project's synthetic
chats with the tiny model's tokenizer. Run from the repository root::

    python benchmarks/bench_eval.py --assets ../shared/assets --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DEFAULT_ASSETS, ModelSize, build_model, conversations, interleaved, machine, median, table, timed

CONTENDERS = ("helper", "plain")


def _prompts_and_tokenizer(args: argparse.Namespace) -> tuple[list[list[dict[str, str]]], Any, str]:
    """The prompts (conversations ending with a user turn), the tokenizer, and where the prompts came from."""
    from phi3_lora_hub.data.sample import sample_conversations
    from phi3_lora_hub.generation import prompt_ids
    from phi3_lora_hub.model.loading import load_tokenizer
    from phi3_lora_hub.model.tiny import tiny_phi3_cache_dir

    assets = Path(args.assets) if args.assets else DEFAULT_ASSETS
    real = (assets / "phi3-mini-4k-instruct" / "tokenizer.json").is_file() and (assets / "data").is_dir()
    if real and not args.dry_run:
        tokenizer = load_tokenizer(str(assets / "phi3-mini-4k-instruct"), for_training=False)
        pool = conversations(assets, args.distribution, 4 * args.prompts, seed=args.seed)
        source = f"{args.distribution} (real assets)"
    else:
        tokenizer = load_tokenizer(str(tiny_phi3_cache_dir()), for_training=False)
        pool = [row["messages"] for row in sample_conversations(4 * args.prompts, seed=args.seed)]
        source = "synthetic chats (tiny tokenizer)"
    prompts = [_up_to_last_answer(messages) for messages in pool]
    prompts = [p for p in prompts if p]
    lengths = [len(ids) for ids in prompt_ids(tokenizer, prompts)]
    kept = [p for p, n in zip(prompts, lengths, strict=True) if n <= args.max_prompt_tokens][: args.prompts]
    return kept, tokenizer, source


def _up_to_last_answer(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=None)
    return messages[:last] if last else []


def plain_loop(model: Any, tokenizer: Any, prompts: list[list[dict[str, str]]], max_new_tokens: int) -> list[list[int]]:
    """One unpadded prompt at a time through ``model.generate``; each answer's tokens up to the first stop."""
    import torch

    from phi3_lora_hub import phi3_format
    from phi3_lora_hub.generation import prompt_ids
    from phi3_lora_hub.model.loading import stop_token_ids

    stops = stop_token_ids(tokenizer)
    answers = []
    for ids in prompt_ids(tokenizer, prompts):
        input_ids = torch.tensor([ids])
        with torch.no_grad():
            output = model.generate(
                input_ids,
                attention_mask=torch.ones_like(input_ids),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                eos_token_id=stops,
                pad_token_id=tokenizer.convert_tokens_to_ids(phi3_format.EOS),
            )
        row = output[0, len(ids) :].tolist()
        answers.append(next((row[:i] for i, token in enumerate(row) if token in stops), row))
    return answers


def helper_answers(model: Any, tokenizer: Any, prompts: list[list[dict[str, str]]], args: argparse.Namespace):
    """The helper's replies, greedy, as ``eval`` and ``compare`` generate them."""
    from phi3_lora_hub.decoding import chat_generation_config
    from phi3_lora_hub.generation import generate_replies

    config = chat_generation_config(max_new_tokens=args.max_new_tokens)
    return generate_replies(model, tokenizer, prompts, config, batch_size=args.batch_size)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    if args.dry_run:
        args.hidden, args.intermediate, args.layers, args.prompts, args.max_new_tokens = 64, 128, 2, 6, 8
        args.repeats, args.batch_size = 1, 4
    prompts, tokenizer, source = _prompts_and_tokenizer(args)
    vocab = 32064 if len(tokenizer) > 32000 else 64 * -(-len(tokenizer) // 64)
    size = ModelSize(args.hidden, args.intermediate, args.layers, max(1, args.hidden // 64), vocab)
    model = build_model(size, dtype=args.dtype).eval()
    params = sum(p.numel() for p in model.parameters())
    info = machine()
    print(
        f"# bench_eval: {info['cpu']}, {info['cores']} cores, torch.set_num_threads({args.threads}), load average "
        f"{' '.join(f'{x:.2f}' for x in info['load_average'])}; model {params / 1e6:.0f}M params ({args.dtype}), "
        f"{len(prompts)} prompts of {source}, {args.max_new_tokens} new tokens, batch {args.batch_size}",
        flush=True,
    )
    helper_answers(model, tokenizer, prompts[:2], args)  # warm-up, untimed
    runs: list[dict[str, Any]] = []
    answers: dict[str, Any] = {}
    for repeat, name in interleaved(CONTENDERS, args.repeats):
        if name == "helper":
            replies, seconds = timed(lambda: helper_answers(model, tokenizer, prompts, args))
            tokens = sum(r.new_tokens for r in replies)
            texts = [r.text for r in replies]
            counts = [r.new_tokens for r in replies]
        else:
            rows, seconds = timed(lambda: plain_loop(model, tokenizer, prompts, args.max_new_tokens))
            tokens = sum(map(len, rows))
            texts = [tokenizer.decode(row, skip_special_tokens=True).strip() for row in rows]
            counts = [len(row) for row in rows]
        answers.setdefault(name, (texts, counts))
        runs.append({"contender": name, "repeat": repeat, "seconds": seconds, "tokens": tokens})
        print(
            f"  {name} run {repeat}: {tokens} tokens in {seconds:.2f} s = {tokens / seconds:.1f} tokens/s", flush=True
        )
    same = answers["helper"] == answers["plain"]
    summary = {
        name: median([r["tokens"] / r["seconds"] for r in runs if r["contender"] == name]) for name in CONTENDERS
    }
    ratio = summary["helper"] / summary["plain"]
    print(
        table(
            ["contender", "tokens/s (median)", "runs (tokens/s)", "identical greedy answers"],
            [
                [
                    name,
                    f"{summary[name]:.1f}",
                    ", ".join(f"{r['tokens'] / r['seconds']:.1f}" for r in runs if r["contender"] == name),
                    "yes" if same else "NO",
                ]
                for name in CONTENDERS
            ],
        )
    )
    load_end = os.getloadavg()
    print(f"helper / plain = {ratio:.2f}x; load average at end {' '.join(f'{x:.2f}' for x in load_end)}")
    if args.json:
        report = {"machine": info, "args": vars(args), "runs": runs, "summary": summary, "ratio": ratio}
        report |= {"identical": same, "load_average_end": load_end, "parameters": params, "source": source}
        Path(args.json).write_text(json.dumps(report, indent=1))
    if not same:
        print("The helper's greedy answers differ from the plain loop's.", file=sys.stderr)
        return 1
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--assets", default=None, help="folder with phi3-mini-4k-instruct/ and data/")
    parser.add_argument("--distribution", default="mixed", help="short, medium, long or mixed (real assets)")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--max-prompt-tokens", type=int, default=512)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--intermediate", type=int, default=2816)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write every run and the summary to this file")
    parser.add_argument("--dry-run", action="store_true", help="tiny model, 6 prompts, 8 tokens: checks the code path")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())
