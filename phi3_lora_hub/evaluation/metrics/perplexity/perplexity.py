"""Perplexity of the evaluated model on assistant tokens; shipped with phi3-lora-hub, loads with no network."""

import datasets
import evaluate

from phi3_lora_hub.evaluation.perplexity import assistant_perplexity
from phi3_lora_hub.evaluation.scoring import check_kwargs

_DESCRIPTION = """
Perplexity of the model being evaluated (pass it as model=; a PeftModel with its adapter active or disabled
works) on reference conversations, counting only the tokens training teaches: each assistant answer and the
<|end|> closing it. It is exp(total negative log-likelihood / total scored tokens) over the whole set. Unlike
evaluate's canonical "perplexity", no separate scoring model is downloaded: the evaluated model scores itself.
"""

_KWARGS_DESCRIPTION = """
Args:
    conversations (list of list of {"role", "content"}): full conversations, reference answers included.
    model: the causal LM to score (PreTrainedModel or PeftModel), on any device.
    tokenizer: its fast tokenizer (Phi-3 special tokens).
    batch_size (int, default 4): conversations per forward pass.
    max_length (int, optional): keep only the first max_length tokens of each conversation, as training does.
    assistant_only (bool, default True): False scores every token of the conversation.
    progress (bool, default False): show a progress bar.
Returns:
    perplexity (float), mean_nll (float, nats per token), scored_tokens (int),
    perplexities (list of float): one per conversation.
"""


class Perplexity(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "conversations": datasets.List(
                        {"role": datasets.Value("string"), "content": datasets.Value("string")}
                    )
                }
            ),
        )

    def _compute(
        self,
        conversations,
        model=None,
        tokenizer=None,
        batch_size=4,
        max_length=None,
        assistant_only=True,
        progress=False,
        **others,
    ):
        check_kwargs("perplexity", others)
        if model is None or tokenizer is None:
            raise ValueError("perplexity needs the evaluated model and its tokenizer: compute(..., model=, tokenizer=)")
        result = assistant_perplexity(
            model,
            tokenizer,
            conversations,
            batch_size=batch_size,
            max_length=max_length,
            assistant_only=assistant_only,
            progress=progress,
        )
        return {
            "perplexity": result.perplexity,
            "mean_nll": result.mean_nll,
            "scored_tokens": result.scored_tokens,
            "perplexities": result.per_conversation,
        }
