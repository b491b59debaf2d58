"""Issue 9, part 4: the Hub token appears in nothing the product writes, uploads, logs, prints or raises.

The product is run with distinctive fake tokens through the normal paths and the failure paths: training with
pushes (resumable state included: ``training_args.bin`` written locally, the optimizer pickles uploaded too),
pushes failing with 401 (token revoked mid-run), 403, 500 and dropped connections, tokens refused at start,
resume from the Hub, ``phi3-lora-hub push`` (success and failure, with the ``--debug`` traceback), a
quickstart-sized ``phi3-lora-hub train`` with pushes, a token put into the training arguments (refused), and
the Space with an ``HF_TOKEN`` secret, its votes saved to a Hub dataset. Then every file under the output
folders, the session's ``HF_HOME`` and Gradio folders and the local Hub's whole storage, every log record, all
captured stdout/stderr, every report and every exception text and traceback is scanned for each token: verbatim
and in simple encodings (base64 at every alignment, hex, UTF-16, URL and JSON quoting, ``repr``), inside zip
archives (``torch.save`` files) too. Expected hits: zero.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import subprocess
import sys
import traceback
import urllib.parse
import uuid
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from phi3_testing import ROOT, SESSION_DIR, subprocess_env

from tests.publish.helpers import AtStep, when_settled

TRAINING = {"max_steps": 6, "save_steps": 2, "per_device_train_batch_size": 4, "logging_steps": 1}
FAST_RETRY = {"max_attempts": 2, "initial_backoff": 0.1, "max_backoff": 0.2}


def encodings(secret: str) -> dict[str, bytes]:
    """The byte patterns a leak of ``secret`` may take: name -> pattern."""
    raw = secret.encode()
    patterns = {
        "verbatim": raw,
        "utf-16-le": secret.encode("utf-16-le"),
        "utf-16-be": secret.encode("utf-16-be"),
        "hex": raw.hex().encode(),
        "HEX": raw.hex().upper().encode(),
        "url-quoted": urllib.parse.quote(secret, safe="").encode(),
        "url-quoted-plus": urllib.parse.quote_plus(secret).encode(),
        "json": json.dumps(secret).encode(),
        "repr": repr(secret).encode(),
        "repr-bytes": repr(raw).encode(),
    }
    for shift in range(3):  # base64 of a longer text holds the secret's bytes at one of three alignments
        whole = (len(raw) - shift) // 3 * 3
        chunk = raw[shift : shift + whole]
        patterns[f"base64+{shift}"] = base64.b64encode(chunk)
        patterns[f"base64url+{shift}"] = base64.urlsafe_b64encode(chunk)
    return patterns


@dataclass
class SecretScan:
    """Scans files and texts for secrets in every encoding of :func:`encodings`; counts what it read."""

    secrets: list[str]
    files: int = 0
    bytes: int = 0
    texts: int = 0
    hits: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._patterns = [
            (secret, name, pattern) for secret in self.secrets for name, pattern in encodings(secret).items()
        ]

    def _scan(self, data: bytes, where: str) -> None:
        for secret, name, pattern in self._patterns:
            if pattern in data:
                self.hits.append(f"{where}: {name} of {secret[:6]}…")

    def scan_bytes(self, data: bytes, where: str) -> None:
        self._scan(data, where)
        if data[:4] == b"PK\x03\x04":  # torch.save files and other archives: their members too, decompressed
            try:
                with zipfile.ZipFile(io.BytesIO(data)) as archive:
                    for member in archive.namelist():
                        self._scan(archive.read(member), f"{where}!{member}")
            except (zipfile.BadZipFile, OSError, ValueError):
                pass

    def scan_tree(self, root: Path) -> None:
        for path in sorted(root.rglob("*")):
            if path.is_file() and not path.is_symlink():
                data = path.read_bytes()
                self.files += 1
                self.bytes += len(data)
                self.scan_bytes(data, str(path))

    def scan_text(self, text: str, where: str) -> None:
        self.texts += 1
        self.bytes += len(text)
        self.scan_bytes(text.encode("utf-8", "surrogateescape"), where)


@dataclass
class Captured:
    """Texts the user saw: exceptions (message, repr, traceback), child-process output, reports."""

    texts: dict[str, str] = field(default_factory=dict)

    def add(self, name: str, text: object) -> None:
        self.texts[f"{name}#{len(self.texts)}"] = str(text)

    def expect_error(self, name: str, action: Callable[[], object]) -> BaseException:
        """Run ``action``, which must raise; keep its message, repr and formatted traceback (chain included)."""
        try:
            action()
        except Exception as error:
            self.add(f"{name}: str", error)
            self.add(f"{name}: repr", repr(error))
            self.add(f"{name}: traceback", "".join(traceback.format_exception(error)))
            return error
        raise AssertionError(f"{name}: expected an error")

    def cli(self, name: str, *args: str, expect_ok: bool = True, **env: str) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [sys.executable, "-m", "phi3_lora_hub", *args],
            capture_output=True,
            text=True,
            env=subprocess_env(HF_HUB_OFFLINE="0", **env),
            cwd=ROOT,
            timeout=600,
        )
        self.add(f"{name}: stdout", done.stdout)
        self.add(f"{name}: stderr", done.stderr)
        assert (done.returncode == 0) == expect_ok, f"{name}: exit {done.returncode}\n{done.stderr[-3000:]}"
        return done


def scan_everything(secrets: list[str], roots: Iterable[Path], captured: Captured, logs: str) -> SecretScan:
    scan = SecretScan(secrets)
    for root in dict.fromkeys(Path(r).resolve() for r in roots):
        if root.is_dir():
            scan.scan_tree(root)
    for name, text in captured.texts.items():
        scan.scan_text(text, name)
    scan.scan_text(logs, "log records")
    return scan


def test_the_scan_finds_a_secret_in_every_encoding_in_files_archives_and_texts(tmp_path):
    """The scanner itself: a secret hidden in any of the encodings, at any offset, in a file, inside a zip member
    or in a text is found (so a scan with zero hits means something)."""
    import torch

    secret = f"hf_scanselftest{uuid.uuid4().hex}"
    scan = SecretScan([secret])
    for index, pattern in enumerate(encodings(secret).values()):
        (tmp_path / f"{index}.bin").write_bytes(bytes(range(index)) + b"<" + pattern + b">" + bytes(7))
    for shift in range(3):  # base64 of a whole text whose secret starts at each alignment
        text = "x" * shift + f"Authorization: Bearer {secret}\n"
        (tmp_path / f"b64-{shift}.txt").write_bytes(base64.b64encode(text.encode()))
    torch.save({"args": {"hub_token": secret}}, tmp_path / "training_args.bin")
    with zipfile.ZipFile(tmp_path / "deflated.zip", "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("inner.txt", secret * 3)
    (tmp_path / "clean.txt").write_text("hf_*** and nothing else")
    scan.scan_tree(tmp_path)
    scan.scan_text(f"HfHubHTTPError({secret!r})", "exception")
    found = {hit.split(":")[0].split("!")[0] for hit in scan.hits}
    assert found == {str(path) for path in tmp_path.iterdir() if path.name != "clean.txt"} | {"exception"}
    assert any("deflated.zip!inner.txt" in hit for hit in scan.hits)
    assert scan.files == len(encodings(secret)) + 3 + 3 and scan.bytes > 0


@pytest.mark.slow
def test_no_token_in_any_artifact_log_or_error_of_runs_pushes_failures_cli_and_space(
    hub, tmp_path, monkeypatch, caplog, capfd
):
    """Zero hits for any of the run's tokens, after every path listed in the module docstring ran."""
    from huggingface_hub import HfApi

    from phi3_lora_hub import Phi3LoraRecipe
    from phi3_lora_hub.callbacks.hub_push import HubPushCallback
    from phi3_lora_hub.data.sample import write_sample_dataset
    from phi3_lora_hub.hub.errors import HubAuthError
    from phi3_lora_hub.hub.retry import RetryPolicy
    from phi3_lora_hub.hub.staging import RESUME_SUBDIR
    from phi3_lora_hub.model.tiny import TinyPhi3Config, tiny_phi3_cache_dir

    caplog.set_level(logging.DEBUG)
    tag = uuid.uuid4().hex
    secret = f"hf_advSecretScan{tag}"  # the user's write token (HF_TOKEN)
    revoked = f"hf_advRevoked{tag}"  # a write token revoked during training
    read_only = f"hf_advReadOnly{tag}"
    invalid = f"advscan-not-issued-{tag}"  # not shaped like a Hub token: no pattern-based redaction can catch it
    hub.add_token(secret, "tester", "write")
    hub.add_token(revoked, "tester", "write")
    hub.add_token(read_only, "tester", "read")
    monkeypatch.setenv("HF_TOKEN", secret)
    captured = Captured()
    retry = RetryPolicy(**FAST_RETRY)
    base = tiny_phi3_cache_dir(TinyPhi3Config(hidden_size=32, intermediate_size=64, pretrain_steps=0))
    data = write_sample_dataset(tmp_path / "chats.jsonl", n=32)
    runs = tmp_path / "runs"
    repo = f"tester/adv-secrets-{tag[:8]}"
    failure_paths: list[str] = []

    def recipe(name: str, *callbacks, training=None, **settings):
        return Phi3LoraRecipe(
            str(base),
            str(data),
            output_dir=str(runs / name),
            training={**TRAINING, **(training or {})},
            callbacks=list(callbacks),
            evaluation={"num_samples": 0},
            **settings,
        )

    def pushes(name: str, result) -> None:
        captured.add(f"{name}: summary", result.hub.summary())
        captured.add(f"{name}: report", repr(result.hub))
        captured.add(f"{name}: result", repr(result))

    # 1. Training with pushes, the token given explicitly, resumable state pushed (training_args.bin, pickles).
    done = recipe("pushes", HubPushCallback(repo, token=secret, push_resumable_state=True, retry=retry)).train()
    assert done.hub.ok and any(push.resumable for push in done.hub.pushed)
    assert list((runs / "pushes").rglob("training_args.bin")), "the scan must cover training_args.bin"
    pushes("pushes", done)

    # 2. Resume from the Hub (token from HF_TOKEN), training two more steps and pushing them.
    resumed = recipe("resume", training={"max_steps": 8}, hub_model_id=repo, hub_push_resumable_state=True)
    done = resumed.train(resume_from_hub=True)
    assert done.hub.ok and (runs / "resume" / "_hubresume").is_dir()
    pushes("resume", done)

    # 3. Pushes failing during training: 500 on every commit, dropped connections, 403, token revoked (401).
    faults = {
        "commit 500": lambda: hub.faults.fail("commit", status=500, count=None),
        "dropped connection": lambda: hub.faults.drop("preupload", count=None),
        "commit 403": lambda: hub.faults.fail("commit", status=403, count=None),
    }
    for name, inject in faults.items():
        inject()
        failing = HubPushCallback(f"{repo}-{name.split()[-1]}", retry=retry)  # the token from HF_TOKEN
        done = recipe(name.replace(" ", "-"), failing).train()
        hub.faults.clear()
        assert not done.hub.ok and done.hub.failed, name
        failure_paths.append(name)
        pushes(name, done)
    callback = HubPushCallback(f"{repo}-revoked", token=revoked, retry=retry)
    revoke = AtStep(3, when_settled(callback, lambda: hub.revoke_token(revoked)))
    done = recipe("revoked", revoke, callback).train()
    assert [p for p in done.hub.pushes if p.status == "failed" and "401" in (p.error or "")]
    failure_paths.append("token revoked mid-run (401)")
    pushes("revoked", done)

    # 4. Tokens refused before training: not issued (401), read-only (403); and a failing final flush that raises.
    for name, token in (("invalid token", invalid), ("read-only token", read_only)):
        run = recipe(name.replace(" ", "-"), HubPushCallback(f"{repo}-refused", token=token, retry=retry))
        error = captured.expect_error(name, run.train)
        assert isinstance(error, HubAuthError)
        failure_paths.append(name)
    hub.faults.fail("commit", status=500, count=None)
    raising = recipe("raise", HubPushCallback(f"{repo}-raise", retry=retry, on_failure="raise"))
    captured.expect_error("push failure raised", raising.train)
    hub.faults.clear()
    failure_paths.append("push failure raised to the user")

    # 5. The CLI: push (success; a failing commit with the --debug traceback), a quickstart-sized training run with
    # pushes from a recipe YAML, and the same run refused for a token put into the training arguments.
    adapter = runs / "pushes" / "adapter"
    captured.cli("push", "push", str(adapter), "--repo-id", f"{repo}-cli", "--branch", "release", HF_TOKEN=secret)
    hub.faults.fail("commit", status=500, count=None)
    captured.cli("push 500", "--debug", "push", str(adapter), "--repo-id", f"{repo}-cli-500", expect_ok=False)
    hub.faults.clear()
    config = {
        "model": str(base),
        "dataset": str(data),
        "output_dir": str(runs / "cli-train"),
        "hub_model_id": f"{repo}-cli-train",
        "hub_push_resumable_state": True,
        "training": {**TRAINING, "max_steps": 8, "disable_tqdm": False},
    }
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(config))
    captured.cli("cli train", "train", str(tmp_path / "recipe.yaml"), HF_TOKEN=secret)
    resumable_state = f"{RESUME_SUBDIR}/trainer_state.json"  # with the optimizer and scheduler pickles
    assert HfApi(token=secret).file_exists(f"{repo}-cli-train", resumable_state, revision="step-8")
    token_arg = f"training.hub_token={secret}"
    captured.cli(
        "cli train hub_token", "--debug", "train", str(tmp_path / "recipe.yaml"), "--set", token_arg, expect_ok=False
    )
    captured.expect_error("hub_token in training", lambda: recipe("token-arg", training={"hub_token": secret}).train())
    failure_paths += ["cli push 500 (--debug)", "hub_token in the training arguments (CLI --debug, Python)"]

    # 6. The Space with the HF_TOKEN secret: loads the pushed adapter, refuses a private repo, saves votes to a
    # dataset repo on the Hub (and fails to once).
    space_scan_roots = space_session(hub, base, repo, secret, tmp_path / "space", captured, failure_paths)

    output = capfd.readouterr()
    captured.add("stdout", output.out)
    captured.add("stderr", output.err)
    logs = "\n".join(f"{r.name} {r.levelname} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    roots = [tmp_path, hub.root, SESSION_DIR / "hf_home", Path(os.environ["GRADIO_TEMP_DIR"]), *space_scan_roots]
    scan = scan_everything([secret, revoked, read_only, invalid], roots, captured, logs)
    uploaded = sum(1 for path in Path(hub.root).rglob("*") if path.is_file())
    print(
        f"\nsecrets scan: 4 tokens x {len(encodings(secret))} encodings; runs: 2 trainings with pushes, "
        f"{len(failure_paths)} failure paths ({', '.join(failure_paths)}), 2 CLI pushes, 1 CLI training with pushes, "
        f"1 Space session; {scan.files} files ({uploaded} in the Hub's storage) + {scan.texts} texts "
        f"({len(caplog.records)} log records), {scan.bytes / 1e6:.1f} MB scanned; hits: {len(scan.hits)}"
    )
    assert scan.hits == []
    assert HfApi(token=secret).file_exists(f"{repo}-cli", "adapter_model.safetensors")  # the pushes really landed


def space_session(hub, base: Path, adapter_repo: str, secret: str, folder: Path, captured: Captured, failures) -> list:
    """Run the Space with ``secret`` as its HF_TOKEN and a votes dataset; returns folders it wrote to."""
    from gradio_client import Client
    from gradio_client.exceptions import AppError
    from huggingface_hub import HfApi
    from space_testing import make_settings, running_space

    alice = hub.create_user("alice")
    private = f"alice/adv-secrets-private-{uuid.uuid4().hex[:8]}"
    HfApi(token=alice).create_repo(private, private=True)
    votes_repo = f"tester/adv-secrets-votes-{uuid.uuid4().hex[:8]}"
    settings = make_settings(
        base,
        folder / "data",
        PHI3_SPACE_ADAPTERS=adapter_repo,
        PHI3_SPACE_ALLOWLIST="tester/*,alice/*",
        PHI3_SPACE_VOTES_REPO=votes_repo,
        PHI3_SPACE_VOTES_EVERY="60",
        HF_TOKEN=secret,
    )
    values = ["", 0, 1, 8, 0, False]
    with running_space(settings) as space:
        client = Client(space.url, verbose=False)
        for revision in ("main", "step-6"):
            outputs = client.predict("Hi there", "base", None, adapter_repo, revision, *values, api_name="/send")
            captured.add(f"space answer {revision}", json.dumps(outputs))
            client.predict(api_name="/vote_b")
        captured.add("space private pick", json.dumps(client.predict(private, api_name="/pick_second_repo")))
        refused = captured.expect_error(
            "space private repo", lambda: client.predict("Hi", "base", None, private, "main", *values, api_name="/send")
        )
        assert isinstance(refused, AppError)
        failures.append("Space private repo refused")
        captured.add("space export", Path(client.predict(api_name="/export_votes")["value"]).read_text())
        space.runtime.store.flush()
        hub.faults.fail("commit", status=500, count=None)
        client.predict("Hi again", "base", None, adapter_repo, "main", *values, api_name="/send")
        client.predict(api_name="/vote_a")
        captured.expect_error("space vote upload 500", space.runtime.store.flush)
        hub.faults.clear()
        failures.append("Space vote upload 500")
        client.close()
    files = HfApi(token=secret).list_repo_files(votes_repo, repo_type="dataset")
    assert any(name.startswith("data/votes-") for name in files), files  # votes really reached the Hub
    return [folder]
