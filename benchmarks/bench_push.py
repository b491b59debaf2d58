"""What pushing every checkpoint costs training: the recipe with ``hub_model_id`` vs the same run without.

The Hub is the project's local Hub server in its own process (as a real Hub would be), with every request delayed
by ``--delay`` seconds (200 ms by default), so each push of a checkpoint takes about a second of network waiting.
Both contenders train the tiny Phi-3 (untrained, hidden size 96) on the bundled sample data with the same settings,
saving a checkpoint every ``--save-steps`` steps; only one of them pushes. Each run is a fresh process, and runs
alternate (push, plain, plain, push, ...) so that changes in the machine's load hit both alike.

The time measured is the wall time of ``recipe.build_trainer()`` + ``recipe.train()``: building the trainer (with
pushes: checking the token, creating the repository), training, saving the final adapter and, with pushes, the
end-of-training flush (the last checkpoint and the final adapter must reach the Hub). Run from the repository
root::

    python benchmarks/bench_push.py                 # 3 pairs, 1000 steps of 32 conversations, a push every 25 steps
    python benchmarks/bench_push.py --repeats 5 --json push.json

Other work on the machine changes absolute numbers far more than ratios: compare the ratio, and look at the
load average printed with it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import child_env, free_port, interleaved, run_worker, table


def start_hub(root: Path, delay: float) -> tuple[subprocess.Popen, str]:
    """``phi3-lora-hub hub serve`` in its own process, every request delayed by ``delay`` seconds."""
    from phi3_lora_hub.local_hub import RemoteHub, root_credentials

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "phi3_lora_hub", "hub", "serve", "--root", str(root), "--port", str(port)],
        env=child_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    remote = RemoteHub(url, admin_token=root_credentials(root).admin_token, timeout=2)
    for _ in range(300):
        try:
            remote.faults.clear()
            break
        except Exception:
            if server.poll() is not None:
                sys.exit(f"the local Hub did not start: {server.stderr.read().decode()[-2000:]}")
            time.sleep(0.1)
    if delay > 0:
        remote.faults.delay(path=".", seconds=delay, count=None)  # every request of every client
    return server, url


def worker(args: argparse.Namespace) -> None:
    """One timed run (in a fresh process); prints its numbers as JSON."""
    from phi3_lora_hub import Phi3LoraRecipe

    training = {
        "max_steps": args.steps,
        "save_steps": args.save_steps,
        "save_total_limit": 2,
        "per_device_train_batch_size": args.batch_size,
        "gradient_accumulation_steps": 1,
        "logging_steps": args.save_steps,
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
    }
    settings: dict[str, Any] = {}
    if args.push:
        settings["hub_model_id"] = f"tester/bench-push-{uuid.uuid4().hex[:8]}"
    recipe = Phi3LoraRecipe(args.model, args.data, output_dir=args.output, training=training, **settings)
    recipe.prepare_data()
    started, cpu = time.perf_counter(), time.process_time()  # from building the trainer to the end of the flush
    recipe.build_trainer()
    result = recipe.train()
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    report = result.hub
    print(
        json.dumps(
            {
                "push": args.push,
                "seconds": seconds,
                "cpu_seconds": cpu,
                "train_runtime": result.metrics.get("train_runtime"),
                "pushed": len(report.pushed) if report else 0,
                "skipped": len(report.skipped) if report else 0,
                "failed": len(report.failed) if report else 0,
                "load": os.getloadavg()[0],
            }
        )
    )


def run_one(push: bool, model: str, data: str, args: argparse.Namespace, hub_env: dict[str, str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-push-") as output:
        argv = [__file__, "--worker", "--model", model, "--data", data, "--output", output]
        argv += ["--steps", str(args.steps), "--save-steps", str(args.save_steps), "--batch-size", str(args.batch_size)]
        argv += ["--push"] if push else []
        return run_worker(argv, timeout=3600, env=child_env(**hub_env))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="pairs of runs (push, no push)")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--save-steps", type=int, default=25, help="a checkpoint (and a push) every N steps")
    parser.add_argument("--batch-size", type=int, default=32, help="conversations per step")
    parser.add_argument("--delay", type=float, default=0.2, help="seconds added to every Hub request")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--push", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    if args.worker:
        worker(args)
        return 0

    from phi3_lora_hub.data.sample import write_sample_dataset
    from phi3_lora_hub.local_hub import root_credentials
    from phi3_lora_hub.model.tiny import TinyPhi3Config, tiny_phi3_cache_dir

    workdir = Path(tempfile.mkdtemp(prefix="bench-push-"))
    model = str(tiny_phi3_cache_dir(TinyPhi3Config(pretrain_steps=0)))
    data = str(write_sample_dataset(workdir / "chats.jsonl", n=400))
    server, url = start_hub(workdir / "hub", args.delay)
    hub_env = {
        "HF_ENDPOINT": url,
        "HF_TOKEN": root_credentials(workdir / "hub").write_token,
        "HF_HUB_OFFLINE": "0",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "PHI3_LORA_HUB_CACHE": str(workdir / "prepared"),  # both contenders read the same prepared data
    }
    runs: list[dict[str, Any]] = []
    try:
        run_one(False, model, data, args, hub_env)  # warm-up: prepares and caches the data, not counted
        for _, contender in interleaved(["push", "plain"], args.repeats):
            runs.append(run_one(contender == "push", model, data, args, hub_env))
            print(f"  {contender:5} {runs[-1]['seconds']:.1f} s (load {runs[-1]['load']:.2f})")
    finally:
        server.terminate()
        server.wait(30)

    pushed = [run["seconds"] for run in runs if run["push"]]
    plain = [run["seconds"] for run in runs if not run["push"]]
    ratio = statistics.median(pushed) / statistics.median(plain)
    pairs = [a / b for a, b in zip(pushed, plain, strict=True)]
    load = statistics.mean(run["load"] for run in runs)
    checkpoints = args.steps // args.save_steps
    headers = ["runs", "steps", "pushes", "delay per request", "train() without pushes", "with pushes", "ratio"]
    row = [
        f"{args.repeats} pairs",
        args.steps,
        f"{checkpoints} checkpoints + final",
        f"{args.delay * 1000:.0f} ms",
        f"{statistics.median(plain):.1f} s",
        f"{statistics.median(pushed):.1f} s",
        f"**{ratio:.3f}** (pairs {min(pairs):.3f}-{max(pairs):.3f})",
    ]
    print()
    print(table([*headers, "load avg"], [[*row, f"{load:.2f}"]]))
    failed = sum(run["failed"] for run in runs if run["push"])
    print(f"\npushed per run: {[run['pushed'] for run in runs if run['push']]}, failed: {failed}")
    if args.json:
        summary = {"ratio": ratio, "pair_ratios": pairs, "load": load, "runs": runs, "settings": vars(args)}
        Path(args.json).write_text(json.dumps(summary, indent=2))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
