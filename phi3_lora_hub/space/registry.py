"""One base model in memory, many adapters on it: load, keep the most recently used, unload the rest.

The base is wrapped once in a ``PeftModel``; each adapter is loaded into it under its own name with
``load_adapter`` (inference mode) and unloaded with ``delete_adapter`` when more than ``capacity`` are loaded,
least recently used first. Everything that reads or changes which adapters exist, and every generation, happens
while holding :attr:`AdapterRegistry.lock` (:meth:`AdapterRegistry.use`), so an adapter can never be unloaded or
swapped under a running generation, and two requests never generate with each other's adapter.

Two PEFT facts shape this (peft 0.21.2, observed): deleting the *last* adapter leaves a ``PeftModel`` whose
``generate`` fails (its active adapter is gone), and ``delete_adapter`` marks the remaining active adapter
trainable. So the wrapper starts with a rank-1, zero-initialised placeholder adapter that is never used for
answers and never deleted (the model always holds an adapter; a failed load can always be undone), and every
parameter is frozen after each change.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from phi3_lora_hub.space.hub_adapters import AdapterKey, LocalAdapter
from phi3_lora_hub.space.refusal import Refusal

logger = logging.getLogger(__name__)

PLACEHOLDER = "__placeholder__"
BASE_NAME = "__base__"
"""PEFT's name for "no adapter" in a mixed batch (``generate(adapter_names=[...])``)."""


@dataclass(frozen=True)
class Loaded:
    """An adapter in the model: its PEFT name, and whether it can share a batch with other adapters."""

    name: str
    adapter: LocalAdapter

    @property
    def mixed_batch(self) -> bool:
        """PEFT cannot mix DoRA adapters with others in one batch."""
        return not self.adapter.uses_dora


@dataclass
class RegistryStats:
    loads: int = 0
    evictions: int = 0
    load_seconds: float = 0.0


class AdapterRegistry:
    """Adapters loaded on one base model, at most ``capacity`` of them (least recently used unloaded first)."""

    def __init__(self, base_model: Any, *, capacity: int = 4) -> None:
        if capacity < 2:
            raise ValueError(f"capacity must be >= 2 (two panes may need two adapters), got {capacity}")
        self.capacity = capacity
        self.lock = threading.RLock()
        """Held while adapters are loaded or unloaded and during every generation."""
        self.model = _wrap(base_model)
        self.stats = RegistryStats()
        self._loaded: OrderedDict[AdapterKey, Loaded] = OrderedDict()  # least recently used first
        self._counter = 0

    def loaded(self) -> list[AdapterKey]:
        """Keys of the loaded adapters, least recently used first."""
        with self.lock:
            return list(self._loaded)

    def load(self, adapter: LocalAdapter) -> Loaded:
        """Make sure ``adapter`` is loaded (it becomes the most recently used); unload others beyond capacity."""
        with self.lock:
            loaded = self._ensure(adapter)
            self._evict(keep={adapter.key})
            return loaded

    @contextlib.contextmanager
    def use(self, adapters: Sequence[LocalAdapter | None]) -> Iterator[list[Loaded | None]]:
        """Hold the lock with every one of ``adapters`` loaded (``None`` = the base); yields them in order.

        While the block runs nothing else can load, unload or generate, so the names yielded stay valid and
        mean the adapters asked for.
        """
        wanted = {adapter.key for adapter in adapters if adapter is not None}
        if len(wanted) > self.capacity:
            raise ValueError(f"{len(wanted)} adapters asked for at once, capacity is {self.capacity}")
        with self.lock:
            entries = [None if adapter is None else self._ensure(adapter) for adapter in adapters]
            self._evict(keep=wanted)
            yield entries

    def _ensure(self, adapter: LocalAdapter) -> Loaded:
        entry = self._loaded.get(adapter.key)
        if entry is not None:
            self._loaded.move_to_end(adapter.key)
            return entry
        self._counter += 1
        name = f"adapter_{self._counter}"
        started = time.perf_counter()
        try:
            self.model.load_adapter(str(adapter.directory), adapter_name=name, is_trainable=False)
        except Exception as error:
            if name in self.model.peft_config:
                self.model.delete_adapter(name)
            logger.exception("loading %s failed", adapter.label)
            raise Refusal(
                f"{adapter.label} passed the checks but could not be loaded ({type(error).__name__}); see the Space "
                "logs."
            ) from None
        finally:
            self.model.requires_grad_(False)
        self.stats.loads += 1
        self.stats.load_seconds += time.perf_counter() - started
        entry = Loaded(name, adapter)
        self._loaded[adapter.key] = entry
        logger.info("loaded %s as %s in %.2f s", adapter.label, name, time.perf_counter() - started)
        return entry

    def _evict(self, keep: set[AdapterKey]) -> None:
        for key in list(self._loaded):
            if len(self._loaded) <= self.capacity:
                break
            if key in keep:
                continue
            entry = self._loaded.pop(key)
            self.model.delete_adapter(entry.name)
            self.model.requires_grad_(False)
            self.stats.evictions += 1
            logger.info("unloaded %s (%s)", entry.adapter.label, entry.name)


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
