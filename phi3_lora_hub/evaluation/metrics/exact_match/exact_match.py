"""Exact match of Phi-3 answers with reference answers; shipped with phi3-lora-hub, loads with no network."""

import datasets
import evaluate

from phi3_lora_hub.evaluation import scoring

_DESCRIPTION = """
Exact match: the fraction of answers equal to their reference once whitespace is collapsed and both ends are
stripped (optionally ignoring case and ASCII punctuation), from 0 to 1. Predictions may be raw generations or
clean answers: the text after the first Phi-3 stop token is not part of the answer.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of str): generated answers, raw or clean.
    references (list of str): one reference answer per prediction.
    ignore_case (bool, default False): compare case-folded text.
    ignore_punctuation (bool, default False): drop ASCII punctuation before comparing.
Returns:
    exact_match (float): fraction of exact matches in [0, 1].
Example:
    exact_match.compute(predictions=["Paris.<|end|>", "rome"], references=["Paris.", "Rome"]) gives 0.5.
"""


class ExactMatch(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(
        self, predictions, references, ignore_case=False, ignore_punctuation=False, stop_tokens=None, **others
    ):
        scoring.check_kwargs("exact_match", others)
        value = scoring.exact_match(
            predictions,
            references,
            ignore_case=ignore_case,
            ignore_punctuation=ignore_punctuation,
            stop_tokens=scoring.stop_tokens_or_default(stop_tokens),
        )
        return {"exact_match": value}
