"""Mean length of Phi-3 answers; shipped with phi3-lora-hub, loads with no network."""

import datasets
import evaluate

from phi3_lora_hub.evaluation import scoring

_DESCRIPTION = """
Mean answer length, in whitespace-separated words and in characters, and in tokens when a tokenizer is given.
Length matters when comparing fine-tunes: a style change often shows up as longer or shorter answers, and
overlap metrics reward length differently. Predictions may be raw generations or clean answers: the text after
the first Phi-3 stop token is not part of the answer.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of str): generated answers, raw or clean.
    tokenizer (optional): a tokenizer to also count tokens (no special tokens added).
Returns:
    mean_answer_words (float), mean_answer_chars (float), and mean_answer_tokens (float) with a tokenizer.
Example:
    answer_length.compute(predictions=["Paris is nice.", "Yes<|end|>"]) gives 2.0 words and 8.5 characters.
"""


class AnswerLength(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("string")}),
        )

    def _compute(self, predictions, tokenizer=None, stop_tokens=None, **others):
        scoring.check_kwargs("answer_length", others)
        return scoring.answer_length(
            predictions, tokenizer=tokenizer, stop_tokens=scoring.stop_tokens_or_default(stop_tokens)
        )
