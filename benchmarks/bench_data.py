"""Data preparation speed: rows per second to read, convert, validate and tokenize 100,000 conversations, cold and
cached (a second run of the same config).

The input is a ShareGPT-format JSONL file of ``--rows`` conversations drawn (with replacement) from all the real
public chat datasets in ``../shared/assets/data`` (the ``mixed`` distribution of ``bench_train``). Every user and
assistant message gets a row number appended, so no two rows are alike and nothing is served from a duplicate;
system prompts repeat as they do in the source data. Tokens are counted with the real Phi-3 tokenizer.

Cold = ``prepare_dataset(read_rows(file, lazy=True), tokenizer, options)`` with an empty cache (hash and parse the
file, detect the format, convert, validate, tokenize with assistant-only labels, truncate, write the cache); cached =
the same call again. Cold and cached runs alternate ``--repeats`` times, each cold run in a new cache folder. Each
repeat also times the tokenizer alone (``encode_batch_fast`` on the rendered texts, no pipeline around it): the
ceiling for any pipeline built on it; cold preparation is reported as a ratio to it. ``--threads N`` gives the
tokenizer's Rust thread pool N threads (``RAYON_NUM_THREADS``, for the ceiling and the pipeline alike; default: one
per core), to see how both scale with cores. Run from the repository root::

    python benchmarks/bench_data.py --assets ../shared/assets
    python benchmarks/bench_data.py --assets ../shared/assets --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import assets_dir, conversations, machine, median, table, timed

_FROM = {"system": "system", "user": "human", "assistant": "gpt"}


def write_rows(assets: Path, rows: int, seed: int = 0) -> Path:
    """The benchmark's input file (written once per size and seed)."""
    path = Path(tempfile.gettempdir()) / f"phi3-bench-data-{rows}-{seed}.jsonl"
    if path.is_file():
        return path
    pool = conversations(assets, "mixed", 10**9, seed=seed)
    rng = random.Random(seed)
    staging = path.with_suffix(f".tmp{os.getpid()}")
    with staging.open("w", encoding="utf-8") as handle:
        for index in range(rows):
            turns = [
                {
                    "from": _FROM[message["role"]],
                    "value": message["content"] if message["role"] == "system" else f"{message['content']} (#{index})",
                }
                for message in rng.choice(pool)
            ]
            handle.write(json.dumps({"conversations": turns}, ensure_ascii=False) + "\n")
    staging.rename(path)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--assets", default=None, help="folder with phi3-mini-4k-instruct/ and data/")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-length", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=None, help="RAYON_NUM_THREADS (default: one per core)")
    parser.add_argument("--json", default=None, help="also write the runs and the summary to this file")
    args = parser.parse_args(argv)
    if args.threads:
        os.environ["RAYON_NUM_THREADS"] = str(args.threads)  # read when the tokenizer first runs in parallel
    assets = assets_dir(args.assets)

    from phi3_lora_hub.data.prepare import DataOptions, prepare_dataset
    from phi3_lora_hub.data.sources import read_rows
    from phi3_lora_hub.model.loading import load_tokenizer

    path = write_rows(assets, args.rows)
    tokenizer = load_tokenizer(str(assets / "phi3-mini-4k-instruct"))
    options = DataOptions(max_length=args.max_length)
    info = machine()
    print(
        f"# bench_data: {info['cpu']}, {info['cores']} cores, load average {info['load_average'][0]:.2f}, "
        f"RAYON_NUM_THREADS={os.environ.get('RAYON_NUM_THREADS', 'unset (all cores)')}"
    )
    print(
        f"# input: {path} ({path.stat().st_size / 2**20:.0f} MiB, {args.rows:,} ShareGPT rows), "
        f"max_length {args.max_length}"
    )

    from phi3_lora_hub import phi3_format
    from phi3_lora_hub.data.prepare import convert_rows

    # The ceiling: the tokenizer alone (Rust, all cores) on the already rendered texts, no pipeline around it.
    texts = [phi3_format.render(chat).text for chat in convert_rows(read_rows(path), options).conversations]
    backend = tokenizer.backend_tokenizer
    runs = []
    with tempfile.TemporaryDirectory(prefix="phi3-bench-data-cache-") as cache_parent:
        for repeat in range(args.repeats):
            _, seconds = timed(lambda: backend.encode_batch_fast(texts, add_special_tokens=False))
            runs.append({"kind": "tokenizer only", "seconds": seconds})
            os.environ["PHI3_LORA_HUB_CACHE"] = str(Path(cache_parent) / str(repeat))
            for kind in ("cold", "cached"):
                (_dataset, report), seconds = timed(
                    lambda: prepare_dataset(read_rows(path, lazy=True), tokenizer, options)
                )
                assert report.cached == (kind == "cached")
                runs.append({"kind": kind, "seconds": seconds, "rows": report.rows_read, "tokens": report.tokens})
    ceiling = median([run["seconds"] for run in runs if run["kind"] == "tokenizer only"])
    cold = median([run["seconds"] for run in runs if run["kind"] == "cold"])
    cached = median([run["seconds"] for run in runs if run["kind"] == "cached"])
    tokens = runs[1]["tokens"]

    def row(name: str, seconds: float) -> list[str]:
        return [name, f"{seconds:.2f}", f"{args.rows / seconds:,.0f}", f"{tokens / seconds / 1e6:.2f}"]

    rows = [
        [*row("tokenizer only (ceiling)", ceiling), "1.00x", "-"],
        [*row("cold", cold), f"{ceiling / cold:.2f}x", "1.0x"],
        ["cached", f"{cached:.3f}", f"{args.rows / cached:,.0f}", "-", "-", f"{cold / cached:.0f}x"],
    ]
    print(f"\n{args.rows:,} rows, {tokens:,} tokens ({tokens / args.rows:.0f} per row), median of {args.repeats}\n")
    print(table(["run", "median s", "rows/s", "Mtokens/s", "vs ceiling", "speed-up"], rows))
    raw = ", ".join(f"{run['kind']} {run['seconds']:.2f}" for run in runs)
    print(f"\ncold / ceiling: {ceiling / cold:.2f}x; cached: {cold / cached:.0f}x cold. Runs (s, in order): {raw}")
    print(f"\n# load average at the end: {os.getloadavg()[0]:.2f}")
    if args.json:
        summary = {"cold_seconds": cold, "cached_seconds": cached, "tokenizer_only_seconds": ceiling}
        summary |= {"cold_vs_ceiling": ceiling / cold, "threads": os.environ.get("RAYON_NUM_THREADS")}
        summary |= {"rows": args.rows, "tokens": tokens}
        Path(args.json).write_text(json.dumps({"machine": info, "summary": summary, "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
