"""Phi-3 LoRA side by side: chat with two models at once, vote for the better answer, watch the leaderboard.

One Phi-3 base model is loaded once; LoRA adapters are fetched from the Hub on demand, checked, and loaded onto
it. Each pane shows the base model or an adapter at one revision (``main`` or a ``step-N`` checkpoint branch).
One prompt box feeds both panes; both answer at the same time. Each pane's title names the model it answers with.
A blind battle (a checkbox) draws two models at random and hides their names until the vote; "New round" draws
again. Votes go to a local file and, when configured, to a Hub dataset; the leaderboard rates every adapter
revision. Every action is an API endpoint with a name (``/send``, ``/vote_a``, ``/new_round``...) for scripts.

Configuration: environment variables (``PHI3_SPACE_BASE_MODEL``, ``PHI3_SPACE_ADAPTERS``,
``PHI3_SPACE_ALLOWLIST``, ``PHI3_SPACE_VOTES_REPO``, the ``HF_TOKEN`` secret, ...) over ``space_config.json``;
see the README. Run locally with ``phi3-lora-hub space run``. The logic lives in ``phi3_lora_hub.space``; this
file is the UI.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from phi3_lora_hub.space.conversation import BASE_CHOICE, Contender, Match
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


SCRIPT_HEADER, SCRIPTS = "x-gradio-user", ("api", "mcp")
"""The header ``gradio_client`` (``api``) and Gradio's MCP server (``mcp``) send with every call."""
VOTES = [  # (vote record value, button text, API name)
    ("leftvote", "A is better", "vote_a"),
    ("rightvote", "B is better", "vote_b"),
    ("tievote", "Tie", "vote_tie"),
    ("bothbad_vote", "Both are bad", "vote_bothbad"),
]
FINISH = {"stop": "ended its turn", "length": "hit max new tokens", "error": "failed", None: "stopped"}
INTRO = """# {title}

Two models answer each prompt side by side: the base model or a LoRA adapter at any revision (`main` or a `step-N`
checkpoint). Vote for the better answer; a **blind battle** hides the names until you vote.
"""
BATTLE_NOTE = (
    "**Blind battle**: two models drawn at random answer as *Model A* and *Model B*. Their names appear once you "
    "vote; **New round** draws a fresh pair."
)
CSS = """
.gradio-container { overflow: clip !important; }  /* "hidden" would keep the prompt row from sticking */
#prompt-row { position: sticky; bottom: 0; z-index: 20; background: var(--body-background-fill); padding: 6px 0; }
#chat-a [data-testid="block-label"], #chat-b [data-testid="block-label"] { font-size: 0.9rem; font-weight: 600; }
#stats-a p, #stats-b p, #status p, #pick-status-1 p, #pick-status-2 p { margin: 0; }
@media (max-width: 760px) {
  #chat-a, #chat-b { height: 240px !important; max-height: 240px; }
  .vote-button { font-size: 0.85rem !important; padding: 6px 2px !important; }
  #intro h1 { font-size: 1.3rem; }
  #intro p { display: none; }
  #chat-a [data-testid="block-label"], #chat-b [data-testid="block-label"] { font-size: 0.75rem; }
}
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

    def stats(match: Match, streaming: bool) -> list[str]:
        lines = []
        for pane in match.panes:
            done = pane.progress
            if done is None:
                lines.append("Answering…" if streaming else "")
            elif streaming and not done.finished:
                lines.append(f"{count_tokens(done.new_tokens)} so far…")
            else:
                latency = f" · {done.latency_s:.1f} s" if done.latency_s is not None else ""
                lines.append(f"{count_tokens(done.new_tokens)}{latency} · {FINISH[done.finish_reason]}")
        return lines

    def buttons(match: Match, streaming: bool) -> list:
        """The vote buttons, Regenerate, Stop and Send, enabled only when they can act."""
        votes = [gr.Button(interactive=match.can_vote and not streaming) for _ in VOTES]
        regenerable = match.user_turns > 0 and not streaming
        return [
            *votes,
            gr.Button(interactive=regenerable),
            gr.Button(interactive=streaming),
            gr.Button(interactive=not streaming),
        ]

    def view(match: Match, status: str, *, streaming: bool = False) -> tuple:
        """Every output of the arena, in the order of ``arena_outputs`` (below)."""
        return (match, *chats(match), *stats(match, streaming), status, *buttons(match, streaming))

    def refuse(match: Match, refusal: Refusal, request: gr.Request, *rest: Any) -> Any:
        """Show ``refusal`` in the status line under the prompt, where the visitor acted. A script calling the API
        (``gradio_client`` says so in a header) gets it as an error too; a page does not: Gradio would mark every
        output of the event, both panes included, with a red "Error"."""
        yield *view(match, f"⚠ {refusal}"), *rest
        if request.headers.get(SCRIPT_HEADER) in SCRIPTS:
            raise gr.Error(str(refusal), print_exception=False)

    def leaderboard_table() -> pd.DataFrame:
        """The leaderboard: one row per model, best rating first."""
        return pd.DataFrame([row.cells() for row in runtime.leaderboard()], columns=HEADERS)

    def picked(repo: str, revision: str | None) -> tuple[gr.Dropdown, Contender | None, str]:
        """A picker's choice: its revision picker (the repo's revisions; none, and locked, for the base), the model
        it names (``None`` when refused) and the note shown under it (ready, or why it was refused)."""
        try:
            revisions = runtime.revision_choices(repo)
            if not is_base(repo):
                revision = revision or (revisions[0] if revisions else None)
            chosen = runtime.contender(repo, revision)
        except Refusal as refusal:
            return gr.Dropdown(choices=[], value=None, interactive=False), None, f"⚠ {refusal}"
        note = "" if chosen.adapter is None else f"✓ {chosen.label} is ready."
        return gr.Dropdown(choices=revisions, value=chosen.pick[1], interactive=bool(revisions)), chosen, note

    def kept(repo: str, revision: str | None, pinned: Contender | None) -> Contender | None:
        """The model a picker that did not change names (``pinned`` when it still matches); ``None`` when refused:
        that picker shows why."""
        try:
            return runtime.contender(repo, revision, pinned=pinned)
        except Refusal:
            return None

    # --- handlers -----------------------------------------------------------------------------------------

    def pick(side: int, repo: str, revision: str | None, other_repo: str, other_revision: str | None, match: Match):
        """A picker changed: list the repo's revisions, fetch and load the chosen one, start a new named match."""
        revision_picker, chosen, note = picked(repo, revision)
        other = kept(other_repo, other_revision, match.picks[1 - side] if match.picks else None)
        picks = [chosen, other] if side == 0 else [other, chosen]
        return revision_picker, *view(Match.named(picks), ""), note

    # The picker handlers take the other picker's values last, with defaults, so API callers may leave them out.

    def pick_first_model(
        match: Match, first_model: str, second_model: str = BASE_CHOICE, second_revision: str | None = None
    ):
        """The first model was picked: list its revisions, load it at the first (``main``), start a new match."""
        return pick(0, first_model, None, second_model, second_revision, match)

    def pick_first_revision(
        match: Match,
        first_model: str,
        first_revision: str | None,
        second_model: str = BASE_CHOICE,
        second_revision: str | None = None,
    ):
        """The first model's revision was picked: load it, start a new match."""
        return pick(0, first_model, first_revision, second_model, second_revision, match)

    def pick_second_model(
        match: Match, second_model: str, first_model: str = BASE_CHOICE, first_revision: str | None = None
    ):
        """The second model was picked: list its revisions, load it at the first (``main``), start a new match."""
        return pick(1, second_model, None, first_model, first_revision, match)

    def pick_second_revision(
        match: Match,
        second_model: str,
        second_revision: str | None,
        first_model: str = BASE_CHOICE,
        first_revision: str | None = None,
    ):
        """The second model's revision was picked: load it, start a new match."""
        return pick(1, second_model, second_revision, first_model, first_revision, match)

    def send(
        prompt: str,
        first_model: str,
        first_revision: str | None,
        second_model: str,
        second_revision: str | None,
        system_prompt: str,
        temperature: float,
        top_p: float,
        max_new_tokens: float,
        seed: float | None,
        blind: bool,
        match: Match,
        request: gr.Request,
    ):
        """Add the prompt to both panes and stream both answers. In a blind battle (``blind``, after New round)
        the battle's hidden pair answers and the model pickers are ignored."""
        try:
            prompt = check_prompt(prompt, settings.max_prompt_chars)
            system_prompt = check_system_prompt(system_prompt, settings.max_prompt_chars)
            params = gen_params(temperature, top_p, max_new_tokens, seed, cap=settings.max_new_tokens)
            if blind and match.blind and match.picks is not None:
                picks = match.picks
            else:
                pinned = match.picks or (None, None)
                picks = (
                    runtime.contender(first_model, first_revision, pinned=pinned[0]),
                    runtime.contender(second_model, second_revision, pinned=pinned[1]),
                )
            if match.needs_restart(picks, blind):
                match.start(picks, blind=blind)
            match.system_prompt = system_prompt
            runtime.check_fits(match.with_prompt(prompt), params)
            match.add_user_turn(prompt, max_turns=settings.max_turns)
        except Refusal as refusal:
            yield from refuse(match, refusal, request, gr.Textbox())
            return
        yield from answer(match, params, clear_prompt=True)

    def regenerate(
        temperature: float, top_p: float, max_new_tokens: float, seed: float | None, match: Match, request: gr.Request
    ):
        """Answer the last prompt again, with the settings as they are now (change the seed for a new sample)."""
        try:
            params = gen_params(temperature, top_p, max_new_tokens, seed, cap=settings.max_new_tokens)
            runtime.check_fits(match.prompt_transcripts(), params)
            match.drop_answers()
        except Refusal as refusal:
            yield from refuse(match, refusal, request, gr.Textbox())
            return
        yield from answer(match, params, clear_prompt=False)

    def answer(match: Match, params, *, clear_prompt: bool):
        match.params = params
        sides = [(pane.contender, match.transcript(side)) for side, pane in enumerate(match.panes)]
        yield *view(match, "Answering…", streaming=True), "" if clear_prompt else gr.Textbox()
        for progress in stream_on_gpu(sides, params):
            match.show_progress(progress)
            yield *view(match, "Answering…", streaming=True), gr.Textbox()
        status = "Which answer is better? Vote below." if match.can_vote else "⚠ An answer failed; see the logs."
        yield *view(match, status), gr.Textbox()

    @on_gpu
    def stream_on_gpu(sides, params):
        yield from runtime.stream(sides, params)

    def stop(match: Match):
        """Stop the answers being streamed; what they said so far stays."""
        return view(match, "Stopped.")

    def vote_for(kind: str):
        def vote_handler(match: Match, request: gr.Request):
            """Vote on the last answers (once); a blind battle's names are revealed."""
            try:
                record = match.cast_vote(kind, request.session_hash or "")
            except Refusal as refusal:
                yield from refuse(match, refusal, request, gr.Dataframe())
                return
            runtime.record_vote(record)
            reveal = " · ".join(f"**{match.label(side)}**" for side in range(2))
            after = " Press **New round** for a fresh pair, or keep chatting (later votes count as named)."
            yield *view(match, f"Thanks for voting! {reveal}.{after if match.blind else ''}"), leaderboard_table()

        return vote_handler

    def new_round():
        """Start a blind battle between two models drawn at random; their names stay hidden until the vote."""
        try:
            match = Match.between(runtime.draw_pair(), blind=True)
        except Refusal as refusal:
            return view(Match(), f"⚠ {refusal}")
        return view(match, "")

    def set_blind(
        blind: bool,
        first_model: str = BASE_CHOICE,
        first_revision: str | None = None,
        second_model: str = second_default,
        second_revision: str | None = None,
    ):
        """Blind battle on: a random pair (:func:`new_round`); off: a named match between the pickers' models."""
        layout = [gr.Row(visible=not blind), gr.Column(visible=blind), gr.Button(visible=blind)]
        layout.append(gr.Button(visible=not blind))
        if blind:
            return *layout, *new_round()
        picks = [kept(first_model, first_revision, None), kept(second_model, second_revision, None)]
        return *layout, *view(Match.named(picks), "")

    def export_votes():
        """Every vote so far as a JSONL file (without the conversations unless the Space allows it)."""
        return gr.File(value=str(runtime.export_votes()), visible=True)

    def clear(match: Match):
        """Empty both panes; the same models stay (a blind battle's names stay hidden until a vote)."""
        return view(match.cleared(), "")

    def on_load(first_model: str, first_revision: str | None, second_model: str, second_revision: str | None):
        """On page load: fill the revision pickers of the default models, start a match, show the leaderboard."""
        first, second = picked(first_model, first_revision), picked(second_model, second_revision)
        match = Match.named([first[1], second[1]])
        return first[0], second[0], first[2], second[2], *view(match, ""), leaderboard_table()

    # --- layout -------------------------------------------------------------------------------------------

    with gr.Blocks(title=settings.title) as demo:
        match = gr.State(Match())
        gr.Markdown(INTRO.format(title=settings.title), elem_id="intro")
        with gr.Tab("Arena", elem_id="arena-tab"):
            with gr.Row(equal_height=True):
                blind = gr.Checkbox(
                    False,
                    label="Blind battle: two random models, names hidden until you vote",
                    elem_id="blind",
                    scale=4,
                )
                new_round_button = gr.Button("New round", visible=False, elem_id="new-round", scale=1)
            with gr.Column(visible=False, elem_id="battle-note") as battle_note:
                gr.Markdown(BATTLE_NOTE)
            with gr.Row(elem_id="pickers") as pickers:
                with gr.Column(min_width=320):
                    with gr.Row():
                        repo_1 = gr.Dropdown(
                            choices,
                            value=BASE_CHOICE,
                            label="First model",
                            allow_custom_value=True,
                            elem_id="repo-1",
                            scale=3,
                        )
                        rev_1 = gr.Dropdown(
                            [], label="Revision", allow_custom_value=True, interactive=False, elem_id="rev-1", scale=2
                        )
                    pick_note_1 = gr.Markdown(label="First model status", elem_id="pick-status-1")
                with gr.Column(min_width=320):
                    with gr.Row():
                        repo_2 = gr.Dropdown(
                            choices,
                            value=second_default,
                            label="Second model",
                            allow_custom_value=True,
                            elem_id="repo-2",
                            scale=3,
                        )
                        rev_2 = gr.Dropdown(
                            [],
                            label="Revision",
                            allow_custom_value=True,
                            interactive=not is_base(second_default),
                            elem_id="rev-2",
                            scale=2,
                        )
                    pick_note_2 = gr.Markdown(label="Second model status", elem_id="pick-status-2")
            with gr.Row():
                with gr.Column(min_width=340):
                    chat_a = gr.Chatbot(label="Model A", elem_id="chat-a", height=360, buttons=["copy", "copy_all"])
                    stats_a = gr.Markdown(label="Model A answer", elem_id="stats-a")
                with gr.Column(min_width=340):
                    chat_b = gr.Chatbot(label="Model B", elem_id="chat-b", height=360, buttons=["copy", "copy_all"])
                    stats_b = gr.Markdown(label="Model B answer", elem_id="stats-b")
            with gr.Row():
                vote_buttons_row = [
                    gr.Button(
                        text,
                        interactive=False,
                        elem_id=name.replace("_", "-"),
                        elem_classes="vote-button",
                        min_width=60,
                    )
                    for _, text, name in VOTES
                ]
            with gr.Row(elem_id="prompt-row", equal_height=True):
                prompt = gr.Textbox(
                    placeholder="Ask both models…",
                    show_label=False,
                    label="Prompt",
                    scale=8,
                    min_width=160,
                    elem_id="prompt",
                    autofocus=True,
                )
                send_button = gr.Button("Send", variant="primary", scale=1, min_width=70, elem_id="send")
            status = gr.Markdown(label="Status", elem_id="status")
            with gr.Row():
                regenerate_button = gr.Button("Regenerate", interactive=False, elem_id="regenerate", min_width=90)
                stop_button = gr.Button("Stop", interactive=False, elem_id="stop", min_width=70)
                clear_button = gr.Button("Clear", elem_id="clear", min_width=70)
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
        with gr.Tab("Leaderboard", elem_id="leaderboard-tab") as leaderboard_tab:
            gr.Markdown(
                "Bradley-Terry ratings (95% bootstrap interval) and win rates (ties count half; 95% Wilson "
                "interval) per adapter **revision**, from every vote so far."
            )
            table = gr.Dataframe(headers=HEADERS, interactive=False, label="Leaderboard", elem_id="leaderboard")
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
        arena_outputs += [regenerate_button, stop_button, send_button]
        # Gradio's progress marker (queue position, timer) is shown only where the work happens: under the panes
        # while they wait for their answers, on the panes while a new pair loads; quick events show none. Handlers
        # never fail in a page (refusals are written next to their cause), so no output is marked with "Error".
        quiet: dict[str, Any] = {"show_progress": "hidden"}
        on_panes = {"show_progress": "minimal", "show_progress_on": [chat_a, chat_b]}
        generating = {"concurrency_limit": 1, "concurrency_id": GENERATION_CONCURRENCY_ID}
        generating |= {"show_progress": "minimal", "show_progress_on": [stats_a, stats_b]}

        pickers_of = ((repo_1, rev_1, pick_note_1, chat_a), (repo_2, rev_2, pick_note_2, chat_b))
        handlers = ((pick_first_model, pick_first_revision), (pick_second_model, pick_second_revision))
        for side, ((repo, revision, note, pane), (on_model, on_revision)) in enumerate(
            zip(pickers_of, handlers, strict=True)
        ):
            other_repo, other_revision = pickers_of[1 - side][:2]
            loading = {"show_progress": "minimal", "show_progress_on": [note, pane]}
            name = ("first", "second")[side]
            outputs = [revision, *arena_outputs, note]
            repo.input(
                on_model, [match, repo, other_repo, other_revision], outputs, api_name=f"pick_{name}_repo", **loading
            )
            revision.input(
                on_revision,
                [match, repo, revision, other_repo, other_revision],
                outputs,
                api_name=f"pick_{name}_revision",
                **loading,
            )
        blind.input(
            set_blind,
            [blind, repo_1, rev_1, repo_2, rev_2],
            [pickers, battle_note, new_round_button, clear_button, *arena_outputs],
            api_name="blind_mode",
            **on_panes,
        )
        new_round_button.click(new_round, None, arena_outputs, api_name="new_round", **on_panes)

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
        stop_button.click(stop, match, arena_outputs, cancels=[sent, submitted, regenerated], api_name="stop", **quiet)
        clear_button.click(clear, match, arena_outputs, api_name="clear", **quiet)
        for button, (kind, _, name) in zip(vote_buttons_row, VOTES, strict=True):
            button.click(vote_for(kind), match, [*arena_outputs, table], api_name=name, **quiet)

        leaderboard_tab.select(leaderboard_table, None, table, api_name="leaderboard_tab", api_visibility="private")
        refresh_button.click(leaderboard_table, None, table, api_name="leaderboard")
        export_button.click(export_votes, None, export_file, api_name="export_votes")
        demo.load(
            on_load,
            [repo_1, rev_1, repo_2, rev_2],
            [rev_1, rev_2, pick_note_1, pick_note_2, *arena_outputs, table],
            api_name="load",
            api_visibility="private",
        )
    return demo


def count_tokens(count: int) -> str:
    """``1 token``, ``2 tokens``."""
    return f"{count} token" if count == 1 else f"{count} tokens"


def serve(demo: gr.Blocks, settings: SpaceSettings, **launch: Any) -> None:
    """Queue and launch ``demo`` as the Space does: a queue sized from the hardware (or ``PHI3_SPACE_QUEUE_SIZE``),
    the safe launch defaults of :func:`launch_kwargs`, the app's CSS. ``launch`` adds to or overrides them."""
    server = {key: launch.pop(key) for key in ("server_name", "server_port") if key in launch}
    demo.queue(**queue_kwargs(settings)).launch(css=CSS, **launch_kwargs(**server), **launch)


if __name__ == "__main__":
    settings = SpaceSettings.from_env(config_file=Path(__file__).with_name(CONFIG_FILE))
    serve(build_demo(SpaceRuntime.start(settings)), settings)
