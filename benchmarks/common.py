"""What the benchmarks share: where the real assets are, the chat data per length distribution, the benchmark
model, peak-memory sampling, medians and the printed table.

Benchmarks run from the repository root (``python benchmarks/bench_train.py``) and read the real Phi-3 tokenizer and
public chat datasets from ``../shared/assets`` (or ``--assets``); they stop with a clear message when those are absent.
"""

from __future__ import annotations

import json
import os
import platform
import random
import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_ASSETS = ROOT.parent / "shared" / "assets"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (for the local Hub and the launchers)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# Files of ../shared/assets/data per length distribution (token lengths with the real tokenizer, measured on them:
# short ~30-50 tokens, medium median ~150 with a tail to 750, long median ~490 with a tail to 3,900).
DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    "short": ("fastchat_dummy_conversation.json", "phi3cookbook_mlx_train.jsonl"),
    "medium": ("llamafactory_alpaca_en_demo.json",),
    "long": ("llamafactory_lima.json",),
    "mixed": (
        "fastchat_dummy_conversation.json",
        "phi3cookbook_mlx_train.jsonl",
        "phi3cookbook_data_sample_travel.jsonl",
        "mslearn_travel-finetune.jsonl",
        "llamafactory_alpaca_en_demo.json",
        "llamafactory_glaive_toolcall_en_demo.json",
        "llamafactory_lima.json",
    ),
}
# The tool-call dataset's extra roles, read as the turns they stand for.
ROLE_MAP = {"function_call": "assistant", "observation": "user"}


def assets_dir(path: str | os.PathLike | None) -> Path:
    """The assets folder (``--assets`` or ``../shared/assets``); exits with a message when it is missing."""
    directory = Path(path) if path else DEFAULT_ASSETS
    if not (directory / "phi3-mini-4k-instruct" / "tokenizer.json").is_file() or not (directory / "data").is_dir():
        sys.exit(
            f"Real assets not found in {directory}: the benchmarks need the Phi-3 tokenizer and the public chat data "
            "(phi3-mini-4k-instruct/ and data/). Pass --assets PATH."
        )
    return directory


def conversations(assets: Path, distribution: str, count: int, seed: int = 0) -> list[list[dict[str, str]]]:
    """``count`` conversations (Phi-3 messages) drawn without replacement from the distribution's files."""
    from phi3_lora_hub.data.prepare import DataOptions, convert_rows
    from phi3_lora_hub.data.sources import read_rows

    pool: list[list[dict[str, str]]] = []
    options = DataOptions(on_bad_rows="skip", role_map=ROLE_MAP)
    for name in DISTRIBUTIONS[distribution]:
        pool.extend(convert_rows(read_rows(assets / "data" / name), options).conversations)
    rng = random.Random(seed)
    return rng.sample(pool, min(count, len(pool)))


@dataclass(frozen=True)
class ModelSize:
    """A Phi-3 shape: the benchmark's default is large enough that compute, not overhead, dominates a step."""

    hidden_size: int = 512
    intermediate_size: int = 1408
    num_hidden_layers: int = 8
    num_attention_heads: int = 8
    vocab_size: int = 32064
    max_position_embeddings: int = 4096
    sliding_window: int = 2047


PHI3_MINI = ModelSize(3072, 8192, 32, 32, 32064, 4096, 2047)


def build_model(size: ModelSize, *, dtype: str = "float32", attn_implementation: str = "sdpa", device: str = "cpu"):
    """A randomly initialised ``Phi3ForCausalLM`` of ``size`` (deterministic), with Phi-3's special token ids when the
    vocabulary is Phi-3's."""
    import torch
    from transformers import Phi3Config, Phi3ForCausalLM

    config = Phi3Config(
        vocab_size=size.vocab_size,
        hidden_size=size.hidden_size,
        intermediate_size=size.intermediate_size,
        num_hidden_layers=size.num_hidden_layers,
        num_attention_heads=size.num_attention_heads,
        num_key_value_heads=size.num_attention_heads,
        max_position_embeddings=size.max_position_embeddings,
        original_max_position_embeddings=size.max_position_embeddings,
        sliding_window=size.sliding_window,
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=32000 if size.vocab_size > 32000 else 2,
        pad_token_id=32000 if size.vocab_size > 32000 else 0,
        attn_implementation=attn_implementation,
    )
    torch.manual_seed(0)
    with torch.device(device):
        model = Phi3ForCausalLM(config)
    return model.to(getattr(torch, dtype))


def lora_config():
    """The LoRA every contender trains: what a user writes for Phi-3 (r 16, alpha 32, all linear layers)."""
    from peft import LoraConfig

    return LoraConfig(task_type="CAUSAL_LM", target_modules="all-linear", r=16, lora_alpha=32)


def rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakMemory:
    """Samples the process's resident memory every few milliseconds while active; ``peak`` is the highest seen."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.start = self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            time.sleep(self.interval)

    def __enter__(self) -> PeakMemory:
        self.start = self.peak = rss_bytes()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())


def machine() -> dict[str, Any]:
    """The facts a reader needs to compare numbers: CPU, cores, load, library versions, threads."""
    import peft
    import torch
    import transformers
    import trl

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_average": os.getloadavg(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "trl": trl.__version__,
        "peft": peft.__version__,
        "python": platform.python_version(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table (readable in a terminal and pasteable into RESULTS.md)."""
    cells = [[str(cell) for cell in row] for row in rows]
    widths = [max(len(str(header)), *(len(row[i]) for row in cells)) for i, header in enumerate(headers)]
    lines = [
        "| " + " | ".join(str(h).ljust(w) for h, w in zip(headers, widths, strict=True)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in cells]
    return "\n".join(lines)


def child_env(**extra: str) -> dict[str, str]:
    """This process's environment plus ``extra``, with the repository on ``PYTHONPATH``: for a child process."""
    env = {**os.environ, **extra}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    return env


def run_worker(argv: Sequence[str], timeout: float | None = None, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``python <argv>`` in a fresh process (``env``, default this one's) and return the JSON object its last
    output line holds."""
    import subprocess

    environment = env or dict(os.environ)
    completed = subprocess.run(
        [sys.executable, *argv], capture_output=True, text=True, timeout=timeout, env=environment, check=False
    )
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    if completed.returncode != 0 or not lines:
        raise RuntimeError(f"worker {' '.join(argv)} failed ({completed.returncode}):\n{completed.stderr[-3000:]}")
    return json.loads(lines[-1])


def interleaved(names: Sequence[str], repeats: int) -> list[tuple[int, str]]:
    """(repeat, name) in an order that rotates the contenders each repeat: A B C, B C A, C A B, ..."""
    order = []
    for repeat in range(repeats):
        shift = repeat % len(names)
        order += [(repeat, name) for name in [*names[shift:], *names[:shift]]]
    return order


def timed(function: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start
