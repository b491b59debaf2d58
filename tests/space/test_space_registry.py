"""One base model, many adapters: LRU loading, streaming both panes in one batch, and never the wrong adapter."""

from __future__ import annotations

import queue
import random
import threading
import time

import pytest

from phi3_lora_hub.decoding import chat_generation_config
from phi3_lora_hub.space.base_model import load_base
from phi3_lora_hub.space.compat import BaseSignature
from phi3_lora_hub.space.hub_adapters import AdapterSource
from phi3_lora_hub.space.refusal import Refusal
from phi3_lora_hub.space.registry import AdapterRegistry
from phi3_lora_hub.space.repo_policy import AllowList
from phi3_lora_hub.space.streaming import RowStreamer, SideRequest, stream_pair

PROMPTS = ["What currency is used in Peru?", "What is the capital of Japan?", "Where is Kenya?"]
PARAMS = chat_generation_config(max_new_tokens=24)
MODELS = ("base", "main", "step-4", "terse")


def chat(question: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": question}]


@pytest.fixture(scope="module")
def fetched(tiny_model_dir, hub_adapters):
    """The test adapters fetched from the local Hub once (base signature from a plain load of the tiny base)."""
    from space_testing import hub_reachable
    from transformers import AutoModelForCausalLM

    signature = BaseSignature.of(AutoModelForCausalLM.from_pretrained(tiny_model_dir), [str(tiny_model_dir)])
    source = AdapterSource(signature, AllowList.of(["tester/*"]))
    with hub_reachable():
        return {
            "base": None,
            "main": source.fetch(hub_adapters.compass.repo_id, "main"),
            "step-4": source.fetch(hub_adapters.compass.repo_id, "step-4"),
            "terse": source.fetch(hub_adapters.terse.repo_id, "main"),
        }


@pytest.fixture(scope="module")
def expected(tiny_model_dir, trained_adapters) -> dict[str, list[str]]:
    """Each model's answers to PROMPTS, from the evaluation code with that adapter loaded alone."""
    from space_testing import alone_answers

    folders = {
        "base": None,
        "main": trained_adapters.compass,
        "step-4": trained_adapters.checkpoint(4),
        "terse": trained_adapters.terse,
    }
    return {
        name: alone_answers(tiny_model_dir, folder, PROMPTS, PARAMS.max_new_tokens) for name, folder in folders.items()
    }


def serve(tiny_model_dir, capacity: int = 4):
    base = load_base(str(tiny_model_dir), dtype="float32")
    return base, AdapterRegistry(base.model, capacity=capacity)


def final(progress_iterator) -> list:
    *_, last = progress_iterator
    return last


def test_the_four_models_answer_differently(expected):
    for index in range(len(PROMPTS)):
        assert len({expected[name][index] for name in MODELS}) >= 3
    assert all(answer.endswith("Safe travels!") for answer in expected["main"])
    assert not any("Safe travels!" in answer for answer in expected["base"])


@pytest.mark.parametrize(
    ("left", "right"), [("base", "main"), ("main", "terse"), ("terse", "step-4"), ("main", "main")]
)
def test_both_panes_answer_in_one_batch_as_each_model_does_alone(tiny_model_dir, fetched, expected, left, right):
    base, registry = serve(tiny_model_dir)
    for index, question in enumerate(PROMPTS):
        sides = [SideRequest(chat(question), fetched[left]), SideRequest(chat(question), fetched[right])]
        result = final(stream_pair(base, registry, sides, PARAMS))
        assert [side.text for side in result] == [expected[left][index], expected[right][index]]
        assert all(side.finish_reason in ("stop", "length") and side.latency_s > 0 for side in result)


def test_panes_with_histories_of_different_lengths_share_the_batch(tiny_model_dir, fetched, expected):
    """Left padding: a long conversation in one pane does not change the other pane's answer."""
    base, registry = serve(tiny_model_dir)
    history = [*chat(PROMPTS[1]), {"role": "assistant", "content": "Tokyo is the capital of Japan."}]
    long = SideRequest([{"role": "system", "content": "You are Compass."}, *history, *chat(PROMPTS[0])], None)
    short = SideRequest(chat(PROMPTS[0]), fetched["main"])
    result = final(stream_pair(base, registry, [long, short], PARAMS))
    assert result[1].text == expected["main"][0]
    assert result[0].text  # the base answered its own conversation


def test_least_recently_used_adapter_is_unloaded(tiny_model_dir, fetched):
    _, registry = serve(tiny_model_dir, capacity=2)
    main, early, terse = fetched["main"], fetched["step-4"], fetched["terse"]
    registry.load(main)
    registry.load(early)
    registry.load(main)  # main is now the most recently used
    registry.load(terse)  # same tensors as step-4: copied into its slot in place
    assert registry.loaded() == [main.key, terse.key]
    assert (registry.stats.loads, registry.stats.swaps, registry.stats.evictions) == (2, 1, 1)
    assert len(registry.model.peft_config) == 3  # the placeholder + two slots
    assert not any(p.requires_grad for p in registry.model.parameters())
    with registry.use([early, terse]) as entries:  # main goes, early comes back
        assert [entry.adapter.key for entry in entries] == [early.key, terse.key]
    assert registry.loaded() == [early.key, terse.key]
    assert not any(p.requires_grad for p in registry.model.parameters())


def test_concurrent_requests_never_answer_with_the_wrong_adapter(tiny_model_dir, fetched, expected):
    """Twelve threads, random pairs, room for only two adapters: loading and unloading all the time."""
    base, registry = serve(tiny_model_dir, capacity=2)
    rng = random.Random(7)
    jobs = [(rng.choice(MODELS), rng.choice(MODELS), rng.randrange(len(PROMPTS))) for _ in range(12)]
    results: dict[int, list[str]] = {}

    def run(number: int, left: str, right: str, index: int) -> None:
        sides = [SideRequest(chat(PROMPTS[index]), fetched[left]), SideRequest(chat(PROMPTS[index]), fetched[right])]
        results[number] = [side.text for side in final(stream_pair(base, registry, sides, PARAMS))]

    threads = [threading.Thread(target=run, args=(n, *job)) for n, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    for number, (left, right, index) in enumerate(jobs):
        assert results[number] == [expected[left][index], expected[right][index]], jobs[number]
    assert registry.stats.swaps > 0


def test_an_adapter_of_another_shape_replaces_the_oldest_by_unloading_it(
    tiny_model_dir, fetched, expected, tmp_path, hub
):
    """Different ranks cannot be copied into a slot: the oldest adapter is deleted and the newcomer loaded."""
    from huggingface_hub import HfApi
    from peft import LoraConfig, get_peft_model
    from space_testing import alone_answers
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    config = LoraConfig(r=2, lora_alpha=8, target_modules=["qkv_proj"], init_lora_weights=False)
    get_peft_model(model, config).save_pretrained(tmp_path / "small")
    HfApi().create_repo("tester/space-small-rank", exist_ok=True)
    HfApi().upload_folder(folder_path=str(tmp_path / "small"), repo_id="tester/space-small-rank")
    base, registry = serve(tiny_model_dir, capacity=2)
    small = AdapterSource(base.signature, AllowList.of(["tester/*"])).fetch("tester/space-small-rank")
    registry.load(fetched["main"])
    registry.load(fetched["step-4"])
    registry.load(small)
    assert registry.loaded() == [fetched["step-4"].key, small.key]
    assert (registry.stats.loads, registry.stats.swaps, registry.stats.evictions) == (3, 0, 1)
    alone = alone_answers(tiny_model_dir, tmp_path / "small", PROMPTS[:1], PARAMS.max_new_tokens)
    sides = [SideRequest(chat(PROMPTS[0]), small), SideRequest(chat(PROMPTS[0]), fetched["main"])]
    assert [s.text for s in final(stream_pair(base, registry, sides, PARAMS))] == [alone[0], expected["main"][0]]
    assert registry.stats.swaps == 1  # main came back into step-4's slot, in place


def test_closing_the_stream_stops_generation_and_frees_the_model(tiny_model_dir, fetched):
    base, registry = serve(tiny_model_dir)
    params = chat_generation_config(max_new_tokens=400, temperature=1.0, seed=1)
    long_answer = [{"role": "user", "content": "Please write a poem about the sea."}]
    stream = stream_pair(base, registry, [SideRequest(long_answer, None), SideRequest(long_answer, None)], params)
    first = next(stream)
    started = time.monotonic()
    stream.close()
    assert registry.lock.acquire(timeout=10), "the generation thread kept the model"
    registry.lock.release()
    assert time.monotonic() - started < 10
    assert all(not side.finished for side in first)


def test_a_conversation_longer_than_the_context_is_refused(tiny_model_dir):
    base = load_base(str(tiny_model_dir), dtype="float32", max_context_tokens=40)
    registry = AdapterRegistry(base.model)
    sides = [SideRequest(chat("Where is Kenya? " * 10), None)] * 2
    with pytest.raises(Refusal, match="would not fit the model's 40-token window"):
        next(stream_pair(base, registry, sides, PARAMS))


def test_a_failed_load_leaves_the_model_as_it_was(tiny_model_dir, fetched, expected):
    base, registry = serve(tiny_model_dir)
    original = registry.model.load_adapter

    def load_then_fail(*args, **kwargs):
        original(*args, **kwargs)
        raise RuntimeError("simulated failure after the adapter's layers were added")

    registry.model.load_adapter = load_then_fail
    with pytest.raises(Refusal, match="could not be loaded \\(RuntimeError\\); see the Space logs"):
        registry.load(fetched["main"])
    del registry.model.load_adapter
    assert registry.loaded() == [] and list(registry.model.peft_config) == ["__placeholder__"]
    assert registry.stats.loads == 0
    sides = [SideRequest(chat(PROMPTS[0]), None), SideRequest(chat(PROMPTS[0]), fetched["main"])]
    assert [s.text for s in final(stream_pair(base, registry, sides, PARAMS))] == [
        expected["base"][0],
        expected["main"][0],
    ]


def test_dora_adapters_are_answered_one_pane_after_the_other(tiny_model_dir, tmp_path, expected, hub):
    """PEFT cannot mix DoRA into a batch; the panes then take turns, each with its adapter activated."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from phi3_lora_hub.generation import generate_replies
    from phi3_lora_hub.model.loading import load_for_inference

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    config = LoraConfig(r=4, target_modules=["qkv_proj", "o_proj"], use_dora=True, init_lora_weights=False)
    get_peft_model(model, config).save_pretrained(tmp_path / "dora")
    from huggingface_hub import HfApi

    HfApi().create_repo("tester/space-dora", exist_ok=True)
    HfApi().upload_folder(folder_path=str(tmp_path / "dora"), repo_id="tester/space-dora")
    base, registry = serve(tiny_model_dir)
    dora = AdapterSource(base.signature, AllowList.of(["tester/*"])).fetch("tester/space-dora")
    assert dora.uses_dora
    alone_model, tokenizer = load_for_inference(str(tiny_model_dir), tmp_path / "dora")
    alone = generate_replies(alone_model, tokenizer, [chat(PROMPTS[0])], PARAMS)[0].text
    sides = [SideRequest(chat(PROMPTS[0]), None), SideRequest(chat(PROMPTS[0]), dora)]
    result = final(stream_pair(base, registry, sides, PARAMS))
    assert [side.text for side in result] == [expected["base"][0], alone]
    assert alone != expected["base"][0]
    assert not any(p.requires_grad for p in registry.model.parameters())


def test_row_streamer_splits_steps_by_row_and_stops_each_row_on_its_own(tiny_model_dir):
    import torch

    from phi3_lora_hub.model.loading import load_tokenizer, stop_token_ids

    tokenizer = load_tokenizer(str(tiny_model_dir), for_training=False)
    end = tokenizer.convert_tokens_to_ids("<|end|>")
    pad = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    yes, no = tokenizer.encode("Yes", add_special_tokens=False), tokenizer.encode("No", add_special_tokens=False)
    events: queue.Queue = queue.Queue()
    streamer = RowStreamer(
        tokenizer, [0, 1], stop_ids=stop_token_ids(tokenizer), max_new_tokens=3, events=events, started=0.0
    )
    streamer.put(torch.tensor([[1, 2], [3, 4]]))  # the prompt: ignored
    streamer.put(torch.tensor([yes[0], no[0]]))
    streamer.put(torch.tensor([end, no[0]]))  # row 0 ends its turn
    streamer.put(torch.tensor([pad, no[0]]))  # row 0 pads (ignored); row 1 hits max_new_tokens
    streamer.end()
    reported = []
    while not events.empty():
        reported.append(events.get())
    assert [slot for slot, _ in reported] == [0, 1, 0, 1, 1]  # both rows advance step by step
    final_0 = [p for slot, p in reported if slot == 0][-1]
    final_1 = [p for slot, p in reported if slot == 1][-1]
    assert (final_0.text, final_0.new_tokens, final_0.finish_reason) == (tokenizer.decode(yes[:1]).strip(), 1, "stop")
    assert (final_1.new_tokens, final_1.finish_reason) == (3, "length")
    assert final_0.latency_s is not None and reported[0][1].latency_s is None


def test_closing_the_runtime_waits_for_the_background_preload(space_settings, hub_adapters):
    """A preload left running would keep PEFT's process-wide ``register_parameter`` patch active under other loads."""
    from space_testing import hub_reachable

    from phi3_lora_hub.space.runtime import SpaceRuntime

    with hub_reachable():
        runtime = SpaceRuntime.start(space_settings())  # preload is on: both offered adapters load in the background
        runtime.close()
    assert runtime.registry.stats.loads == 2  # close() returned only after both were loaded


def test_an_adapter_with_another_scaling_is_copied_in_and_rescaled(tiny_model_dir, fetched, tmp_path, hub):
    """Same tensors, another lora_alpha: copied into the oldest slot in place, and answering with its own scaling."""
    import json
    import shutil

    from huggingface_hub import HfApi
    from space_testing import alone_answers

    folder = tmp_path / "louder"
    shutil.copytree(fetched["terse"].directory, folder)
    config = json.loads((folder / "adapter_config.json").read_text())
    (folder / "adapter_config.json").write_text(json.dumps({**config, "lora_alpha": 4 * config["lora_alpha"]}))
    HfApi().create_repo("tester/space-louder", exist_ok=True)
    HfApi().upload_folder(folder_path=str(folder), repo_id="tester/space-louder")
    base, registry = serve(tiny_model_dir, capacity=2)
    louder = AdapterSource(base.signature, AllowList.of(["tester/*"])).fetch("tester/space-louder")
    registry.load(fetched["main"])
    registry.load(fetched["terse"])
    registry.load(louder)  # same tensors as main's slot, another scaling
    assert registry.stats.swaps == 1 and registry.loaded() == [fetched["terse"].key, louder.key]
    alone = alone_answers(tiny_model_dir, folder, PROMPTS[:1], PARAMS.max_new_tokens)
    sides = [SideRequest(chat(PROMPTS[0]), louder), SideRequest(chat(PROMPTS[0]), fetched["terse"])]
    answers = [s.text for s in final(stream_pair(base, registry, sides, PARAMS))]
    assert answers[0] == alone[0] and answers[0] != answers[1]


def test_adapters_are_kept_in_the_base_precision(tiny_model_dir, fetched):
    """A bfloat16 base holds its adapters in bfloat16 (PEFT's default would be float32: twice the memory), after a
    load into a free slot and after a copy into an occupied one."""
    import torch

    base = load_base(str(tiny_model_dir), dtype="bfloat16")
    registry = AdapterRegistry(base.model, capacity=2)
    for name in ("main", "step-4", "terse"):
        registry.load(fetched[name])
    assert registry.stats.swaps == 1
    slots = {name: p.dtype for name, p in registry.model.named_parameters() if ".slot0" in name}
    assert slots and set(slots.values()) == {torch.bfloat16}
    sides = [SideRequest(chat(PROMPTS[0]), fetched["terse"]), SideRequest(chat(PROMPTS[0]), fetched["step-4"])]
    assert all(side.text for side in final(stream_pair(base, registry, sides, PARAMS)))


def test_adapters_once_in_a_slot_are_kept_converted_and_copied_back_unconverted(tiny_model_dir, fetched, tmp_path):
    """With a cache folder, each adapter's weights are kept in the base's precision (named by their sha256); a
    later copy into a slot puts them in place as they are and answers exactly as a plain load does; a damaged
    cache file is ignored."""
    import dataclasses
    import shutil

    import torch

    base, plain_base = (load_base(str(tiny_model_dir), dtype="bfloat16") for _ in range(2))
    cached = AdapterRegistry(base.model, capacity=2, cache_dir=tmp_path / "cache")
    plain = AdapterRegistry(plain_base.model, capacity=4)
    own_files = shutil.copytree(fetched["main"].directory, tmp_path / "main")
    main = dataclasses.replace(fetched["main"], directory=own_files)
    early, terse = fetched["step-4"], fetched["terse"]
    for adapter in (main, early, terse):  # two loads, then terse copied into main's slot (and converted)
        cached.load(adapter)
        plain.load(adapter)
    files = {path.name for path in (tmp_path / "cache").iterdir()}
    assert files == {f"{adapter.weights}-bfloat16.safetensors" for adapter in (main, early, terse)}

    def answers(served, registry, adapter) -> list[str]:
        sides = [SideRequest(chat(PROMPTS[0]), adapter), SideRequest(chat(PROMPTS[1]), adapter)]
        return [side.text for side in final(stream_pair(served, registry, sides, PARAMS))]

    (own_files / "adapter_model.safetensors").unlink()  # main can only come back from its converted copy
    for adapter in (main, early):  # from the converted copy, then (damaged) from the adapter's own file
        if adapter is early:
            (tmp_path / "cache" / f"{early.weights}-bfloat16.safetensors").write_bytes(b"damaged")
        cached.load(adapter)
        assert answers(base, cached, adapter) == answers(plain_base, plain, adapter)
    assert cached.stats.swaps == 3
    assert {p.dtype for name, p in cached.model.named_parameters() if ".slot" in name} == {torch.bfloat16}
