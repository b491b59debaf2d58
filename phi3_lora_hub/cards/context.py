"""The variables a model card template gets, computed from a run's files (see :mod:`.run_files`).

Templates are rendered by ``huggingface_hub.ModelCard.from_template`` with plain Jinja, so every value here is
ready to print: numbers are formatted, Markdown table cells escaped, code snippets complete. A custom template can
use any of them; :data:`TEMPLATE_VARIABLES` lists and explains each one.
"""

from __future__ import annotations

import functools
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from phi3_lora_hub import phi3_format
from phi3_lora_hub.cards.run_files import RunFiles
from phi3_lora_hub.evaluation.perplexity import perplexity_from_nll
from phi3_lora_hub.loralib_backend.checkpoint import read_loralib_record
from phi3_lora_hub.run_file_names import LORALIB_CONFIG
from phi3_lora_hub.version import __version__

TEMPLATE_VARIABLES: dict[str, str] = {
    "card_data": "the YAML metadata (between the --- lines at the top)",
    "title": "a heading: the repository name",
    "summary": "one paragraph: what this adapter is, what it was trained on, which step this card describes",
    "checkpoint_note": "for a training checkpoint: where it lives (main, for now, and its own branch); else empty",
    "repo_id": "namespace/name of the repository",
    "repo_url": "the repository's web address",
    "revision": "the revision that keeps these files ('step-500' for a checkpoint, else the branch given, or 'main')",
    "step": "the training step the card describes",
    "base_model_name": "the base model id or path",
    "usage_code": "Python that loads the adapter with peft and generates an answer",
    "merge_code": "Python that merges the adapter into the base model and saves it",
    "stop_tokens": "the stop tokens, as Markdown code spans joined with commas",
    "has_generation_config": "whether the repository has a generation_config.json (with the stop tokens)",
    "data_rows": "list of (label, train, eval) rows describing the training data",
    "lora_rows": "list of (name, value) rows: every LoRA setting",
    "training_rows": "list of (name, value) rows: every training setting",
    "recipe_rows": "list of (name, value) rows: the other recipe settings (quantization, dtype, ...)",
    "loralib_line": "for adapters trained with loralib: what was patched (else empty)",
    "final_metrics": "list of (name, value) rows: the latest training and evaluation numbers, and the data the "
    "evaluation numbers were measured on",
    "checkpoint_rows": "list of dicts (step, train_loss, eval_loss, branch, link) for checkpoints on the Hub",
    "loss_curve": "file name of the loss curve image beside the card (empty when not drawn)",
    "evaluation_table": "the evaluation report (base vs adapter) as a Markdown table with its settings, or empty",
    "samples_markdown": "answers to the sample prompts at the last steps up to this one (Markdown), or empty",
    "samples_step": "the newest step with sample answers, or None (then samples_markdown says why there are none)",
    "versions": "list of (package, version) rows",
    "limitations": "list of sentences",
}

_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
_VERSIONED_PACKAGES = ("phi3-lora-hub", "transformers", "trl", "peft", "torch", "huggingface_hub", "datasets")
_LORA_KEYS_SHOWN = (
    "r",
    "lora_alpha",
    "lora_dropout",
    "target_modules",
    "bias",
    "use_rslora",
    "use_dora",
    "modules_to_save",
    "init_lora_weights",
    "layers_to_transform",
    "rank_pattern",
    "alpha_pattern",
)
_RECIPE_KEYS_SHOWN = (
    "model_revision",
    "dataset_config",
    "dataset_split",
    "eval_split",
    "eval_size",
    "max_train_samples",
    "format",
    "on_bad_rows",
    "assistant_only_loss",
    "quantization",
    "dtype",
    "attn_implementation",
)


PUBLIC_HUB = "https://huggingface.co"


@dataclass(frozen=True)
class CardOptions:
    """What the card needs to know besides the run's files: where it is published, and the publisher's choices."""

    repo_id: str
    endpoint: str = PUBLIC_HUB
    branch: str | None = None
    """The branch that holds these files besides ``main`` (``step-N`` for a checkpoint), if any."""
    checkpoint: bool = False
    """The files are a training checkpoint (pushed to ``main`` and to its branch), not a finished adapter."""
    branches: Mapping[int, str] = field(default_factory=dict)
    """Checkpoint branches on the Hub (step -> branch); the card lists those up to its own step."""
    license: str = "mit"
    loss_curve: str | None = None
    """File name of the loss curve image beside the card, when one was drawn."""
    base_model: str | None = None
    """The base model the card names (a Hub id gives the metadata's ``base_model``); default: the run files' (the
    recipe YAML's ``model``, else ``adapter_config.json``'s ``base_model_name_or_path``)."""
    dataset: str | None = None
    """What the adapter was trained on: a Hub dataset id (then also the metadata's ``datasets``) or a few words;
    default: the data report's source, else the recipe YAML's ``dataset``."""
    training_args: Mapping[str, Any] | None = None
    """The training settings the card lists when the files hold neither a recipe YAML nor ``training_args.json``
    (e.g. ``TrainingArguments.to_dict()`` of a plain Trainer run)."""

    @property
    def repo_url(self) -> str:
        """The repository's web address for links: absolute on the public Hub, site-relative (``/ns/name``) on
        any other endpoint, so the links of a card pushed to a local Hub survive a change of its port."""
        endpoint = self.endpoint.rstrip("/")
        return f"{endpoint}/{self.repo_id}" if endpoint == PUBLIC_HUB else f"/{self.repo_id}"

    @property
    def revision(self) -> str:
        """The revision the card's code loads: the branch, which keeps these files when ``main`` moves on."""
        return self.branch or "main"


def hub_model_id(reference: str | None) -> str | None:
    """``reference`` when it names a Hub repository (``namespace/name``), not a local directory."""
    if not reference or os.path.isabs(reference) or reference.startswith(".") or Path(reference).exists():
        return None
    return reference if _HUB_ID.fullmatch(reference) else None


def base_model_of(files: RunFiles, options: CardOptions) -> str | None:
    """The base model the card names: the one given in ``options``, else the one the run files record."""
    return options.base_model or files.base_model


def number(value: Any, digits: int = 4) -> str:
    """A number for a table: ``–`` when missing, up to ``digits`` significant digits otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "–" if value is None else cell(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "∞" if value > 0 else "–"
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def cell(value: Any) -> str:
    """Any setting as a Markdown table cell (lists as code spans, ``|`` escaped)."""
    if isinstance(value, (list, tuple)):
        return ", ".join(f"`{item}`" for item in value) if value else "[]"
    if isinstance(value, dict):
        return ", ".join(f"{key}: {item}" for key, item in value.items()).replace("|", "\\|") or "{}"
    if value is None:
        return "None"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _last(history: list[dict[str, Any]], key: str, up_to: int | None = None) -> float | None:
    values = [
        entry[key]
        for entry in history
        if isinstance(entry.get(key), (int, float)) and (up_to is None or entry.get("step", 0) <= up_to)
    ]
    return values[-1] if values else None


def _at(history: list[dict[str, Any]], key: str, step: int) -> float | None:
    return next((entry[key] for entry in history if entry.get("step") == step and key in entry), None)


@functools.lru_cache(maxsize=4)  # reading package metadata is slow and nothing changes it while a run lasts
def package_versions(extra: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """Installed versions of the libraries that made the adapter (as installed where the card is generated)."""
    rows = []
    for name in _VERSIONED_PACKAGES + extra:
        try:
            rows.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            if name == "phi3-lora-hub":
                rows.append((name, __version__))
    return rows


def _data_rows(report: Mapping[str, Any] | None) -> list[tuple[str, str, str]]:
    if not report or not isinstance(report.get("train"), dict):
        return []
    train, evaluation = report["train"], report.get("eval") if isinstance(report.get("eval"), dict) else {}

    def both(key: str, render=number) -> tuple[str, str]:
        return render(train.get(key)), render(evaluation.get(key)) if evaluation else "–"

    def skipped(part: Mapping[str, Any]) -> str:
        rows = part.get("skipped_rows") or []
        shown = ", ".join(str(row) for row in rows[:10]) + (" ..." if len(rows) > 10 else "")
        return f"{len(rows)} (rows {shown})" if rows else "0"

    rows = [
        ("Source", *both("source", cell)),
        ("Detected format", *both("format", cell)),
        ("Rows read", *both("rows_read")),
        ("Rows used", *both("rows_used")),
        ("Rows skipped (bad)", skipped(train), skipped(evaluation) if evaluation else "–"),
        ("Rows longer than max_length (truncated)", *both("too_long_rows")),
        ("Tokens", *both("tokens")),
        ("Trained tokens (assistant answers)", *both("trained_tokens")),
    ]
    return [(label, a, b) for label, a, b in rows]


def data_description(part: Mapping[str, Any] | None) -> str | None:
    """What one part of a data report is, exactly: ``"40 conversations of compass.jsonl [40 held out for eval]
    (642 answer tokens)"``; ``None`` without a report."""
    if not isinstance(part, Mapping) or not part.get("source"):
        return None
    rows, tokens = part.get("rows_used"), part.get("trained_tokens")
    text = f"{rows} conversations of {part['source']}" if isinstance(rows, int) else str(part["source"])
    return text + (f" ({tokens} answer tokens)" if isinstance(tokens, int) else "")


def trainer_evaluation_data(files: RunFiles) -> Mapping[str, Any] | None:
    """The data report of the evaluation data: what the Trainer's ``eval_loss`` was measured on."""
    part = (files.data_report or {}).get("eval")
    return part if isinstance(part, Mapping) else None


def _stop_tokens(files: RunFiles) -> list[str]:
    ids = (files.generation_config or {}).get("eos_token_id")
    ids = ids if isinstance(ids, list) else [ids] if isinstance(ids, int) else []
    names = [files.added_tokens[token] for token in ids if token in files.added_tokens]
    return names if names and len(names) == len(ids) else list(phi3_format.STOP_TOKENS)


def _samples_markdown(files: RunFiles, step: int | None) -> str:
    """The sample answers recorded up to ``step`` (the last few steps), as the evaluation package writes them."""
    if files.samples is None or step is None:
        return ""
    samples = files.samples.up_to(step)
    return samples.markdown(last=3) if samples.steps or samples.note else ""


def usage_code(base_model: str, repo_id: str, revision: str, stop_tokens: list[str] | None = None) -> str:
    """Python that loads the adapter from the Hub with peft and answers one question.

    With ``stop_tokens`` (a repository without ``generation_config.json``) generation is told to stop on them.
    """
    revision_arg = "" if revision == "main" else f', revision="{revision}"'
    if stop_tokens is None:
        loaded = f'GenerationConfig.from_pretrained("{repo_id}"{revision_arg})'
        generation = f"generation_config = {loaded}  # stops at the end of the turn"
        generate_args = "generation_config=generation_config"
    else:
        generation = f"stop_ids = tokenizer.convert_tokens_to_ids({stop_tokens!r})  # the end of the assistant's turn"
        generate_args = "eos_token_id=stop_ids"
    imports = "AutoModelForCausalLM, AutoTokenizer" + (", GenerationConfig" if stop_tokens is None else "")
    return f'''import torch
from peft import PeftModel
from transformers import {imports}

base = AutoModelForCausalLM.from_pretrained("{base_model}", dtype=torch.bfloat16, device_map="auto")
model = PeftModel.from_pretrained(base, "{repo_id}"{revision_arg})
tokenizer = AutoTokenizer.from_pretrained("{repo_id}"{revision_arg})
{generation}

messages = [{{"role": "user", "content": "What is the capital of Peru?"}}]
inputs = tokenizer.apply_chat_template(
    messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
).to(model.device)
output = model.generate(**inputs, {generate_args}, max_new_tokens=256)
print(tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True))'''


def merge_code(base_model: str, repo_id: str, revision: str) -> str:
    """Python that merges the adapter into its base model and saves a plain transformers model."""
    revision_arg = "" if revision == "main" else f', revision="{revision}"'
    return f'''from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

base = AutoModelForCausalLM.from_pretrained("{base_model}", dtype="auto")
merged = PeftModel.from_pretrained(base, "{repo_id}"{revision_arg}).merge_and_unload()
merged.save_pretrained("phi3-merged")
AutoTokenizer.from_pretrained("{repo_id}"{revision_arg}).save_pretrained("phi3-merged")'''


def build_context(files: RunFiles, options: CardOptions) -> dict[str, Any]:
    """Every template variable (see :data:`TEMPLATE_VARIABLES`) for the run in ``files``, published as ``options``."""
    recipe = files.recipe or {}
    step = files.step
    history = files.log_history
    base = base_model_of(files, options) or "microsoft/Phi-3-mini-4k-instruct"
    data = (files.data_report or {}).get("train") or {}
    dataset = options.dataset or data.get("source") or recipe.get("dataset") or "an unnamed dataset"
    on_checkpoint = options.checkpoint

    lora = recipe.get("lora") or files.adapter_config or {}
    lora_rows = [(key, cell(lora[key])) for key in _LORA_KEYS_SHOWN if key in lora]
    lora_rows += [(key, cell(value)) for key, value in sorted(lora.items()) if key == "backend"]
    training = recipe.get("training") or files.training_args or options.training_args or {}
    training_rows = [(key, cell(value)) for key, value in sorted(training.items())]
    recipe_rows = [(key, cell(recipe[key])) for key in _RECIPE_KEYS_SHOWN if key in recipe]

    loralib_line = ""
    if (files.directory / LORALIB_CONFIG).is_file():
        try:
            record = read_loralib_record(files.directory)
        except Exception:  # a damaged record only costs the card its loralib line
            record = None
        loralib_line = record.describe() if record is not None else ""

    evaluation_table = files.evaluation.markdown_table() if files.evaluation is not None else ""
    train_loss = _last(history, "loss", step)
    eval_loss = _last(history, "eval_loss", step)
    final_metrics = [("Step", number(step)), ("Training loss (last logged)", number(train_loss))]
    if eval_loss is not None:
        final_metrics.append(("Evaluation loss (assistant tokens)", number(eval_loss)))
        final_metrics.append(("Evaluation perplexity", number(perplexity_from_nll(eval_loss))))
        measured_on = data_description(trainer_evaluation_data(files))
        if measured_on is not None:
            final_metrics.append(("Evaluation loss and perplexity measured on", cell(measured_on)))
    runtime = _last(history, "train_runtime")
    if runtime is not None:
        final_metrics.append(("Training time (s)", number(runtime, 3)))

    checkpoint_steps = sorted(s for s in options.branches if step is None or s <= step)
    checkpoint_rows = [
        {
            "step": s,
            "train_loss": number(_last(history, "loss", s)),
            "eval_loss": number(_at(history, "eval_loss", s)),
            "branch": options.branches[s],
            "link": f"{options.repo_url}/tree/{options.branches[s]}",
        }
        for s in checkpoint_steps
    ]

    rows_used = data.get("rows_used")
    trained_on = f"{rows_used} conversations of {dataset}" if rows_used is not None else dataset
    what = f"the checkpoint at step {step}" if on_checkpoint else f"the adapter after {step} training steps"
    base_link = f"[{base}](https://huggingface.co/{base})" if hub_model_id(base) else f"the Phi-3 model in `{base}`"
    summary = (
        f"A LoRA adapter for {base_link}, fine-tuned with phi3-lora-hub (TRL `SFTTrainer` + PEFT) on {trained_on}, "
        f"with the loss on assistant answers only. This card describes {what}."
    )
    checkpoint_note = (
        f"The checkpoint saved at step {step}, pushed while training ran. Branch "
        f"[`{options.revision}`]({options.repo_url}/tree/{options.revision}) keeps it; "
        f"[`main`]({options.repo_url}) holds it until a newer checkpoint or the final adapter replaces it."
        if on_checkpoint
        else ""
    )

    stop_tokens = _stop_tokens(files)
    limitations = [
        f"The adapter inherits the limitations and biases of its base model ({base}); read that model's card.",
        f"It was trained on {trained_on}: expect it to follow that data's style and to be weaker outside it.",
        "Generation must stop on every one of "
        + ", ".join(f"`{t}`" for t in stop_tokens)
        + ("; the `generation_config.json` in this repository does that" if files.generation_config else "")
        + ". Stopping on `<|endoftext|>` alone runs past the end of the turn.",
    ]
    if not evaluation_table and eval_loss is None:
        limitations.append("No held-out evaluation is recorded for this step: the losses above are training losses.")
    if on_checkpoint:
        limitations.append("This is an intermediate checkpoint; later checkpoints and `main` may behave differently.")
    if hub_model_id(base) is None:
        limitations.append(
            f"The base model was loaded from a local directory (`{base}`): load the adapter on the same model."
        )

    return {
        "title": options.repo_id.split("/")[-1],
        "summary": summary,
        "checkpoint_note": checkpoint_note,
        "repo_id": options.repo_id,
        "repo_url": options.repo_url,
        "revision": options.revision,
        "step": step,
        "base_model_name": base,
        "usage_code": usage_code(
            base, options.repo_id, options.revision, None if files.generation_config else stop_tokens
        ),
        "has_generation_config": files.generation_config is not None,
        "merge_code": merge_code(base, options.repo_id, options.revision),
        "stop_tokens": ", ".join(f"`{token}`" for token in stop_tokens),
        "data_rows": _data_rows(files.data_report),
        "lora_rows": lora_rows,
        "training_rows": training_rows,
        "recipe_rows": recipe_rows,
        "loralib_line": loralib_line,
        "final_metrics": final_metrics,
        "checkpoint_rows": checkpoint_rows,
        "loss_curve": options.loss_curve or "",
        "evaluation_table": evaluation_table,
        "samples_markdown": _samples_markdown(files, step),
        "samples_step": files.samples.up_to(step).step if files.samples is not None and step is not None else None,
        "versions": list(package_versions(("loralib",) if loralib_line else ())),
        "limitations": limitations,
    }
