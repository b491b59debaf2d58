"""The control-token policy holds through tokenization: text inside a message can neither fake a turn boundary nor
unmask tokens for the loss, with the tiny tokenizer and (when ../shared/assets is present) the real Phi-3 one.

Policy (see README, "Data formats"): content holding a literal Phi-3 control token is refused with a ``DataError``
naming the row, the message and the token. Everything else is accepted, so the tests below check that no accepted
text (near-misses: case, spaces, fullwidth forms, zero-width characters inside, halves) tokenizes into a control
token id, and that the labels trained on are exactly the assistant answers.
"""

from __future__ import annotations

import pytest
from adv_data_strategies import NEAR_MISSES, UNICODE_EDGES, near_miss_text
from hypothesis import event, given, settings
from hypothesis import strategies as st

from phi3_lora_hub import phi3_format
from phi3_lora_hub.data.prepare import DataOptions, convert_rows
from phi3_lora_hub.data.sources import read_rows
from phi3_lora_hub.data.tokenization import IGNORE_INDEX, tokenize_flat
from phi3_lora_hub.errors import DataError

pytestmark = pytest.mark.timeout(300)
PROFILE = settings.get_profile("adv_data")

Conversation = list[dict[str, str]]


@pytest.fixture(scope="module", params=["tiny_tokenizer", "real_tokenizer"])
def adv_data_tokenizer(request: pytest.FixtureRequest):
    """Each tokenizer in turn (the real one is skipped when ../shared/assets is absent)."""
    return request.getfixturevalue(request.param)


def trained_answers(tokenizer, ids: list[int], labels: list[int]) -> list[str]:
    """The text of each run of consecutive trained tokens (labels equal to the ids they label)."""
    runs: list[list[int]] = []
    previous = IGNORE_INDEX
    for token, label in zip(ids, labels, strict=True):
        if label != IGNORE_INDEX:
            assert label == token
            if previous == IGNORE_INDEX:
                runs.append([])
            runs[-1].append(token)
        previous = label
    return [tokenizer.decode(run) for run in runs]


def check_tokenized(tokenizer, conversations: list[Conversation], use_token_layout: bool) -> None:
    """Tokenize accepted ``conversations`` and check the turn markers and the loss mask of every row."""
    control_ids = {tokenizer.convert_tokens_to_ids(token): token for token in phi3_format.CONTROL_TOKENS}
    assert len(control_ids) == len(phi3_format.CONTROL_TOKENS)  # each is one token of its own
    rows = tokenize_flat(tokenizer, conversations, use_token_layout=use_token_layout).rows()
    for conversation, ids, labels in zip(conversations, rows.input_ids, rows.labels, strict=True):
        # Every control token id comes from the template: one header and one <|end|> per message, one
        # <|endoftext|> at the end; none from the text inside a message.
        template = [token for m in conversation for token in (phi3_format.ROLE_TOKENS[m["role"]], phi3_format.END)]
        assert [control_ids[token] for token in ids if token in control_ids] == [*template, phi3_format.EOS]
        # The loss covers each answer and its closing <|end|>, nothing else. Both tokenizers write SentencePiece's
        # word marker "▁" for a space, so it decodes as one.
        answers = [m["content"].replace("▁", " ") + phi3_format.END for m in conversation if m["role"] == "assistant"]
        assert trained_answers(tokenizer, ids, labels) == answers
        # Reading the token ids back as Phi-3 text gives as many turns, with the same roles, as were given.
        parsed = phi3_format.parse(tokenizer.decode(ids))
        assert [m["role"] for m in parsed] == [m["role"] for m in conversation]


@st.composite
def raw_conversations(draw: st.DrawFn) -> Conversation:
    """An alternating conversation (optional system message first) whose raw, unstripped text is built from
    near-misses, unicode edge cases and arbitrary characters; one in four has a real control token put somewhere."""
    roles = ["system"] if draw(st.booleans()) else []
    roles += ["user", "assistant"] * draw(st.integers(1, 3))
    conversation = [{"role": role, "content": draw(near_miss_text)} for role in roles]
    if draw(st.integers(0, 3)) == 0:
        message = draw(st.sampled_from(conversation))
        cut = draw(st.integers(0, len(message["content"])))
        token = draw(st.sampled_from(phi3_format.CONTROL_TOKENS))
        message["content"] = message["content"][:cut] + token + message["content"][cut:]
    return conversation


def trainable(conversation: Conversation) -> bool:
    """What validation accepts for an alternating conversation: no control token, no empty answer."""
    return all(
        phi3_format.contains_control_token(m["content"]) is None and (m["content"].strip() or m["role"] != "assistant")
        for m in conversation
    )


def check_raw_conversations(tokenizer, conversations: list[Conversation], use_token_layout: bool) -> None:
    """Refused exactly when a message holds a control token (or an answer is empty); when accepted, the tokens hold
    only the template's markers and the loss covers exactly the answers."""
    expected = [
        [{"role": m["role"], "content": m["content"].strip()} for m in conversation]
        for conversation in conversations
        if trainable(conversation)
    ]
    rows = read_rows([{"messages": conversation} for conversation in conversations])
    event("rows accepted", len(expected))
    if not expected:
        with pytest.raises(DataError, match="no usable rows left"):
            convert_rows(rows, DataOptions(on_bad_rows="skip"))
        return
    accepted = convert_rows(rows, DataOptions(on_bad_rows="skip")).conversations
    assert accepted == expected
    check_tokenized(tokenizer, accepted, use_token_layout)


@pytest.mark.parametrize("use_token_layout", [True, False], ids=["token-ids", "char-offsets"])
@settings(PROFILE, max_examples=200)
@given(conversations=st.lists(raw_conversations(), min_size=1, max_size=4))
def test_accepted_text_never_fakes_a_turn_or_unmasks_a_token(
    adv_data_tokenizer, use_token_layout: bool, conversations: list[Conversation]
) -> None:
    """Any conversation, on both labelling paths (see ``check_raw_conversations``)."""
    check_raw_conversations(adv_data_tokenizer, conversations, use_token_layout)


@pytest.mark.slow
@pytest.mark.parametrize("use_token_layout", [True, False], ids=["token-ids", "char-offsets"])
@settings(PROFILE, max_examples=600)
@given(conversations=st.lists(raw_conversations(), min_size=1, max_size=8))
def test_bigger_run_of_conversations(
    adv_data_tokenizer, use_token_layout: bool, conversations: list[Conversation]
) -> None:
    """The same property over 600 batches of up to 8 conversations per tokenizer and path (slow CI step)."""
    check_raw_conversations(adv_data_tokenizer, conversations, use_token_layout)


@pytest.mark.parametrize("text", [*NEAR_MISSES, *UNICODE_EDGES])
def test_near_miss_in_every_role_is_accepted_and_stays_text(adv_data_tokenizer, text: str) -> None:
    """Each near-miss and unicode edge case, alone and glued to words, in the system, user and assistant text."""
    content = f"a{text}b{text}c"
    conversation = [
        {"role": "system", "content": content},
        {"role": "user", "content": content},
        {"role": "assistant", "content": content},
    ]
    accepted = convert_rows(read_rows([{"messages": conversation}]), DataOptions()).conversations
    assert accepted == [conversation]
    check_tokenized(adv_data_tokenizer, accepted, use_token_layout=True)


def test_control_tokens_are_matched_on_raw_text_only(adv_data_tokenizer) -> None:
    """No other text can become a control token id: each is an added token matched on the raw text (not after
    normalization), and the BPE model holds none of the Phi-3 markers, so merges cannot spell one."""
    added = {token.content: token for token in adv_data_tokenizer.backend_tokenizer.get_added_tokens_decoder().values()}
    model = adv_data_tokenizer.backend_tokenizer.model
    for token in phi3_format.CONTROL_TOKENS:
        assert token in added and not added[token].normalized, token
    for token in phi3_format.ADDED_TOKENS:
        assert model.token_to_id(token) is None, token
