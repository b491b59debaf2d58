"""The Space's memory and switching cost: one base model with 4 LoRA adapters loaded vs the base alone, and how fast a
pane switches to another adapter compared with loading the base model again.

The base is a Phi-3-architecture model with random weights, large enough that adapters are small next to it as they
are next to Phi-3-mini (default: hidden 1536, 12 layers, intermediate 4096, Phi-3's 32064-token vocabulary when the
real tokenizer is in ``../shared/assets``: about 440M parameters). Adapters: LoRA r 16 on all four Phi-3 projection
layers, random (so they differ), pushed to an in-process local Hub and fetched by the Space's own code.

- **memory**: resident set size (RSS) of a fresh process that loads the base (the Space's ``load_base``, its
  default precision: bfloat16 on CPU) and answers one prompt, vs one that also fetches and loads the 4 adapters and
  answers with each in the pane pairs (base, a1), (a2, a3), (a4, base). Each kind runs ``--repeats`` times,
  alternating; medians.
- **switch**: a pane switching to an adapter that is not in memory (fetch at a pinned commit from the local cache,
  checks, then either ``load_adapter`` into a free slot, or, with two slots and four adapters in turn, a copy of
  the weights into the oldest slot in place), and to one that is (``use``: the LRU bookkeeping); vs ``load_base``
  of the same base from disk (page cache warm, imports done), alone and followed by reading every weight once
  (bfloat16 safetensors are memory-mapped: ``load_base`` alone does not read them, the first answer does).
  Medians.

Run from the repository root::

    python benchmarks/bench_space.py --threads 2
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, free_port, machine, median, rss_bytes, run_worker

WORK = Path(tempfile.gettempdir()) / "phi3-bench-space"
TOKEN = "hf_benchtoken000000000000000000000000"


def _environment(port: int, threads: int) -> dict[str, str]:
    return {
        "HF_ENDPOINT": f"http://127.0.0.1:{port}",
        "HF_HOME": str(WORK / "hf_home"),
        "HF_TOKEN": TOKEN,
        "HF_HUB_OFFLINE": "0",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": str(threads),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")])),
    }


def build_base(args: argparse.Namespace) -> Path:
    """The random-weight base (built once per shape), with the real Phi-3 tokenizer when it is available."""
    from phi3_lora_hub.model.tiny import TinyPhi3Config, build_tiny_phi3

    tokenizer = Path(args.assets) / "phi3-mini-4k-instruct"
    tokenizer = tokenizer if (tokenizer / "tokenizer.json").is_file() else None
    shape = (
        f"h{args.hidden}-l{args.layers}-i{args.intermediate}-{'real' if tokenizer else 'tiny'}-tok-{args.base_dtype}"
    )
    folder = WORK / f"base-{shape}"
    if not (folder / "tiny_phi3.json").is_file():
        config = TinyPhi3Config(
            hidden_size=args.hidden,
            intermediate_size=args.intermediate,
            num_hidden_layers=args.layers,
            num_attention_heads=args.hidden // 128,
            pretrain_steps=0,
        )
        build_tiny_phi3(folder, config=config, tokenizer_path=tokenizer)
        if args.base_dtype != "float32":  # saved as the real Phi-3 ships: bfloat16 safetensors
            import torch
            from transformers import AutoModelForCausalLM

            model = AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, args.base_dtype))
            model.save_pretrained(folder)
            del model
    return folder


def build_adapters(base: Path, count: int, rank: int) -> list[Path]:
    """``count`` random LoRA adapters for ``base`` (r ``rank`` on qkv_proj, o_proj, gate_up_proj, down_proj)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    folders = [WORK / f"{base.name}-adapter-r{rank}-{index}" for index in range(count)]
    for index, folder in enumerate(folders):
        if (folder / "adapter_model.safetensors").is_file():
            continue
        torch.manual_seed(100 + index)
        model = AutoModelForCausalLM.from_pretrained(base)
        config = LoraConfig(
            r=rank,
            lora_alpha=2 * rank,
            target_modules=["qkv_proj", "o_proj", "gate_up_proj", "down_proj"],
            init_lora_weights=False,
            task_type="CAUSAL_LM",
        )
        get_peft_model(model, config).save_pretrained(folder)
        del model
        gc.collect()
    return folders


def push_adapters(folders: list[Path]) -> list[tuple[str, str]]:
    """Push each adapter to the local Hub; returns ``(repo_id, commit)`` pairs."""
    from huggingface_hub import HfApi

    api = HfApi()
    pushed = []
    for index, folder in enumerate(folders):
        repo_id = f"bench/space-adapter-{index}"
        api.create_repo(repo_id, exist_ok=True)
        commit = api.upload_folder(folder_path=str(folder), repo_id=repo_id, allow_patterns=["adapter_*"]).oid
        pushed.append((repo_id, commit))
    return pushed


def _serve(base_dir: str, capacity: int):
    from phi3_lora_hub.space.base_model import load_base
    from phi3_lora_hub.space.hub_adapters import AdapterSource
    from phi3_lora_hub.space.registry import AdapterRegistry
    from phi3_lora_hub.space.repo_policy import AllowList

    base = load_base(base_dir)
    # As the Space does (its data folder): adapters once in a slot are kept converted; a fresh folder per registry,
    # so the first copy of each adapter into a slot converts it, as a Space's first would.
    registry = AdapterRegistry(base.model, capacity=capacity, cache_dir=tempfile.mkdtemp(dir=WORK, prefix="cache-"))
    source = AdapterSource(base.signature, AllowList.of(["bench/*"]), token=TOKEN)
    return base, registry, source


def _answer(base, registry, pair) -> None:
    from phi3_lora_hub.decoding import chat_generation_config
    from phi3_lora_hub.space.streaming import SideRequest, stream_pair

    messages = [{"role": "user", "content": "What currency is used in Peru?"}]
    sides = [SideRequest(messages, adapter) for adapter in pair]
    for _ in stream_pair(base, registry, sides, chat_generation_config(max_new_tokens=8)):
        pass


def worker_memory(job: dict) -> dict:
    """RSS after loading the base (and the adapters) and answering; run in a fresh process."""
    base, registry, source = _serve(job["base"], capacity=max(2, len(job["adapters"])))
    adapters = [source.fetch(repo, commit) for repo, commit in job["adapters"]]
    before_adapters = rss_bytes() / 2**20
    for adapter in adapters:
        registry.load(adapter)
    pairs = [(None, None)]
    if adapters:
        padded = [None, *adapters, None]
        pairs = [tuple(padded[i : i + 2]) for i in range(0, len(padded), 2)]
    for pair in pairs:
        _answer(base, registry, pair)
    gc.collect()
    return {"rss_mb": rss_bytes() / 2**20, "rss_before_adapters_mb": before_adapters, "loaded": len(registry.loaded())}


def worker_switch(job: dict) -> dict:
    """Seconds to load the base, and to switch a pane to an adapter: into a free slot, into an occupied slot
    (copied in place), to one already in memory, and by branch name (one Hub call)."""
    import torch

    from phi3_lora_hub.space.base_model import load_base

    load_base(job["base"])  # warm-up, untimed: imports done and page cache warm, as in a running Space
    base_loads, base_reads = [], []
    for _ in range(job["repeats"]):
        gc.collect()
        started = time.perf_counter()
        loaded = load_base(job["base"])
        base_loads.append(time.perf_counter() - started)
        with torch.no_grad():  # bfloat16 safetensors are mapped, not read: the first answer reads them
            for parameter in loaded.model.parameters():
                parameter.sum()
        base_reads.append(time.perf_counter() - started)
        del loaded
    gc.collect()
    pinned = [tuple(pair) for pair in job["adapters"]]
    free, in_place, in_memory, by_branch = [], [], [], []
    for _ in range(job["repeats"]):  # room for every adapter: each goes into a free slot (load_adapter)
        _, registry, source = _serve(job["base"], capacity=len(pinned))
        for repo, commit in pinned:
            started = time.perf_counter()
            registry.load(source.fetch(repo, commit))
            free.append(time.perf_counter() - started)
        del registry
        gc.collect()
    _, registry, source = _serve(job["base"], capacity=2)
    for repo, commit in pinned[:2]:
        registry.load(source.fetch(repo, commit))
    for round_ in range(job["repeats"]):
        for repo, commit in pinned[2:] + pinned[:2]:  # two slots, four adapters in turn: each replaces the oldest
            started = time.perf_counter()
            adapter = source.fetch(repo, commit)
            registry.load(adapter)
            in_place.append(time.perf_counter() - started)
            started = time.perf_counter()
            with registry.use([None, adapter]):
                pass
            in_memory.append(time.perf_counter() - started)
        started = time.perf_counter()
        source.fetch(pinned[round_ % len(pinned)][0], "main")
        by_branch.append(time.perf_counter() - started)
    return {
        "base_load_s": median(base_loads),
        "base_load_read_s": median(base_reads),
        "switch_free_slot_s": median(free),
        "switch_in_place_s": median(in_place),
        "switch_in_memory_s": median(in_memory),
        "fetch_by_branch_s": median(by_branch),
        "swaps": registry.stats.swaps,
        "runs": {
            "base_load_s": base_loads,
            "base_load_read_s": base_reads,
            "switch_free_slot_s": free,
            "switch_in_place_s": in_place,
            "fetch_by_branch_s": by_branch,
        },
    }


def _run_worker(kind: str, job: dict) -> dict:
    return run_worker([__file__, "--worker", kind, "--job", json.dumps(job)])


def _parameters(base: Path) -> int:
    from safetensors import safe_open

    total = 0
    for file in base.glob("*.safetensors"):
        with safe_open(str(file), "pt") as handle:
            names = list(handle.keys())  # safe_open is not iterable
            for key in names:
                shape = handle.get_slice(key).get_shape()
                count = 1
                for dim in shape:
                    count *= dim
                total += count
    return total


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=1536)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--intermediate", type=int, default=4096)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--adapters", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--base-dtype",
        default="bfloat16",
        choices=("bfloat16", "float32"),
        help="precision the base's weights are saved in (Phi-3-mini ships in bfloat16)",
    )
    parser.add_argument("--assets", default=str(ROOT.parent / "shared" / "assets"))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--job", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        import torch

        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        job = json.loads(args.job)
        result = worker_memory(job) if args.worker == "memory" else worker_switch(job)
        print(json.dumps(result))
        return

    WORK.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = _environment(port, args.threads)
    os.environ.update(env)  # before huggingface_hub is imported
    from phi3_lora_hub.local_hub import LocalHub

    with LocalHub(WORK / "hub", port=port) as hub:
        hub.add_token(TOKEN, "bench")
        base = build_base(args)
        pushed = push_adapters(build_adapters(base, args.adapters, args.rank))
        files = [
            WORK / f"{base.name}-adapter-r{args.rank}-{i}" / "adapter_model.safetensors" for i in range(args.adapters)
        ]
        adapter_mb = sum(file.stat().st_size for file in files) / 2**20
        alone, with_adapters = [], []
        for _ in range(args.repeats):
            alone.append(_run_worker("memory", {"base": str(base), "adapters": []}))
            with_adapters.append(_run_worker("memory", {"base": str(base), "adapters": pushed}))
        switch = _run_worker("switch", {"base": str(base), "adapters": pushed, "repeats": args.repeats})
    rss_alone = median(r["rss_mb"] for r in alone)
    rss_with = median(r["rss_mb"] for r in with_adapters)
    facts = machine()
    load = facts["load_average"]
    params = _parameters(base)
    print(
        f"\nbase: {params / 1e6:.0f}M parameters (hidden {args.hidden}, {args.layers} layers, intermediate "
        f"{args.intermediate}), served in bfloat16; {args.adapters} adapters r {args.rank}, "
        f"{adapter_mb:.1f} MB of safetensors in all; {args.threads} threads; load average "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; {facts['cpu']}; torch {facts['torch']}, transformers "
        f"{facts['transformers']}, peft {facts['peft']}\n"
    )
    print("| measure | value |\n|---|---|")
    print(f"| RSS, base alone (median of {args.repeats}) | {rss_alone:.0f} MB |")
    print(f"| RSS, base + {args.adapters} adapters loaded | {rss_with:.0f} MB |")
    print(f"| increase | {rss_with - rss_alone:.0f} MB = **{(rss_with / rss_alone - 1):.1%}** |")
    print(f"| load the base (`load_base`) | {switch['base_load_s']:.2f} s |")
    print(f"| load the base and read every weight once | {switch['base_load_read_s']:.2f} s |")
    print(f"| switch a pane to an adapter in memory | {switch['switch_in_memory_s'] * 1e6:.0f} µs |")
    print(f"| ... to one not in memory, copied into the oldest slot | {switch['switch_in_place_s'] * 1000:.0f} ms |")
    print(f"| ... to one not in memory, loaded into a free slot | {switch['switch_free_slot_s'] * 1000:.0f} ms |")
    print(f"| resolve a branch name (one Hub call + checks) | {switch['fetch_by_branch_s'] * 1000:.0f} ms |")
    for kind, key in (("in place", "switch_in_place_s"), ("free slot", "switch_free_slot_s")):
        print(f"| base load / switch ({kind}) | **{switch['base_load_s'] / switch[key]:.1f}x** |")
        print(f"| base load and read / switch ({kind}) | **{switch['base_load_read_s'] / switch[key]:.1f}x** |")
    print(json.dumps({"alone": alone, "with_adapters": with_adapters, "switch": switch}))


if __name__ == "__main__":
    main()
