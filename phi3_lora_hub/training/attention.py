"""Exact SDPA attention for padding-free batches, at the cost of each sequence alone.

A padding-free batch is one row of concatenated sequences with per-sequence ``position_ids``. Transformers' stock
``sdpa`` path keeps the sequences apart with a block-diagonal ``(T, T)`` mask, so it computes (and masks away) the
scores between every pair of tokens in the row: ``T**2`` work and memory instead of the ``sum(L_i**2)`` the
sequences need. :func:`varlen_sdpa_attention` runs causal SDPA on each sequence separately instead (the same
boundaries FlashAttention's varlen kernels use), so nothing crosses a sequence boundary by construction.

Everything that is not a padding-free training forward (padded batches with an ``attention_mask``, generation with a
cache) goes to the stock ``sdpa`` implementation unchanged.

The per-sequence loop pays off where attention kernels are cheap to launch and the ``T**2`` work is the cost (CPU).
On CUDA it launches a kernel per sequence per layer, forward and backward, and slices the batch apart and back
together, which measured 0.35x TRL's padding-free batches on an H200 (issue 16 item 4): there the stock ``sdpa``
path, one call per layer over the whole packed row, is used instead (:func:`per_sequence_attention_pays`).
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import torch
import torch.nn.functional as F

VARLEN_SDPA = "phi3_lora_hub_varlen_sdpa"
"""Name under which the attention and its mask function are registered with transformers."""


def sequence_bounds(
    query_length: int, cu_seq_lens: torch.Tensor | None, positions: torch.Tensor | None
) -> list[int] | None:
    """Start offsets of the sequences in one row, followed by the row length; ``None`` if they cannot be told.

    ``cu_seq_lens`` (from TRL's padding-free collator) wins; otherwise a new sequence starts wherever the 1-D
    ``positions`` do not continue by one, as in ``transformers.masking_utils.find_packed_sequence_indices``;
    with neither, the row is one sequence.
    """
    if cu_seq_lens is not None:
        bounds = [int(value) for value in cu_seq_lens.tolist()]
        return bounds if bounds and bounds[0] == 0 and bounds[-1] == query_length else None
    if positions is None:
        return [0, query_length]
    if positions.dim() != 1 or positions.shape[0] != query_length:
        return None
    starts = (positions[1:] != positions[:-1] + 1).nonzero().flatten() + 1
    return [0, *starts.tolist(), query_length]


class _LastBounds:
    """The bounds of the last batch seen, keyed by the identity of its index tensors (held here, so no other tensor
    can take their identity). Every layer of a forward gets the same ``cu_seq_lens_q`` and ``position_ids``
    objects: only the first layer reads them back from the GPU, a device sync that stalls the kernel queue."""

    tensors: tuple[Any, ...] = ()
    shape: tuple[int, int] = (0, 0)
    bounds: list[list[int]] = []  # noqa: RUF012 (replaced, never mutated)


def _row_bounds(batch: int, length: int, kwargs: dict[str, Any]) -> list[list[int]]:
    """Sequence bounds of every row of the batch (memoised per batch, see :class:`_LastBounds`)."""
    tensors = (kwargs.get("cu_seq_lens_q"), kwargs.get("position_ids"))
    same = len(_LastBounds.tensors) == 2 and all(a is b for a, b in zip(tensors, _LastBounds.tensors, strict=True))
    if not same or _LastBounds.shape != (batch, length):
        _LastBounds.bounds = _read_row_bounds(batch, length, kwargs)
        _LastBounds.tensors, _LastBounds.shape = tensors, (batch, length)
    return _LastBounds.bounds


def _read_row_bounds(batch: int, length: int, kwargs: dict[str, Any]) -> list[list[int]]:
    """Sequence bounds of every row of the batch; raises when the position ids cannot be read per row."""
    positions = kwargs.get("position_ids")
    if positions is not None and (positions.dim() != 2 or positions.shape[0] not in (1, batch)):
        raise ValueError(f"position_ids of shape {tuple(positions.shape)} do not fit a batch of {batch} rows")
    rows = []
    for row in range(batch):
        row_positions = None if positions is None else positions[row if positions.shape[0] > 1 else 0]
        bounds = sequence_bounds(length, kwargs.get("cu_seq_lens_q") if batch == 1 else None, row_positions)
        if bounds is None:  # cu_seq_lens that do not cover the row: trust the position ids instead
            bounds = sequence_bounds(length, None, row_positions)
        if bounds is None:
            raise ValueError(f"position_ids of shape {tuple(positions.shape)} do not fit rows of {length} tokens")
        rows.append(bounds)
    return rows


def _band_mask(length: int, window: int, device: torch.device) -> torch.Tensor:
    """Causal mask limited to the last ``window`` keys (Phi-3's sliding window: ``q - kv < window``)."""
    index = torch.arange(length, device=device)
    distance = index[:, None] - index[None, :]
    return (distance >= 0) & (distance < window)


def varlen_sdpa_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    sliding_window: int | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Attention with the ``AttentionInterface`` signature; output ``(batch, seq, heads, head_dim)``.

    Without a padding mask and without a cache, each sequence of each row (told apart by ``cu_seq_lens_q`` or by
    ``position_ids``) attends causally, within the sliding window, to itself only; any other call is delegated to
    transformers' ``sdpa_attention_forward``.
    """
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    length = query.shape[2]
    if attention_mask is not None or key.shape[2] != length or length == 1:
        return sdpa_attention_forward(
            module,
            query,
            key,
            value,
            attention_mask,
            dropout=dropout,
            scaling=scaling,
            sliding_window=sliding_window,
            **kwargs,
        )
    groups = getattr(module, "num_key_value_groups", 1)
    outputs = []
    for row, bounds in enumerate(_row_bounds(query.shape[0], length, kwargs)):
        pieces = []
        for start, end in pairwise(bounds):
            span = end - start
            if span <= 0:
                continue
            mask = _band_mask(span, sliding_window, query.device) if sliding_window and span > sliding_window else None
            pieces.append(
                F.scaled_dot_product_attention(
                    query[row : row + 1, :, start:end],
                    key[row : row + 1, :, start:end],
                    value[row : row + 1, :, start:end],
                    attn_mask=mask,
                    dropout_p=dropout,
                    is_causal=mask is None,
                    scale=scaling,
                    enable_gqa=groups > 1,
                )
            )
        outputs.append(pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=2))
    output = outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=0)
    return output.transpose(1, 2).contiguous(), None


def per_sequence_attention_pays(device: torch.device) -> bool:
    """True where :func:`varlen_sdpa_attention` is faster than transformers' stock ``sdpa`` over the packed row:
    everywhere but CUDA, where one fused kernel per layer beats a launch per sequence (module docstring).
    Both are exact: transformers' ``sdpa`` masks packed sequences apart from their ``position_ids``."""
    return device.type != "cuda"


def varlen_sdpa_mask(*args: Any, **kwargs: Any) -> torch.Tensor | None:
    """Mask function for :data:`VARLEN_SDPA`: no mask when the attention can derive it, else the ``sdpa`` one.

    A training forward without a padding mask and without a cache needs no ``(T, T)`` mask: the attention
    isolates the sequences itself. Everything else (padding masks, cached generation) gets the stock mask.
    """
    from transformers.masking_utils import sdpa_mask

    no_padding = kwargs.get("attention_mask") is None
    no_cache = kwargs.get("q_offset", 0) == 0 and kwargs.get("kv_offset", 0) == 0
    if not args and no_padding and no_cache and kwargs.get("q_length") == kwargs.get("kv_length"):
        return None
    return sdpa_mask(*args, **kwargs)


def register_varlen_sdpa() -> str:
    """Register :data:`VARLEN_SDPA` with transformers (idempotent) and return its name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(VARLEN_SDPA, varlen_sdpa_attention)
    AttentionMaskInterface.register(VARLEN_SDPA, varlen_sdpa_mask)
    return VARLEN_SDPA
