"""Corpus chrF of Phi-3 answers against reference answers (sacreBLEU); shipped with phi3-lora-hub, offline."""

import datasets
import evaluate

from phi3_lora_hub.evaluation import scoring

_DESCRIPTION = """
chrF: an F-score (beta 2, recall weighted twice) over character n-grams of orders 1 to 6, computed on the whole
corpus by sacreBLEU with its defaults (whitespace ignored, no word n-grams), from 0 to 100. Character n-grams
suit short chat answers and any script. Predictions may be raw generations or clean answers: the text after
the first Phi-3 stop token is not part of the answer.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of str): generated answers, raw or clean.
    references (list of str): one reference answer per prediction.
Returns:
    chrf (float): corpus chrF in [0, 100].
Example:
    chrf.compute(predictions=["abc"], references=["abd"]) gives 38.89: precision and recall are 2/3, 1/2 and 0
    for orders 1 to 3 (longer orders have no n-grams), both average 7/18, and F2 of two equal values is that value.
"""

_CITATION = """
@inproceedings{popovic-2015-chrf,
    title = "chr{F}: character n-gram {F}-score for automatic {MT} evaluation",
    author = "Popovi{\\'c}, Maja",
    booktitle = "Proceedings of the Tenth Workshop on Statistical Machine Translation",
    year = "2015",
    pages = "392--395",
}
"""


class Chrf(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
            codebase_urls=["https://github.com/mjpost/sacrebleu"],
            reference_urls=["https://aclanthology.org/W15-3049"],
        )

    def _compute(self, predictions, references, stop_tokens=None, **others):
        scoring.check_kwargs("chrf", others)
        return {"chrf": scoring.chrf(predictions, references, stop_tokens=scoring.stop_tokens_or_default(stop_tokens))}
