"""One answer to "is this the process that writes and pushes?", for the recipe and the Hub publisher alike."""

from __future__ import annotations

import pytest
import torch.distributed

from phi3_lora_hub.distributed import processes
from phi3_lora_hub.training import recipe_hub


@pytest.mark.parametrize(("rank", "main"), [(None, True), ("0", True), ("1", False)])
def test_before_the_process_group_exists_the_launchers_rank_decides(monkeypatch, rank, main):
    assert not torch.distributed.is_initialized()
    if rank is None:
        monkeypatch.delenv("RANK", raising=False)
    else:
        monkeypatch.setenv("RANK", rank)
    assert processes.is_main_process() is main


def test_the_hub_publisher_asks_the_same_function_as_the_recipe():
    assert recipe_hub.is_main_process is processes.is_main_process
