"""ROUGE-L F1 of Phi-3 answers against reference answers; shipped with phi3-lora-hub, loads with no network."""

import datasets
import evaluate

from phi3_lora_hub.evaluation import scoring

_DESCRIPTION = """
ROUGE-L: the F1 of the longest common subsequence of words between an answer and its reference, averaged over
pairs (0 to 1). Predictions may be raw generations (special tokens kept) or clean answers: the text after the
first Phi-3 stop token is not part of the answer. Words are rouge_score's tokens (lowercased ASCII letters and
digits), so answers in non-Latin scripts score 0: use chrf for those.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of str): generated answers, raw or clean.
    references (list of str): one reference answer per prediction.
    use_stemmer (bool, default False): apply the Porter stemmer to words before matching.
Returns:
    rougeL (float): mean ROUGE-L F1 in [0, 1].
Example:
    rouge_l.compute(predictions=["the cat sat on the mat"], references=["the cat is on the mat"])
    gives rougeL = 5/6 (common subsequence "the cat on the mat", 5 of 6 words on each side).
"""

_CITATION = """
@inproceedings{lin-2004-rouge,
    title = "{ROUGE}: A Package for Automatic Evaluation of Summaries",
    author = "Lin, Chin-Yew",
    booktitle = "Text Summarization Branches Out",
    year = "2004",
    publisher = "Association for Computational Linguistics",
    pages = "74--81",
}
"""


class RougeL(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
            codebase_urls=["https://github.com/google-research/google-research/tree/master/rouge"],
            reference_urls=["https://aclanthology.org/W04-1013"],
        )

    def _compute(self, predictions, references, use_stemmer=False, stop_tokens=None, **others):
        scoring.check_kwargs("rouge_l", others)
        return {
            "rougeL": scoring.rouge_l(
                predictions,
                references,
                use_stemmer=use_stemmer,
                stop_tokens=scoring.stop_tokens_or_default(stop_tokens),
            )
        }
