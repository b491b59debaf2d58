"""Phi-3 LoRA side by side: chat with two models at once, vote for the better answer, watch the leaderboard.

One Phi-3 base model is loaded once; LoRA adapters are fetched from the Hub on demand, checked, and loaded onto
it. Each pane shows the base model or an adapter at one revision (``main`` or a ``step-N`` checkpoint branch).
One prompt box feeds both panes; both answer at the same time. Votes go to a local file and, when configured, to
a Hub dataset; the leaderboard rates every adapter revision.

Configuration: environment variables (``PHI3_SPACE_BASE_MODEL``, ``PHI3_SPACE_ADAPTERS``,
``PHI3_SPACE_ALLOWLIST``, ``PHI3_SPACE_VOTES_REPO``, the ``HF_TOKEN`` secret, ...) over ``space_config.json``;
see the README. Run locally with ``phi3-lora-hub space run``. The logic lives in ``phi3_lora_hub.space``; this
file is the UI.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import pandas as pd

from phi3_lora_hub.space.conversation import BASE_CHOICE, Match
from phi3_lora_hub.space.launch import GENERATION_CONCURRENCY_ID, launch_kwargs, queue_kwargs
from phi3_lora_hub.space.leaderboard import HEADERS
from phi3_lora_hub.space.limits import MAX_SEED, check_prompt, check_system_prompt, gen_params
from phi3_lora_hub.space.refusal import Refusal, quote
from phi3_lora_hub.space.runtime import SpaceRuntime, is_base
from phi3_lora_hub.space.settings import CONFIG_FILE, SpaceSettings

try:  # On ZeroGPU hardware a GPU is attached only while a decorated function runs.
    import spaces

    on_gpu = spaces.GPU(duration=120)
except ImportError:

    def on_gpu(function):
        return function


VOTES = [  # (vote record value, button text, API name)
    ("leftvote", "A is better", "vote_a"),
    ("rightvote", "B is better", "vote_b"),
    ("tievote", "Tie", "vote_tie"),
    ("bothbad_vote", "Both are bad", "vote_bothbad"),
]
FINISH = {"stop": "ended its turn", "length": "hit max new tokens", "error": "failed", None: "stopped"}
INTRO = """# {title}

Two models answer the same prompt at the same time. Pick each one — the base model, or a LoRA adapter at any
revision (`main`, or a `step-N` checkpoint pushed during training) — chat, then vote for the better answer.
**Blind mode** hides which model is on which side until you vote.
"""
SAFETY = """### What this Space loads

- Adapters come from the Hub only: `namespace/name` repositories on this Space's allowlist, at a branch, tag or
  commit; every revision is resolved to its commit, and votes record that commit.
- Only `adapter_model.safetensors` is ever loaded (repos with only pickled weights are refused), below a size cap,
  after its config and tensor shapes are checked against the base model. No remote code runs.
- Prompts, turns and new tokens are capped; requests wait in one queue.
"""


def numbers_only(component: gr.Slider | gr.Number, what: str) -> gr.Slider | gr.Number:
    """Make ``component`` (a Slider or Number) turn down a value that is not a number with a readable message.

    Gradio's own check compares the value with the range first and fails with a ``TypeError`` on text, which a
    visitor (or a script calling the API) only sees as "The upstream Gradio app has raised an exception".
    """
    preprocess = component.preprocess

    def checked(payload: object) -> object:
        try:
            return preprocess(payload)
        except gr.Error:  # Gradio's own range checks already say what is wrong (gr.Error is a ValueError)
            raise
        except (TypeError, ValueError):
            raise gr.Error(f"{what}, got {quote(payload)}.") from None

    component.preprocess = checked
    return component


def build_demo(runtime: SpaceRuntime) -> gr.Blocks:
    """The whole UI, wired to ``runtime``."""
    settings = runtime.settings
    choices = runtime.model_choices()
    second_default = settings.adapters[0] if settings.adapters else BASE_CHOICE

    # --- helpers turning the match state into component values ------------------------------------------

    def chats(match: Match) -> list:
        return [gr.Chatbot(value=pane.chat(), label=match.label(side)) for side, pane in enumerate(match.panes)]

    def stats(match: Match) -> list[str]:
        lines = []
        for pane in match.panes:
            done = pane.progress
            if done is None or not done.finished:
                lines.append(f"{done.new_tokens} tokens so far…" if done and done.new_tokens else "")
                continue
            latency = f" · {done.latency_s:.1f} s" if done.latency_s is not None else ""
            lines.append(f"{done.new_tokens} tokens{latency} · {FINISH[done.finish_reason]}")
        return lines

    def vote_buttons(match: Match) -> list:
        return [gr.Button(interactive=match.can_vote) for _ in VOTES]

    def view(match: Match, status: str) -> tuple:
        """Every output of the arena tab, in the order of ``arena_outputs`` (below)."""
        return (match, *chats(match), *stats(match), status, *vote_buttons(match))

    def leaderboard_table() -> pd.DataFrame:
        return pd.DataFrame([row.cells() for row in runtime.leaderboard()], columns=HEADERS)

    # --- handlers -----------------------------------------------------------------------------------------

    def pick(repo: str, revision: str | None) -> tuple:
        """A picker changed: list the repo's revisions, fetch and load the chosen one, start a new match."""
        try:
            revisions = runtime.revision_choices(repo)
            if is_base(repo):
                status = "Base model selected."
            else:
                revision = revision or (revisions[0] if revisions else None)
                status = f"✓ {runtime.contender(repo, revision).label} is ready."
        except Refusal as refusal:
            return gr.Dropdown(), *view(Match(), f"⚠ {refusal}")
        revision_picker = gr.Dropdown(choices=revisions, value=revision, interactive=not is_base(repo))
        return revision_picker, *view(Match(), status)

    def send(prompt, repo_1, rev_1, repo_2, rev_2, system, temperature, top_p, max_new_tokens, seed, blind, match):
        """Add the prompt to both panes and stream both answers."""
        try:
            prompt = check_prompt(prompt, settings.max_prompt_chars)
            system = check_system_prompt(system, settings.max_prompt_chars)
            params = gen_params(temperature, top_p, max_new_tokens, seed, cap=settings.max_new_tokens)
            pinned = match.picks or (None, None)
            picks = (
                runtime.contender(repo_1, rev_1, pinned=pinned[0]),
                runtime.contender(repo_2, rev_2, pinned=pinned[1]),
            )
            if match.needs_restart(picks, blind):
                match.start(picks, blind=blind)
            match.system_prompt = system
            runtime.check_fits(match.with_prompt(prompt), params)
            match.add_user_turn(prompt, max_turns=settings.max_turns)
        except Refusal as refusal:
            raise gr.Error(str(refusal)) from None
        yield from answer(match, params, clear_prompt=True)

    def regenerate(temperature, top_p, max_new_tokens, seed, match):
        """Answer the last prompt again, with the settings as they are now (change the seed for a new sample)."""
        try:
            params = gen_params(temperature, top_p, max_new_tokens, seed, cap=settings.max_new_tokens)
            runtime.check_fits(match.prompt_transcripts(), params)
            match.drop_answers()
        except Refusal as refusal:
            raise gr.Error(str(refusal)) from None
        yield from answer(match, params, clear_prompt=False)

    def answer(match: Match, params, *, clear_prompt: bool):
        match.params = params
        sides = [(pane.contender, match.transcript(side)) for side, pane in enumerate(match.panes)]
        yield *view(match, "Answering…"), "" if clear_prompt else gr.Textbox()
        for progress in stream_on_gpu(sides, params):
            match.show_progress(progress)
            yield *view(match, "Answering…"), gr.Textbox()
        status = "Which answer is better? Vote below." if match.can_vote else "⚠ An answer failed; see the logs."
        yield *view(match, status), gr.Textbox()

    @on_gpu
    def stream_on_gpu(sides, params):
        yield from runtime.stream(sides, params)

    def vote_for(kind: str):
        def vote_handler(match: Match, request: gr.Request):
            return vote(kind, match, request)

        return vote_handler

    def vote(kind: str, match: Match, request: gr.Request):
        try:
            record = match.cast_vote(kind, request.session_hash or "")
        except Refusal as refusal:
            raise gr.Error(str(refusal)) from None
        runtime.record_vote(record)
        reveal = " · ".join(f"**{match.label(side)}**" for side in range(2))
        return *view(match, f"Thanks for voting! {reveal}"), leaderboard_table()

    def export_votes():
        return gr.File(value=str(runtime.export_votes()), visible=True)

    def clear():
        return view(Match(), "")

    def on_load(repo_1: str, repo_2: str):
        """On page load: fill the revision pickers of the default models, and the leaderboard."""
        updates, problems = [], []
        for repo in (repo_1, repo_2):
            try:
                revisions = runtime.revision_choices(repo)
            except Refusal as refusal:
                revisions = []
                problems.append(f"⚠ {refusal}")
            updates.append(
                gr.Dropdown(choices=revisions, value=revisions[0] if revisions else None, interactive=bool(revisions))
            )
        return *updates, " ".join(problems), leaderboard_table()

    # --- layout -------------------------------------------------------------------------------------------

    with gr.Blocks(title=settings.title) as demo:
        match = gr.State(Match())
        gr.Markdown(INTRO.format(title=settings.title))
        with gr.Tab("Arena"):
            with gr.Row():
                with gr.Column():
                    repo_1 = gr.Dropdown(
                        choices, value=BASE_CHOICE, label="First model", allow_custom_value=True, elem_id="repo-1"
                    )
                    rev_1 = gr.Dropdown([], label="Revision", allow_custom_value=True, elem_id="rev-1")
                with gr.Column():
                    repo_2 = gr.Dropdown(
                        choices, value=second_default, label="Second model", allow_custom_value=True, elem_id="repo-2"
                    )
                    rev_2 = gr.Dropdown([], label="Revision", allow_custom_value=True, elem_id="rev-2")
            with gr.Row():
                chat_a = gr.Chatbot(label="Model A", elem_id="chat-a", height=420, buttons=["copy", "copy_all"])
                chat_b = gr.Chatbot(label="Model B", elem_id="chat-b", height=420, buttons=["copy", "copy_all"])
            with gr.Row():
                stats_a = gr.Markdown(elem_id="stats-a")
                stats_b = gr.Markdown(elem_id="stats-b")
            with gr.Row():
                prompt = gr.Textbox(
                    placeholder="Ask both models…", show_label=False, scale=8, elem_id="prompt", autofocus=True
                )
                send_button = gr.Button("Send", variant="primary", scale=1, elem_id="send")
            with gr.Row():
                vote_buttons_row = [
                    gr.Button(text, interactive=False, elem_id=name.replace("_", "-")) for _, text, name in VOTES
                ]
            status = gr.Markdown(elem_id="status")
            with gr.Row():
                regenerate_button = gr.Button("Regenerate", elem_id="regenerate")
                stop_button = gr.Button("Stop", elem_id="stop")
                clear_button = gr.Button("Clear", elem_id="clear")
            with gr.Accordion("Settings (both models)", open=False):
                system = gr.Textbox(label="System prompt", lines=2, max_length=settings.max_prompt_chars)
                with gr.Row():
                    temperature = gr.Slider(0, 2, value=0.0, step=0.05, label="Temperature (0 = greedy)")
                    top_p = gr.Slider(0.05, 1, value=1.0, step=0.05, label="Top p")
                with gr.Row():
                    max_new_tokens = gr.Slider(
                        1,
                        settings.max_new_tokens,
                        value=min(256, settings.max_new_tokens),
                        step=1,
                        label="Max new tokens",
                    )
                    seed = gr.Number(value=0, precision=0, minimum=0, label="Seed")
                numbers_only(temperature, "temperature must be a number")
                numbers_only(top_p, "top p must be a number")
                numbers_only(max_new_tokens, "max new tokens must be a number")
                numbers_only(seed, f"seed must be a whole number from 0 to {MAX_SEED}")
                blind = gr.Checkbox(False, label="Blind mode: hide which model is which until I vote", elem_id="blind")
        with gr.Tab("Leaderboard", elem_id="leaderboard-tab") as leaderboard_tab:
            gr.Markdown(
                "Bradley-Terry ratings (95% bootstrap interval) and win rates (ties count half; 95% Wilson "
                "interval) per adapter **revision**, from every vote so far."
            )
            table = gr.Dataframe(headers=HEADERS, interactive=False, elem_id="leaderboard")
            with gr.Row():
                refresh_button = gr.Button("Refresh", elem_id="refresh")
                export_button = gr.Button("Export votes (JSONL)", elem_id="export")
            export_file = gr.File(label="Votes", visible=False, interactive=False)
        with gr.Tab("About"):
            described = [f"| {name} | {value} |" for name, value in settings.describe().items()]
            gr.Markdown("\n".join(["| setting | value |", "|---|---|", *described]))
            gr.Markdown(SAFETY)

        # --- events ---------------------------------------------------------------------------------------
        arena_outputs = [match, chat_a, chat_b, stats_a, stats_b, status, *vote_buttons_row]
        generating = {"concurrency_limit": 1, "concurrency_id": GENERATION_CONCURRENCY_ID}

        for repo, revision, name in ((repo_1, rev_1, "first"), (repo_2, rev_2, "second")):
            repo.input(lambda r: pick(r, None), repo, [revision, *arena_outputs], api_name=f"pick_{name}_repo")
            revision.input(pick, [repo, revision], [revision, *arena_outputs], api_name=f"pick_{name}_revision")
        blind.input(clear, None, arena_outputs, api_name="blind_mode", api_visibility="private")

        send_inputs = [prompt, repo_1, rev_1, repo_2, rev_2, system, temperature, top_p, max_new_tokens, seed, blind]
        send_inputs.append(match)
        sent = send_button.click(send, send_inputs, [*arena_outputs, prompt], api_name="send", **generating)
        submitted = prompt.submit(send, send_inputs, [*arena_outputs, prompt], api_visibility="private", **generating)
        regenerated = regenerate_button.click(
            regenerate,
            [temperature, top_p, max_new_tokens, seed, match],
            [*arena_outputs, prompt],
            api_name="regenerate",
            **generating,
        )
        stop_button.click(None, cancels=[sent, submitted, regenerated], api_name="stop", api_visibility="private")
        clear_button.click(clear, None, arena_outputs, api_name="clear")
        for button, (kind, _, name) in zip(vote_buttons_row, VOTES, strict=True):
            button.click(vote_for(kind), match, [*arena_outputs, table], api_name=name)

        leaderboard_tab.select(leaderboard_table, None, table, api_name="leaderboard_tab", api_visibility="private")
        refresh_button.click(leaderboard_table, None, table, api_name="leaderboard")
        export_button.click(export_votes, None, export_file, api_name="export_votes")
        demo.load(on_load, [repo_1, repo_2], [rev_1, rev_2, status, table], api_name="load", api_visibility="private")
    return demo


if __name__ == "__main__":
    settings = SpaceSettings.from_env(config_file=Path(__file__).with_name(CONFIG_FILE))
    runtime = SpaceRuntime.start(settings)
    build_demo(runtime).queue(**queue_kwargs(settings)).launch(**launch_kwargs())
