"""Stop rate of Phi-3 generations; shipped with phi3-lora-hub, loads with no network."""

import datasets
import evaluate

from phi3_lora_hub.evaluation import scoring

_DESCRIPTION = """
Stop rate: the fraction of generations in which the model ended its turn by itself, writing one of Phi-3's stop
tokens (<|end|>, <|endoftext|>, <|assistant|>) before max_new_tokens cut it off. A fine-tune trained without
its <|end|> labels "never stops": it rambles on to the token limit, and its stop rate falls towards 0.
Predictions must be raw generations, decoded with skip_special_tokens=False: a cleaned answer has no stop token.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of str): raw generations (special tokens kept).
    stop_tokens (list of str, optional): the tokens that end a turn; Phi-3's three by default.
Returns:
    stop_rate (float): fraction in [0, 1].
Example:
    stop_rate.compute(predictions=["Paris.<|end|>", "Paris. Paris. Paris."]) gives 0.5.
"""


class StopRate(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("string")}),
        )

    def _compute(self, predictions, stop_tokens=None, **others):
        scoring.check_kwargs("stop_rate", others)
        return {"stop_rate": scoring.stop_rate(predictions, stop_tokens=scoring.stop_tokens_or_default(stop_tokens))}
