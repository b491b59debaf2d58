"""``phi3-lora-hub hub serve`` in a child process, as a user runs it."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError

from phi3_lora_hub.local_hub import RemoteHub
from tests.hub.helpers import child_env


def test_serve_prints_the_environment_without_the_given_tokens_serves_and_stops_on_sigterm(tmp_path, hub_online):
    command = [
        sys.executable,
        "-m",
        "phi3_lora_hub",
        "hub",
        "serve",
        "--root",
        str(tmp_path / "hub"),
        "--token",
        "hf_cli_token:carol:write:lab",
        "--admin-token",
        "hf_cli_admin",
    ]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())
    try:
        first = server.stdout.readline()
        assert first.startswith("Local Hub serving"), first + server.stderr.read()
        url = first.split(" at ")[-1].strip()
        exports = [server.stdout.readline().strip() for _ in range(4)][1:]
        assert exports == [
            f"export HF_ENDPOINT={url}",
            "export HF_HUB_OFFLINE=0",
            "export HF_TOKEN=<a write token you gave with --token>",
        ]
        api = HfApi(endpoint=url, token="hf_cli_token")
        assert api.whoami()["name"] == "carol"
        assert api.create_repo("lab/shared").repo_id == "lab/shared"
        # Faults injected from this process into the server process:
        RemoteHub(url, admin_token="hf_cli_admin").faults.fail("whoami", status=503)
        with pytest.raises(HfHubHTTPError) as error:
            api.whoami()
        assert error.value.response.status_code == 503
        assert api.whoami()["name"] == "carol"
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=20) == 0
    rest_of_output = server.stdout.read()
    assert "hf_cli_token" not in rest_of_output and "hf_cli_admin" not in rest_of_output
    assert (tmp_path / "hub" / "repos" / "models" / "lab" / "shared" / "repo.json").is_file()


@pytest.mark.parametrize("spec", ["token-only", "t:u:admin", "t::write"])
def test_bad_token_specs_are_refused(spec):
    result = subprocess.run(
        [sys.executable, "-m", "phi3_lora_hub", "hub", "serve", "--root", "x", "--token", spec],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=60,
    )
    assert result.returncode == 2 and "TOKEN:USER:ROLE" in result.stderr
