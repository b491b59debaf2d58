"""``SampleGenerationsCallback`` in a user's own trainer: answers to plain message lists stored in each checkpoint."""

from __future__ import annotations

import pytest
from transformers import GenerationConfig

from phi3_lora_hub import ModelCardCallback, SampleGenerationsCallback
from phi3_lora_hub.errors import ConfigError
from phi3_lora_hub.evaluation.samples import SampleGenerations

PROMPTS = [
    [{"role": "user", "content": "Where is Peru?"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is a compass?"}],
]


@pytest.mark.parametrize("run", ["sft_run", "trainer_run"])
def test_each_checkpoint_stores_the_answers_to_plain_prompts_up_to_its_step(run, request, tmp_path):
    train = request.getfixturevalue(run)
    samples = SampleGenerationsCallback(PROMPTS, GenerationConfig(do_sample=False, max_new_tokens=5))
    train(tmp_path, [samples, ModelCardCallback()])
    at_2 = SampleGenerations.read(tmp_path / "checkpoint-2")
    at_4 = SampleGenerations.read(tmp_path / "checkpoint-4")
    assert [s.step for s in at_2.steps] == [0, 2] and [s.step for s in at_4.steps] == [0, 2, 4]
    assert [p.messages for p in at_4.prompts] == PROMPTS and at_4.source == "user"
    assert at_4.gen_params.max_new_tokens == 5 and at_4.gen_params.do_sample is False
    assert all(a.new_tokens <= 5 for s in at_4.steps for a in s.answers)
    card = (tmp_path / "checkpoint-4" / "README.md").read_text()
    assert "**Prompt 2:** What is a compass?" in card and "- step 4:" in card


def test_sampling_settings_are_recorded_and_the_default_is_greedy_with_64_new_tokens():
    sampled = SampleGenerationsCallback(PROMPTS, GenerationConfig(do_sample=True, temperature=0.7, top_p=0.9), seed=3)
    params = sampled.samples.gen_params
    assert (params.temperature, params.top_p, params.seed) == (0.7, 0.9, 3)
    default = SampleGenerationsCallback(PROMPTS).samples.gen_params
    assert (default.do_sample, default.max_new_tokens, default.seed) == (False, 64, 0)


def test_a_prompt_the_model_cannot_answer_is_refused():
    with pytest.raises(ConfigError, match="Sample prompt 0 must end with a user message"):
        SampleGenerationsCallback([[{"role": "assistant", "content": "Hi"}]])
