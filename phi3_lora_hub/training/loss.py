"""Cross-entropy through the LM head, in token chunks, for the trained positions only.

Phi-3's vocabulary is 32,064 wide: the full logits of a 2048-token batch are 263 MB in fp32 for the forward alone,
and most of them belong to prompt tokens that carry no loss. :func:`linear_cross_entropy` takes the hidden states of
the trained positions only and projects them through the LM head a chunk of tokens at a time, so at most
``chunk x vocab`` logits exist at once.

The gradient with respect to the hidden states is computed during the forward, from the same chunk of logits
(``softmax - one_hot`` times the head's weight), and only scaled in the backward. The backward therefore neither
keeps nor recomputes any logits: the LM head costs one matmul forward and one backward, not three.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# Logits held at once: chunk tokens x vocabulary. 2**25 fp32 values is 128 MiB, a 1,046-token chunk for Phi-3.
_CHUNK_ELEMENTS = 2**25


@dataclass(frozen=True)
class LossParts:
    """Sums over the trained tokens; ``loss_sum`` carries the gradient, the others are for logging."""

    loss_sum: torch.Tensor
    """Summed negative log-likelihood (divide by the token count for the mean)."""
    entropy_sum: torch.Tensor
    """Summed entropy of the predicted distributions (no gradient)."""
    correct: torch.Tensor
    """How many labels are the most likely token (no gradient)."""
    tokens: int


def _compute_dtype(hidden: torch.Tensor) -> torch.dtype:
    device = hidden.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else hidden.dtype


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, targets, chunk, compute_dtype, grad_hidden_needed, grad_weight_needed):  # type: ignore[override]
        count = hidden.shape[0]
        projection = weight.to(compute_dtype)
        float32, device = torch.float32, hidden.device
        grad_hidden = torch.empty(hidden.shape, dtype=float32, device=device) if grad_hidden_needed else None
        grad_weight = torch.zeros(weight.shape, dtype=float32, device=weight.device) if grad_weight_needed else None
        loss_sum = torch.zeros((), dtype=torch.float32, device=hidden.device)
        entropy_sum = torch.zeros((), dtype=torch.float32, device=hidden.device)
        correct = torch.zeros((), dtype=torch.int64, device=hidden.device)
        with torch.autocast(hidden.device.type, enabled=False):
            for start in range(0, count, chunk):
                end = min(start + chunk, count)
                inputs = hidden[start:end].to(compute_dtype)
                target = targets[start:end]
                logits = (inputs @ projection.t()).float()
                target_logit = logits.gather(1, target[:, None]).squeeze(1)
                correct += (logits.argmax(dim=1) == target).sum()
                log_norm = torch.logsumexp(logits, dim=1)
                loss_sum += (log_norm - target_logit).sum()
                # logits become log-probabilities, then probabilities: the softmax gradient, in place
                log_probs = logits.sub_(log_norm[:, None])
                probs = log_probs.exp()
                entropy_sum -= torch.einsum("tv,tv->", probs, log_probs)
                if grad_hidden is None and grad_weight is None:
                    continue
                probs[torch.arange(end - start, device=probs.device), target] -= 1.0
                grad_logits = probs.to(compute_dtype)
                if grad_hidden is not None:
                    grad_hidden[start:end] = grad_logits @ projection
                if grad_weight is not None:
                    grad_weight.addmm_(grad_logits.t().float(), inputs.float())
        ctx.save_for_backward(*(grad for grad in (grad_hidden, grad_weight) if grad is not None))
        ctx.has_grads = (grad_hidden is not None, grad_weight is not None)
        ctx.dtypes = (hidden.dtype, weight.dtype)
        ctx.mark_non_differentiable(entropy_sum, correct)
        return loss_sum, entropy_sum, correct

    @staticmethod
    def backward(ctx, grad_loss, *unused):  # type: ignore[override]
        saved = list(ctx.saved_tensors)
        grad_hidden = saved.pop(0).mul(grad_loss).to(ctx.dtypes[0]) if ctx.has_grads[0] else None
        grad_weight = saved.pop(0).mul(grad_loss).to(ctx.dtypes[1]) if ctx.has_grads[1] else None
        return grad_hidden, grad_weight, None, None, None, None, None


def linear_cross_entropy(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, *, chunk_tokens: int | None = None
) -> LossParts:
    """Cross-entropy of ``hidden @ weight.T`` against ``targets``, never holding more than a chunk of logits.

    ``hidden`` is ``(tokens, hidden_size)`` (the trained positions only), ``weight`` the LM head
    ``(vocab, hidden_size)``, ``targets`` ``(tokens,)``. Under autocast the projection runs in the autocast dtype
    and the softmax in float32, as the model's own head does. Equal, to float tolerance, to
    ``F.cross_entropy(hidden @ weight.T, targets, reduction="sum")``, gradients included.
    """
    chunk = chunk_tokens or max(1, _CHUNK_ELEMENTS // weight.shape[0])
    grad_enabled = torch.is_grad_enabled()
    loss_sum, entropy_sum, correct = _LinearCrossEntropy.apply(
        hidden,
        weight,
        targets,
        chunk,
        _compute_dtype(hidden),
        grad_enabled and hidden.requires_grad,
        grad_enabled and weight.requires_grad,
    )
    return LossParts(loss_sum, entropy_sum, correct, int(targets.shape[0]))
