"""The tiny Phi-3, model loading checks, LoRA target validation, QLoRA refusal and generation stop ids."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from phi3_lora_hub import ConfigError, ModelError, Phi3LoraRecipe
from phi3_lora_hub.decoding import chat_generation_config
from phi3_lora_hub.generation import generate_replies, phi3_generation_config
from phi3_lora_hub.hardware import Hardware
from phi3_lora_hub.model.loading import load_base_model, load_tokenizer, stop_token_ids
from phi3_lora_hub.model.quantization import check_quantization
from phi3_lora_hub.model.targets import check_target_modules
from phi3_lora_hub.model.tiny import TinyPhi3Config, build_tiny_phi3

CPU = Hardware(cuda=False, bf16=False, flash_attention=False, device_name="cpu")


def test_tiny_model_has_the_real_phi3_architecture(tiny_model_dir, tiny_tokenizer):
    config = AutoConfig.from_pretrained(tiny_model_dir)
    assert config.model_type == "phi3" and config.architectures == ["Phi3ForCausalLM"]
    assert config.vocab_size > len(tiny_tokenizer) and config.vocab_size % 64 == 0
    assert config.sliding_window == 2047 and config.tie_word_embeddings is False
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    assert {"qkv_proj", "gate_up_proj", "o_proj", "down_proj"} <= names
    assert not {"q_proj", "k_proj", "v_proj", "gate_proj", "up_proj"} & names
    generation = json.loads((tiny_model_dir / "generation_config.json").read_text())
    assert generation["eos_token_id"] == stop_token_ids(tiny_tokenizer)


def test_tiny_tokenizer_behaves_like_phi3(tiny_tokenizer):
    ids = tiny_tokenizer("<|user|>\nHello<|end|>\n<|assistant|>\n", add_special_tokens=False).input_ids
    tokens = tiny_tokenizer.convert_ids_to_tokens(ids)
    assert tokens[0] == "<|user|>" and tokens[-1] == "<|assistant|>" and "<|end|>" in tokens
    assert "\n" not in "".join(tokens)  # rstrip on the added tokens swallows the newlines, as in Phi-3
    assert tiny_tokenizer.pad_token == "<unk>" and tiny_tokenizer.padding_side == "right"
    assert tiny_tokenizer.pad_token_id != tiny_tokenizer.eos_token_id


def test_tiny_model_around_the_real_tokenizer(tmp_path, real_tokenizer):
    from phi3_testing import PHI3_TOKENIZER_DIR

    directory = build_tiny_phi3(
        tmp_path / "tiny-real", config=TinyPhi3Config(pretrain_steps=0), tokenizer_path=PHI3_TOKENIZER_DIR
    )
    config = AutoConfig.from_pretrained(directory)
    assert config.vocab_size == 32064 and len(real_tokenizer) == 32011
    assert json.loads((directory / "generation_config.json").read_text())["eos_token_id"] == [32000, 32001, 32007]


def test_tiny_base_model_is_a_small_language_model(tiny_model_dir):
    from phi3_lora_hub.model.loading import load_for_inference

    model, tokenizer = load_for_inference(str(tiny_model_dir))
    reply = generate_replies(model, tokenizer, [[{"role": "user", "content": "What is the capital of Peru?"}]])[0]
    assert reply.stopped and "Lima" in reply.text


def test_non_phi3_models_are_refused(tmp_path):
    llama = LlamaForCausalLM(
        LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, vocab_size=64)
    )
    llama.save_pretrained(tmp_path / "llama")
    with pytest.raises(ModelError, match="is a 'llama' model; phi3-lora-hub trains Phi-3 models"):
        load_base_model(
            str(tmp_path / "llama"),
            revision=None,
            dtype="float32",
            attn_implementation="sdpa",
            quantization=None,
            hardware=CPU,
        )
    with pytest.raises(ModelError, match="'llama' model"):
        load_base_model(
            llama, revision=None, dtype="float32", attn_implementation="sdpa", quantization=None, hardware=CPU
        )


def test_missing_target_modules_are_named(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    check_target_modules(model, ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"])
    check_target_modules(model, "all-linear")
    with pytest.raises(ModelError, match="entry 'q_proj' matches no module.*Did you mean 'qkv_proj'"):
        check_target_modules(model, ["q_proj", "v_proj"])
    with pytest.raises(ModelError, match="entry 'gate_proj'.*Did you mean 'gate_up_proj'"):
        check_target_modules(model, ["o_proj", "gate_proj"])
    with pytest.raises(ModelError, match="regex"):
        check_target_modules(model, r".*\.nothing_here")


def test_recipe_checks_targets_before_training(tiny_model_dir):
    recipe = Phi3LoraRecipe(str(tiny_model_dir), [], lora={"target_modules": ["q_proj", "k_proj", "v_proj"]})
    with pytest.raises(ModelError, match="'q_proj'"):
        recipe.load_model()


def test_qlora_is_refused_clearly_without_a_gpu():
    with pytest.raises(ModelError, match="needs a CUDA GPU"):
        check_quantization("4bit", CPU)
    with pytest.raises(ConfigError, match="quantization must be None or '4bit'"):
        check_quantization("8bit", CPU)


@pytest.mark.parametrize("machine", ["cpu", "gpu without bitsandbytes"])
def test_qlora_train_fails_fast_before_the_tokenizer_the_data_or_the_hub(machine, monkeypatch):
    """An offline CPU user used to wait for the tokenizer download to fail; now the machine is checked first."""
    import time

    from phi3_lora_hub import recipe as recipe_module
    from phi3_lora_hub.model import quantization

    touched = []
    monkeypatch.setattr(recipe_module, "load_tokenizer", lambda *a, **k: touched.append("tokenizer"))
    monkeypatch.setattr(recipe_module, "read_rows", lambda *a, **k: touched.append("data"))
    monkeypatch.setattr("phi3_lora_hub.training.recipe_hub.publishing", lambda *a, **k: touched.append("hub"))
    recipe = Phi3LoraRecipe(
        "microsoft/Phi-3-mini-4k-instruct", "HuggingFaceH4/ultrachat_200k", quantization="4bit", hub_model_id="me/x"
    )
    expected = "needs a CUDA GPU"
    if machine != "cpu":
        recipe.hardware = Hardware(cuda=True, bf16=True, flash_attention=False, device_name="H100")
        real_find_spec = quantization.importlib.util.find_spec
        monkeypatch.setattr(
            quantization.importlib.util,
            "find_spec",
            lambda name, *a: None if name == "bitsandbytes" else real_find_spec(name, *a),
        )
        expected = r"needs bitsandbytes: pip install 'phi3-lora-hub\[qlora\]'"
    for step in (recipe.train, recipe.build_trainer):
        start = time.monotonic()
        with pytest.raises(ModelError, match=expected):
            step()
        assert time.monotonic() - start < 2
    assert touched == []


def test_qlora_recipe_fails_before_any_download():
    recipe = Phi3LoraRecipe("microsoft/Phi-3-mini-4k-instruct", [], quantization="4bit")
    with pytest.raises(ModelError, match="needs a CUDA GPU"):
        recipe.load_model()


def test_tokenizer_without_phi3_tokens_is_refused(tmp_path):
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    plain = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.WordLevel({"<unk>": 0, "a": 1}, unk_token="<unk>")), unk_token="<unk>"
    )
    plain.save_pretrained(tmp_path / "plain")
    with pytest.raises(ModelError, match="lacks the Phi-3 special tokens"):
        load_tokenizer(str(tmp_path / "plain"))


def test_embeddings_are_never_shrunk(tiny_model_dir, tiny_tokenizer):
    model = Phi3LoraRecipe(str(tiny_model_dir), []).load_model()
    assert model.get_input_embeddings().weight.shape[0] == AutoConfig.from_pretrained(tiny_model_dir).vocab_size
    assert model.config.use_cache is False


def test_generation_stops_on_end_of_turn(tiny_model_dir, tiny_tokenizer):
    config = phi3_generation_config(tiny_tokenizer)
    assert config.eos_token_id == stop_token_ids(tiny_tokenizer)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    replies = generate_replies(
        model, tiny_tokenizer, [[{"role": "user", "content": "Where is Kenya?"}]] * 3, batch_size=3
    )
    assert all(reply.stopped for reply in replies)
    assert len({reply.text for reply in replies}) == 1  # left padding: identical prompts give identical answers
    assert tiny_tokenizer.padding_side == "right"  # the caller's tokenizer is not changed


def test_sampling_is_reproducible_with_a_seed(tiny_model_dir, tiny_tokenizer):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    prompt = [[{"role": "user", "content": "Tell me something."}]]
    sampling = chat_generation_config(temperature=1.0, seed=3, max_new_tokens=12)
    first = generate_replies(model, tiny_tokenizer, prompt, sampling)
    again = generate_replies(model, tiny_tokenizer, prompt, sampling)
    assert first == again
    assert torch.get_default_dtype() == torch.float32


def test_the_tiny_model_has_a_public_name_in_the_recipe_and_the_cli(tiny_model_dir, tmp_path):
    import subprocess
    import sys

    from phi3_testing import subprocess_env

    recipe = Phi3LoraRecipe("tiny", [{"prompt": "Hi", "response": "Hello"}], output_dir=str(tmp_path / "out"))
    assert recipe.config.model == str(tiny_model_dir)
    (tmp_path / "recipe.yaml").write_text("model: tiny\ndataset: chats.jsonl\n")
    assert Phi3LoraRecipe.from_yaml(tmp_path / "recipe.yaml").config.model == str(tiny_model_dir)
    done = subprocess.run(
        [sys.executable, "-m", "phi3_lora_hub", "tiny"], capture_output=True, text=True, env=subprocess_env()
    )
    assert done.returncode == 0 and done.stdout.strip() == str(tiny_model_dir)


def test_building_the_tiny_model_shows_a_progress_bar_on_a_terminal(tmp_path, monkeypatch):
    import tqdm.auto

    bars = []
    real = tqdm.auto.tqdm
    monkeypatch.setattr(tqdm.auto, "tqdm", lambda *a, **k: bars.append(k) or real(*a, **k))
    config = TinyPhi3Config(hidden_size=32, intermediate_size=64, num_hidden_layers=1, pretrain_steps=2)
    build_tiny_phi3(tmp_path / "quiet", config=config)
    build_tiny_phi3(tmp_path / "shown", config=config, progress=True)
    pretraining = [bar for bar in bars if bar.get("desc") == "Building the tiny Phi-3"]
    assert [bar["disable"] for bar in pretraining] == [True, None]  # None: tqdm shows it on a terminal only


def test_a_base_model_loads_on_a_machine_without_the_kernels_package(tiny_model_dir, monkeypatch):
    # transformers 5 requests Hub kernels by default and raises where `kernels` is absent (the lent H200 of issue 16)
    import transformers.modeling_utils
    import transformers.utils

    monkeypatch.setattr(transformers.utils, "is_kernels_available", lambda *args, **kwargs: False)
    monkeypatch.setattr(transformers.modeling_utils, "is_kernels_available", lambda *args, **kwargs: False)
    model = load_base_model(
        str(tiny_model_dir), revision=None, dtype="float32", attn_implementation="sdpa", quantization=None, hardware=CPU
    )
    assert model.config.model_type == "phi3"
