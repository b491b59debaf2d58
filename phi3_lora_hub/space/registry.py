"""One base model in memory, many adapters on it: load, keep the most recently used, replace the rest.

The base is wrapped once in a ``PeftModel`` with ``capacity`` adapter *slots* (PEFT adapter names ``slot000``,
``slot001``, ...). An adapter that is not in memory goes into a free slot with ``load_adapter`` (inference mode);
when every slot is taken, the least recently used adapter makes room:

- if the newcomer has exactly the same tensors (same layers, kinds and ranks: every checkpoint of one training
  run does), its weights are copied into that slot in place. With the same scaling too (``lora_alpha``,
  ``use_rslora``, rank and alpha patterns: again every checkpoint of a run) that is one ``copy_`` per tensor
  into the slot's parameters, found once per slot; otherwise PEFT's ``hotswap_adapter_from_state_dict`` copies
  them and sets the slot's scaling from the newcomer's config. Either is many times faster than
  ``load_adapter``, which walks and rebuilds the model's modules;
- otherwise the old adapter is deleted (``delete_adapter``) and the newcomer loaded into the freed slot.

Adapters are kept in the base model's precision (``autocast_adapter_dtype=False``): PEFT would otherwise hold
them in float32 next to a bfloat16 base, twice their share of memory (bench_space.py). With a ``cache_dir``, each
adapter's weights, once in a slot, are also written there in that precision (named by the sha256 of the adapter's
file, so a changed file is never mistaken for it; the :data:`CACHE_FILES` most recently used are kept): a later copy
into a slot then reads them and puts them in place as they are, without converting float32 to bfloat16 again,
which was most of its time (bench_space.py).

Everything that reads or changes what the slots hold, and every generation, happens while holding
:attr:`AdapterRegistry.lock` (:meth:`AdapterRegistry.use`), so a slot can never change under a running generation
and two requests never generate with each other's adapter.

Two PEFT facts shape this (peft 0.21.2, observed): deleting the *last* adapter leaves a ``PeftModel`` whose
``generate`` fails (its active adapter is gone), and ``delete_adapter`` marks the remaining active adapter
trainable. So the wrapper starts with a rank-1, zero-initialised placeholder adapter that is never used for
answers and never deleted (the model always holds an adapter; a failed load can always be undone), and every
parameter is frozen after each change. Slot names have one width, so no name contains another (PEFT's hotswap
finds a slot's tensors by substring).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from phi3_lora_hub.atomic_write import atomic_write_bytes
from phi3_lora_hub.hub.files import ADAPTER_WEIGHTS
from phi3_lora_hub.space.hub_adapters import SCALING_KEYS, AdapterKey, LocalAdapter
from phi3_lora_hub.space.refusal import Refusal

logger = logging.getLogger(__name__)

PLACEHOLDER = "__placeholder__"
BASE_NAME = "__base__"
"""PEFT's name for "no adapter" in a mixed batch (``generate(adapter_names=[...])``)."""
_LORA_MATRICES = (".lora_A", ".lora_B")
CACHE_FILES = 32
"""Adapters kept converted in ``cache_dir`` (the least recently used beyond this are deleted)."""
Identity = tuple[str, str, str]
""":attr:`LocalAdapter.identity`: repo, weights sha256, scaling."""


@dataclass(frozen=True)
class Loaded:
    """An adapter in the model: its slot (PEFT adapter name), and whether it can share a batch with others."""

    name: str
    adapter: LocalAdapter

    @property
    def mixed_batch(self) -> bool:
        """PEFT cannot mix DoRA adapters with others in one batch."""
        return not self.adapter.uses_dora


@dataclass
class RegistryStats:
    loads: int = 0
    """Adapters loaded with ``load_adapter`` (into a free slot)."""
    swaps: int = 0
    """Adapters copied into an occupied slot in place."""
    evictions: int = 0
    """Adapters taken out of memory (replaced in place or deleted)."""
    load_seconds: float = 0.0


class AdapterRegistry:
    """Adapters loaded on one base model, at most ``capacity`` of them (least recently used replaced first)."""

    def __init__(self, base_model: Any, *, capacity: int = 4, cache_dir: str | Path | None = None) -> None:
        if capacity < 2:
            raise ValueError(f"capacity must be >= 2 (two panes may need two adapters), got {capacity}")
        self.capacity = capacity
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        """Where adapters' weights are kept in the base's precision for fast copies (``None``: not kept)."""
        self._dtype = str(next(base_model.parameters()).dtype).removeprefix("torch.")
        self.lock = threading.RLock()
        """Held while adapters are loaded or replaced and during every generation."""
        self.model = _wrap(base_model)
        self.stats = RegistryStats()
        self._slots = [f"slot{index:03d}" for index in range(capacity)]
        # Keyed by LocalAdapter.identity: two commits with the same weights and scaling share one slot.
        self._loaded: OrderedDict[Identity, Loaded] = OrderedDict()  # least recently used first
        self._parameters: dict[str, dict[str, Any]] = {}
        """Slot -> its LoRA parameters by name, found on the first copy into the slot (until it is reloaded)."""

    def loaded(self) -> list[AdapterKey]:
        """Keys of the loaded adapters (the revision each was loaded as), least recently used first. A revision with
        the same weights and scaling as a loaded one uses that one's slot: it is not loaded again."""
        with self.lock:
            return [entry.adapter.key for entry in self._loaded.values()]

    def load(self, adapter: LocalAdapter) -> Loaded:
        """Make sure ``adapter`` is loaded; it becomes the most recently used."""
        with self.lock:
            return self._ensure(adapter, keep={adapter.identity})

    @contextlib.contextmanager
    def use(self, adapters: Sequence[LocalAdapter | None]) -> Iterator[list[Loaded | None]]:
        """Hold the lock with every one of ``adapters`` loaded (``None`` = the base); yields them in order.

        While the block runs nothing else can load, replace or generate, so the slots yielded hold the adapters
        asked for.
        """
        wanted = {adapter.identity for adapter in adapters if adapter is not None}
        if len(wanted) > self.capacity:
            raise ValueError(f"{len(wanted)} adapters asked for at once, capacity is {self.capacity}")
        with self.lock:
            yield [None if adapter is None else self._ensure(adapter, keep=wanted) for adapter in adapters]

    def _ensure(self, adapter: LocalAdapter, keep: set[Identity]) -> Loaded:
        entry = self._loaded.get(adapter.identity)
        if entry is not None:
            self._loaded.move_to_end(adapter.identity)
            return entry
        started = time.perf_counter()
        with _one_torch_thread():
            if len(self._loaded) >= self.capacity:
                victim = next(entry for key, entry in self._loaded.items() if key not in keep)
                if _same_tensors(victim.adapter, adapter):
                    entry = self._swap(victim, adapter)
                else:
                    self._unload(victim)
                    entry = self._load(adapter)
            else:
                entry = self._load(adapter)
        self._loaded[adapter.identity] = entry
        self.stats.load_seconds += time.perf_counter() - started
        logger.info("%s is in %s (%.3f s)", adapter.label, entry.name, time.perf_counter() - started)
        return entry

    def _load(self, adapter: LocalAdapter) -> Loaded:
        used = {entry.name for entry in self._loaded.values()}
        name = next(slot for slot in self._slots if slot not in used)
        self._parameters.pop(name, None)
        try:
            self.model.load_adapter(
                str(adapter.directory),
                adapter_name=name,
                is_trainable=False,
                low_cpu_mem_usage=True,
                autocast_adapter_dtype=False,
            )
        except Exception as error:
            if name in self.model.peft_config:
                self.model.delete_adapter(name)
            logger.exception("loading %s failed", adapter.label)
            raise _load_refusal(adapter, error) from None
        finally:
            self.model.requires_grad_(False)
        self.stats.loads += 1
        self._keep_converted(name, adapter)
        return Loaded(name, adapter)

    def _swap(self, victim: Loaded, adapter: LocalAdapter) -> Loaded:
        """Copy ``adapter``'s weights into ``victim``'s slot (same tensors, checked by the caller)."""
        from peft import LoraConfig
        from peft.utils.hotswap import hotswap_adapter_from_state_dict
        from safetensors.torch import load_file

        del self._loaded[victim.adapter.identity]
        try:
            config = LoraConfig.from_pretrained(str(adapter.directory))
            config.inference_mode = True
            weights = self._read_converted(adapter) or load_file(str(adapter.directory / ADAPTER_WEIGHTS))
            state = {_slot_key(key, victim.name): tensor for key, tensor in weights.items()}
            if _same_scaling(victim.adapter, adapter):
                self._copy_into(victim.name, state)
            else:
                hotswap_adapter_from_state_dict(self.model, state, victim.name, config)
            self.model.peft_config[victim.name] = config
        except Exception as error:
            self._parameters.pop(victim.name, None)
            self.model.delete_adapter(victim.name)  # the slot may hold a mix of both: never use it
            self.model.requires_grad_(False)
            self.stats.evictions += 1
            logger.exception("swapping %s in failed", adapter.label)
            raise _load_refusal(adapter, error) from None
        self.stats.swaps += 1
        self.stats.evictions += 1
        self._keep_converted(victim.name, adapter)
        return Loaded(victim.name, adapter)

    def _slot_parameters(self, slot: str) -> dict[str, Any]:
        parameters = self._parameters.get(slot)
        if parameters is None:
            marker = f".{slot}."
            parameters = {name: value for name, value in self.model.named_parameters() if marker in name}
            self._parameters[slot] = parameters
        return parameters

    def _copy_into(self, slot: str, state: dict[str, Any]) -> None:
        """Put ``state`` (parameter name -> tensor, every LoRA tensor of the slot) into ``slot``'s parameters: a
        tensor already in their precision takes their place, any other is copied in and converted."""
        import torch

        parameters = self._slot_parameters(slot)
        with torch.no_grad():
            for name, tensor in state.items():
                parameter = parameters[name]
                if tensor.dtype == parameter.dtype and tensor.shape == parameter.shape:
                    parameter.data = tensor
                else:
                    parameter.copy_(tensor)

    def _converted_path(self, adapter: LocalAdapter) -> Path | None:
        if self.cache_dir is None or not adapter.weights or adapter.uses_dora:
            return None
        return self.cache_dir / f"{adapter.weights}-{self._dtype}.safetensors"

    def _read_converted(self, adapter: LocalAdapter) -> dict[str, Any] | None:
        """``adapter``'s weights in the base's precision from the cache, or ``None`` (not there, unreadable)."""
        from safetensors.torch import load_file

        path = self._converted_path(adapter)
        if path is None or not path.is_file():
            return None
        try:
            weights = load_file(str(path))
            os.utime(path)  # recently used: trimmed last
        except Exception as error:  # a damaged cache file only costs the conversion
            logger.warning("ignoring the cached weights of %s (%s)", adapter.label, type(error).__name__)
            return None
        if {key: tuple(tensor.shape) for key, tensor in weights.items()} != dict(adapter.shapes):
            logger.warning("ignoring the cached weights of %s (other tensors)", adapter.label)
            return None
        return weights

    def _keep_converted(self, slot: str, adapter: LocalAdapter) -> None:
        """Write ``slot``'s weights (``adapter``'s, in the base's precision) to the cache, unless they are there.
        A failure is logged, never raised: the cache only saves time."""
        from safetensors.torch import save

        path = self._converted_path(adapter)
        if path is None or path.is_file():
            return
        slot_parameters = self._slot_parameters(slot).items()
        tensors = {_file_key(name, slot): value.detach().contiguous() for name, value in slot_parameters}
        try:
            atomic_write_bytes(path, save(tensors))
            kept = sorted(self.cache_dir.glob("*.safetensors"), key=lambda file: file.stat().st_mtime, reverse=True)
            for old in kept[CACHE_FILES:]:
                old.unlink(missing_ok=True)
        except OSError as error:
            logger.warning("could not keep the converted weights of %s: %s", adapter.label, error)

    def _unload(self, entry: Loaded) -> None:
        self._parameters.pop(entry.name, None)
        del self._loaded[entry.adapter.identity]
        self.model.delete_adapter(entry.name)
        self.model.requires_grad_(False)
        self.stats.evictions += 1
        logger.info("unloaded %s (%s)", entry.adapter.label, entry.name)


@contextlib.contextmanager
def _one_torch_thread() -> Iterator[None]:
    """Run the block with one intra-op thread. Loading an adapter is hundreds of tiny tensor operations; on a busy
    2-core machine, waking a second thread for each made loads 5-8 times slower (bench_space.py). Only used under
    the registry lock, when no generation runs."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _same_tensors(old: LocalAdapter, new: LocalAdapter) -> bool:
    """True when ``new`` can be copied into ``old``'s slot: the same tensor names and shapes, neither DoRA."""
    return not old.uses_dora and not new.uses_dora and bool(old.shapes) and dict(old.shapes) == dict(new.shapes)


def _same_scaling(old: LocalAdapter, new: LocalAdapter) -> bool:
    """True when ``new``'s weights can go into ``old``'s slot without changing how the slot scales them."""
    return all(old.config.get(key) == new.config.get(key) for key in SCALING_KEYS)


def _file_key(name: str, slot: str) -> str:
    """The inverse of :func:`_slot_key`: ``…lora_A.<slot>.weight`` -> ``…lora_A.weight``."""
    return name.replace(f".{slot}.", ".", 1)


def _slot_key(key: str, slot: str) -> str:
    """A saved tensor name as it is inside the model for ``slot``: ``…lora_A.weight`` -> ``…lora_A.<slot>.weight``."""
    module, _, parameter = key.rpartition(".")
    if not module.endswith(_LORA_MATRICES):
        raise ValueError(f"{key} is not a LoRA matrix")
    return f"{module}.{slot}.{parameter}"


def _load_refusal(adapter: LocalAdapter, error: Exception) -> Refusal:
    return Refusal(
        f"{adapter.label} passed the checks but could not be loaded ({type(error).__name__}); see the Space logs."
    )


def _wrap(base_model: Any) -> Any:
    """``base_model`` in a ``PeftModel`` holding only the zero placeholder adapter (a no-op on answers)."""
    import torch
    from peft import LoraConfig, get_peft_model

    target = next(
        name
        for name, module in base_model.named_modules()
        if isinstance(module, torch.nn.Linear) and not name.endswith("lm_head")
    )
    config = LoraConfig(r=1, lora_alpha=1, target_modules=[target], init_lora_weights=True, task_type="CAUSAL_LM")
    model = get_peft_model(base_model, config, adapter_name=PLACEHOLDER)
    model.requires_grad_(False)
    model.eval()
    return model
