"""Loss curves of the tiny Phi-3 under different process layouts with the same global batch, on CPU (gloo).

    python benchmarks/scale_loss_curves.py [--workdir DIR]

Runs the real CLI under the real launchers (plain python, ``accelerate launch`` with examples/accelerate/ddp.yaml,
``torchrun`` with 2 "nodes" on loopback) plus two controls that must differ (a global batch of 16, another data
order), and prints a Markdown table of the per-step training losses and each layout's largest difference from the
1-process run. The "Scaling out" numbers of benchmarks/RESULTS.md come from this script.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, free_port

COMPARISON = yaml.safe_load((ROOT / "benchmarks" / "scale_comparison.yaml").read_text())
"""The settings of every run (see the file); each layout overrides some ``training`` fields."""


def environment(workdir: Path, cache: str = "cache") -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PYTHONPATH=str(ROOT),
        HF_HOME=str(workdir / "hf"),
        PHI3_LORA_HUB_CACHE=str(workdir / cache / "prepared"),
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        OMP_NUM_THREADS="1",
    )
    return env


def recipe(workdir: Path, name: str, model: Path, data: Path, **training) -> Path:
    settings = {
        **COMPARISON,
        "model": str(model),
        "dataset": str(data),
        "output_dir": str(workdir / name),
        "training": {**COMPARISON["training"], **training},
        "evaluation": {"on_train_end": False, "num_samples": 0},
    }
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


def losses(workdir: Path, name: str) -> dict[int, float]:
    history = json.loads((workdir / name / "adapter" / "trainer_log.json").read_text())
    return {entry["step"]: entry["loss"] for entry in history if "loss" in entry}


def run(command: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None)
    workdir = (parser.parse_args().workdir or Path(tempfile.mkdtemp(prefix="scale-curves-"))).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    env = environment(workdir)
    os.environ.update(env)
    from phi3_lora_hub.data.sample import write_sample_dataset
    from phi3_lora_hub.model.tiny import TinyPhi3Config, tiny_phi3_cache_dir

    model = tiny_phi3_cache_dir(TinyPhi3Config(pretrain_steps=0))
    data = write_sample_dataset(workdir / "chats.jsonl", 200)
    cli = ["-m", "phi3_lora_hub", "train"]
    ddp = str(ROOT / "examples" / "accelerate" / "ddp.yaml")

    def two_processes() -> list[str]:
        launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", ddp, "--num_processes", "2"]
        return [*launch, "--main_process_port", str(free_port()), *cli]

    layouts = {
        "1 process x 8": ([sys.executable, *cli], {}),
        "2 processes x 4 (accelerate, ddp.yaml)": (two_processes(), {"pdb": 4}),
        "2 processes x 2 x 2 accumulation": (two_processes(), {"pdb": 2, "ga": 2}),
        "control: 2 processes x 8 (global 16)": (two_processes(), {}),
        "control: 1 process x 8, data_seed 7": ([sys.executable, *cli], {"seed": 7}),
    }
    curves: dict[str, dict[int, float]] = {}
    for index, (label, (launcher, knobs)) in enumerate(layouts.items()):
        name = f"layout{index}"
        training = {
            "per_device_train_batch_size": knobs.get("pdb", 8),
            "gradient_accumulation_steps": knobs.get("ga", 1),
        }
        if "seed" in knobs:
            training["data_seed"] = knobs["seed"]
        run([*launcher, str(recipe(workdir, name, model, data, **training))], env)
        curves[label] = losses(workdir, name)
    # Two "nodes" of one process each, meeting through a c10d rendezvous on loopback, node-local data caches.
    name, port = "two-nodes", free_port()
    path = recipe(workdir, name, model, data, per_device_train_batch_size=4)
    nodes = [
        subprocess.Popen(
            [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
             "--rdzv_backend", "c10d", "--rdzv_endpoint", f"127.0.0.1:{port}", "--rdzv_id", "curves",
             *cli, str(path)],
            env=environment(workdir, f"cache-node{rank}"), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        for rank in (0, 1)
    ]  # fmt: skip
    for node in nodes:
        node.wait(timeout=600)
    curves["2 nodes x 1 process x 4 (torchrun c10d)"] = losses(workdir, name)
    reference = curves["1 process x 8"]
    labels = list(curves)
    print("| step | " + " | ".join(labels) + " |")
    print("|---" * (len(labels) + 1) + "|")
    for step in sorted(reference):
        print(f"| {step} | " + " | ".join(f"{curves[label][step]:.7f}" for label in labels) + " |")
    deltas = [max(abs(curves[label][s] - reference[s]) for s in reference) for label in labels]
    print("| max abs diff vs 1 process | " + " | ".join(f"{delta:.2e}" for delta in deltas) + " |")


if __name__ == "__main__":
    main()
