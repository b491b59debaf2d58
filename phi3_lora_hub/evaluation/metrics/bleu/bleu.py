"""Corpus BLEU of Phi-3 answers against reference answers (sacreBLEU); shipped with phi3-lora-hub, offline."""

import datasets
import evaluate

from phi3_lora_hub.evaluation import scoring

_DESCRIPTION = """
BLEU: the geometric mean of modified word n-gram precisions (orders 1 to 4) times a brevity penalty, computed
on the whole corpus by sacreBLEU with its defaults (13a tokenizer, exponential smoothing), from 0 to 100. Unlike
evaluate's canonical "bleu", it needs no download. Predictions may be raw generations or clean answers: the
text after the first Phi-3 stop token is not part of the answer.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of str): generated answers, raw or clean.
    references (list of str): one reference answer per prediction.
Returns:
    bleu (float): corpus BLEU in [0, 100].
Example:
    bleu.compute(predictions=["the cat sat on the mat"], references=["the cat sat on a mat"]) gives 53.73:
    precisions 5/6, 3/5, 2/4 and 1/3, equal lengths (no brevity penalty), (1/12) ** (1/4) = 0.5373.
"""

_CITATION = """
@inproceedings{post-2018-call,
    title = "A Call for Clarity in Reporting {BLEU} Scores",
    author = "Post, Matt",
    booktitle = "Proceedings of the Third Conference on Machine Translation: Research Papers",
    year = "2018",
    pages = "186--191",
}
"""


class Bleu(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
            codebase_urls=["https://github.com/mjpost/sacrebleu"],
            reference_urls=["https://aclanthology.org/W18-6319"],
        )

    def _compute(self, predictions, references, stop_tokens=None, **others):
        scoring.check_kwargs("bleu", others)
        return {"bleu": scoring.bleu(predictions, references, stop_tokens=scoring.stop_tokens_or_default(stop_tokens))}
