"""Sample generations stored with every checkpoint, and what they say."""

from __future__ import annotations

import pytest
from transformers import TrainerState

from phi3_lora_hub.callbacks.sample_generations import SampleGenerationsCallback
from phi3_lora_hub.errors import ConfigError
from phi3_lora_hub.evaluation.samples import SampleGenerations
from phi3_lora_hub.run_file_names import SAMPLES_FILE


def test_each_checkpoint_stores_the_answers_up_to_its_step(trained_run):
    at_15 = SampleGenerations.read(trained_run.output_dir / "checkpoint-15")
    at_30 = SampleGenerations.read(trained_run.output_dir / "checkpoint-30")
    final = SampleGenerations.read(trained_run.adapter_dir)
    assert [s.step for s in at_15.steps] == [0, 15]
    assert [s.step for s in at_30.steps] == [0, 15, 30]
    assert at_15.step == 15 and at_30.step == 30
    assert final.steps == at_30.steps
    assert at_15.source == "eval split" and len(at_15.prompts) == 2
    assert at_15.gen_params.max_new_tokens == 16
    # Prompts are held-out conversations cut before their last answer, which is kept as the reference.
    assert at_15.prompts[0].messages[-1]["role"] == "user" and at_15.prompts[0].reference
    for entry in at_30.steps:
        assert len(entry.answers) == 2
        assert all(answer.finish_reason in ("stop", "length") for answer in entry.answers)


def test_stored_answers_are_what_each_checkpoint_says(trained_run, tiny_model_dir):
    """Reload the base and the step-15 checkpoint from disk: they answer exactly what was stored."""
    from phi3_lora_hub.generation import generate_replies
    from phi3_lora_hub.model.loading import load_for_inference

    stored = SampleGenerations.read(trained_run.output_dir / "checkpoint-15")
    prompts = [prompt.messages for prompt in stored.prompts]
    for step, adapter in ((0, None), (15, trained_run.output_dir / "checkpoint-15")):
        model, tokenizer = load_for_inference(str(tiny_model_dir), adapter)
        answers = generate_replies(model, tokenizer, prompts, stored.gen_params, batch_size=len(prompts))
        expected = next(s for s in stored.steps if s.step == step).answers
        assert [a.text for a in answers] == [a.text for a in expected], f"step {step}"
        assert [a.new_tokens for a in answers] == [a.new_tokens for a in expected]
    # Training changed the answers.
    assert [a.text for a in stored.steps[0].answers] != [a.text for a in stored.steps[1].answers]


def test_markdown_shows_every_step_per_prompt(trained_run):
    samples = SampleGenerations.read(trained_run.adapter_dir)
    text = samples.markdown()
    assert text.count("**Prompt") == 2
    assert "step 0 (base)" in text and "step 15:" in text and "step 30:" in text
    assert samples.markdown(last=1).count("step ") == 2  # only step 30, once per prompt


def test_user_prompts_and_switching_it_off(tiny_model_dir):
    from phi3_lora_hub import Phi3LoraRecipe
    from phi3_lora_hub.data.sample import sample_conversations
    from phi3_lora_hub.training.recipe_evaluation import sample_callback

    recipe = Phi3LoraRecipe(
        str(tiny_model_dir),
        sample_conversations(8),
        evaluation={"sample_prompts": ["Where is Peru?", [{"role": "user", "content": "Hi"}]], "num_samples": 5},
    )
    data = recipe.prepare_data()
    callback = sample_callback(recipe.config.evaluation, data.train, data.eval, recipe.load_tokenizer(), None)
    assert callback.samples.source == "user"
    assert [p.messages for p in callback.samples.prompts] == [
        [{"role": "user", "content": "Where is Peru?"}],
        [{"role": "user", "content": "Hi"}],
    ]
    # Without eval data the prompts come from the training data.
    recipe = Phi3LoraRecipe(str(tiny_model_dir), sample_conversations(8), evaluation={"num_samples": 1})
    data = recipe.prepare_data()
    callback = sample_callback(recipe.config.evaluation, data.train, data.eval, recipe.load_tokenizer(), None)
    assert callback.samples.source == "train split" and len(callback.samples.prompts) == 1
    off = Phi3LoraRecipe(str(tiny_model_dir), sample_conversations(8), evaluation={"num_samples": 0})
    data = off.prepare_data()
    assert sample_callback(off.config.evaluation, data.train, data.eval, off.load_tokenizer(), None) is None
    with pytest.raises(ConfigError, match="end with a user message"):
        Phi3LoraRecipe(
            str(tiny_model_dir),
            sample_conversations(8),
            evaluation={"sample_prompts": [[{"role": "assistant", "content": "Hi"}]]},
        )


def test_callback_runs_on_the_main_process_only_and_once_per_step(tmp_path, tiny_model_dir, monkeypatch):
    from transformers import GenerationConfig, TrainerControl, TrainingArguments

    from phi3_lora_hub.callbacks import sample_generations as samples_module
    from phi3_lora_hub.model.loading import load_for_inference

    calls = []
    real = samples_module.generate_replies
    monkeypatch.setattr(samples_module, "generate_replies", lambda *a, **k: calls.append(1) or real(*a, **k))

    model, tokenizer = load_for_inference(str(tiny_model_dir))
    callback = SampleGenerationsCallback(
        [[{"role": "user", "content": "Where is Peru?"}]], GenerationConfig(max_new_tokens=4)
    )
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    worker = TrainerState(global_step=5, is_world_process_zero=False)
    callback.on_save(args, worker, TrainerControl(), model=model, processing_class=tokenizer)
    assert not (tmp_path / "checkpoint-5" / SAMPLES_FILE).exists() and callback.samples.steps == []
    main = TrainerState(global_step=5, is_world_process_zero=True)
    callback.on_evaluate(args, main, TrainerControl(), model=model, processing_class=tokenizer)
    callback.on_save(args, main, TrainerControl(), model=model, processing_class=tokenizer)
    assert [s.step for s in SampleGenerations.read(tmp_path / "checkpoint-5").steps] == [5]
    assert len(calls) == 1  # the evaluation and the save at the same step share one generation


def test_training_goes_on_without_samples_when_truncation_leaves_no_complete_answer(small_base, tmp_path, caplog):
    """Every answer is longer than max_length: no sample prompt and no evaluation example qualify, yet training
    runs; the log says once why there are no samples, and so do the checkpoint, the adapter and its card."""
    import logging

    from phi3_lora_hub import Phi3LoraRecipe

    long_answer = " ".join(["The sol is the currency of Peru and it is used everywhere."] * 8)
    rows = [{"prompt": f"Question {i}?", "response": long_answer} for i in range(10)]
    recipe = Phi3LoraRecipe(
        str(small_base),
        rows,
        output_dir=str(tmp_path / "out"),
        eval_size=2,
        training={"max_steps": 1, "max_length": 24, "per_device_train_batch_size": 2, "save_steps": 1},
        evaluation={"max_new_tokens": 4, "sample_max_new_tokens": 4},
        lora={"r": 2},
    )
    with caplog.at_level(logging.INFO):
        result = recipe.train()
    assert result.global_step == 1 and (result.adapter_dir / "adapter_model.safetensors").is_file()
    notes = [r.getMessage() for r in caplog.records if r.getMessage().startswith("No sample answers")]
    assert len(notes) == 1 and "max_length=24" in notes[0], notes
    assert any("evaluation after training is skipped" in r.getMessage() for r in caplog.records)
    for directory in (result.output_dir / "checkpoint-1", result.adapter_dir):
        stored = SampleGenerations.read(directory)
        assert stored.prompts == [] and "complete assistant answer within max_length=24" in stored.note
    card = (result.adapter_dir / "README.md").read_text()
    assert "No sample answers: none of the first" in card and "up to step None" not in card
