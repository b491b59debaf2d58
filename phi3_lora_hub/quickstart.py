"""The offline end-to-end run behind ``phi3-lora-hub quickstart`` (and ``make quickstart``).

It builds the tiny Phi-3, writes the bundled sample data, trains a LoRA adapter with a progress bar, evaluates
it, saves it, and shows what the base model and the adapter answer to the same questions. Every checkpoint is
pushed, with its model card, to a local Hub served on 127.0.0.1 for the run (stored under the output folder).
No other network is used.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from phi3_lora_hub.data.sample import sample_prompts, write_sample_dataset

# The tiny model learns the sample data's style in about 200 steps (eval loss ~0.03 at 300) on a 2-core CPU.
# A tiny model tolerates a learning rate ~20x the recipe's Phi-3 default.
QUICKSTART_TRAINING: dict[str, Any] = {
    "max_steps": 300,
    "per_device_train_batch_size": 8,
    "gradient_accumulation_steps": 1,
    "learning_rate": 2e-3,
    "logging_steps": 25,
    "save_steps": 100,
    "save_total_limit": 3,
}
QUICKSTART_REPO = "tester/phi3-compass-lora"
"""The repository on the quickstart's local Hub (``tester`` is the local Hub's default user)."""


@dataclass
class QuickstartReport:
    """Where everything went and what the models answered."""

    output_dir: Path
    base_model_dir: Path
    dataset_path: Path
    adapter_dir: Path
    metrics: dict[str, float]
    answers: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    hub_root: Path | None = None
    """The local Hub's storage (``None`` when nothing was pushed)."""
    hub_repo_url: str | None = None
    hub_branches: list[str] = field(default_factory=list)

    def render(self) -> str:
        lines = [
            "",
            f"phi3-lora-hub quickstart finished in {self.seconds:.0f} s",
            f"  tiny Phi-3 base model : {self.base_model_dir}",
            f"  sample dataset        : {self.dataset_path}",
            f"  adapter               : {self.adapter_dir}",
            f"  eval loss / perplexity: {self.metrics.get('eval_loss', float('nan')):.3f} / "
            f"{self.metrics.get('eval_perplexity', float('nan')):.2f}",
            "",
            "Same questions, base model vs adapter:",
        ]
        for answer in self.answers:
            lines += [
                f"  Q: {answer['question']}",
                f"     base   : {answer['base']}",
                f"     adapter: {answer['adapter']}",
            ]
        if self.hub_repo_url is not None:
            lines += [
                "",
                f"Pushed to the local Hub (served on 127.0.0.1 while the quickstart ran): {self.hub_repo_url}",
                f"  branches: {', '.join(self.hub_branches)}",
                f"  serve it again (the URL works again): phi3-lora-hub hub serve --root {self.hub_root} "
                f"--port {urlsplit(self.hub_repo_url).port}",
            ]
        lines += [
            "",
            "Next: phi3-lora-hub chat --adapter " + str(self.adapter_dir),
        ]
        return "\n".join(lines)


def start_local_hub(root: Path):
    """Serve a local Hub on 127.0.0.1 from ``root`` and point this process's Hub clients at it.

    ``huggingface_hub`` reads ``HF_ENDPOINT`` (and the token and offline switch) once, when it is imported, so the
    variables are set only if it has not been imported yet; the push callback is given the address and token
    explicitly either way, so the pushes reach this Hub in any case.
    """
    from phi3_lora_hub.local_hub import LocalHub

    hub = LocalHub(root, port=0).start()
    if "huggingface_hub" not in sys.modules:
        os.environ.update(hub.env())  # HF_ENDPOINT, HF_TOKEN (the root's write token), HF_HUB_OFFLINE=0
    return hub


def run_quickstart(
    output_dir: str | Path = "quickstart-output", *, max_steps: int | None = None, push: bool = True
) -> QuickstartReport:
    """Run the whole offline quickstart into ``output_dir`` and return a report (also printed by the CLI).

    With ``push`` the run is published to a local Hub under ``output_dir/hub`` while it trains.
    """
    started = time.monotonic()
    output_dir = Path(output_dir).resolve()
    hub = start_local_hub(output_dir / "hub") if push else None
    try:
        return _run(output_dir, max_steps, hub, started)
    finally:
        if hub is not None:
            hub.stop()


def _run(output_dir: Path, max_steps: int | None, hub, started: float) -> QuickstartReport:
    import datasets  # imported after the local Hub is set up: it imports huggingface_hub

    from phi3_lora_hub.decoding import chat_generation_config
    from phi3_lora_hub.generation import generate_replies
    from phi3_lora_hub.model.loading import load_for_inference
    from phi3_lora_hub.model.tiny import tiny_phi3_cache_dir
    from phi3_lora_hub.recipe import Phi3LoraRecipe

    datasets.disable_progress_bars()  # a few hundred rows: the trainer's progress bar is the one worth showing
    print("1/4 Building the offline tiny Phi-3 (cached after the first run) ...", flush=True)
    base_dir = tiny_phi3_cache_dir(progress=True)
    dataset_path = write_sample_dataset(output_dir / "data" / "compass.jsonl")
    training = {**QUICKSTART_TRAINING, **({"max_steps": max_steps} if max_steps else {})}
    callbacks = []
    if hub is not None:
        from phi3_lora_hub.callbacks.hub_push import HubPushCallback

        callbacks.append(HubPushCallback(QUICKSTART_REPO, token=hub.write_token, endpoint=hub.url))
    recipe = Phi3LoraRecipe(
        str(base_dir),
        str(dataset_path),
        output_dir=str(output_dir / "run"),
        eval_size=0.1,
        training=training,
        callbacks=callbacks,
    )
    print("2/4 Preparing the data and training the LoRA adapter ...", flush=True)
    result = recipe.train()
    print("3/4 Answering sample questions with the base model and the adapter ...", flush=True)
    prompts = sample_prompts()
    base, tokenizer = load_for_inference(str(base_dir))
    adapted, _ = load_for_inference(str(base_dir), result.adapter_dir)
    short = chat_generation_config(max_new_tokens=40)
    base_replies = generate_replies(base, tokenizer, prompts, short)
    adapter_replies = generate_replies(adapted, tokenizer, prompts, short)
    answers = [
        {"question": prompt[-1]["content"], "base": b.text, "adapter": a.text}
        for prompt, b, a in zip(prompts, base_replies, adapter_replies, strict=True)
    ]
    report = QuickstartReport(
        output_dir=output_dir,
        base_model_dir=base_dir,
        dataset_path=dataset_path,
        adapter_dir=result.adapter_dir,
        metrics=result.metrics,
        answers=answers,
    )
    if hub is not None and result.hub is not None:
        from huggingface_hub import HfApi

        refs = HfApi(endpoint=hub.url, token=hub.write_token).list_repo_refs(QUICKSTART_REPO)
        step = {ref.name: int(ref.name.split("-")[-1]) if ref.name.startswith("step-") else -1 for ref in refs.branches}
        report.hub_root, report.hub_repo_url = hub.root, result.hub.repo_url
        report.hub_branches = sorted(step, key=lambda name: step[name])
    print("4/4 Done.", flush=True)
    report.seconds = time.monotonic() - started
    return report
