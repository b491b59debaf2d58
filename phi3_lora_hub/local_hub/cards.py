"""Repo card (README.md) metadata: reading the YAML front matter and validating it like ``/api/validate-yaml``.

The checks are the structural ones the Hub applies to the fields this project writes: the front matter must
be a YAML mapping, list-like fields must be a string or a list of strings, text fields must be strings, a
Space must name a known SDK. Unknown license ids and a missing front matter are warnings, not errors.

The YAML is read by a loader that bounds what a small text can turn into: anchors and aliases are allowed, but
the metadata they expand to is capped (``MAX_EXPANDED_SIZE``), as is nesting (``MAX_DEPTH``). A "billion laughs"
card is refused at upload (validate-yaml and commit) and never expanded when the repo is read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from phi3_lora_hub.local_hub.repos import SPACE_SDKS

_TEXT_FIELDS = ("library_name", "pipeline_tag", "license_name", "license_link", "base_model_relation", "title")
_LIST_FIELDS = ("tags", "datasets", "language", "base_model", "metrics", "models")
_BASE_MODEL_RELATIONS = ("adapter", "merge", "quantized", "finetune")
# Reading the ids from one string keeps this list compact.
KNOWN_LICENSES = frozenset(
    """
    apache-2.0 mit openrail openrail++ bigscience-openrail-m creativeml-openrail-m
    bigscience-bloom-rail-1.0 bigcode-openrail-m afl-3.0 artistic-2.0 bsl-1.0 bsd bsd-2-clause
    bsd-3-clause bsd-3-clause-clear c-uda cc cc0-1.0 cc-by-2.0 cc-by-2.5 cc-by-3.0 cc-by-4.0
    cc-by-sa-3.0 cc-by-sa-4.0 cc-by-nc-2.0 cc-by-nc-3.0 cc-by-nc-4.0 cc-by-nd-4.0 cc-by-nc-nd-3.0
    cc-by-nc-nd-4.0 cc-by-nc-sa-2.0 cc-by-nc-sa-3.0 cc-by-nc-sa-4.0 cdla-sharing-1.0 cdla-permissive-1.0
    cdla-permissive-2.0 wtfpl ecl-2.0 epl-1.0 epl-2.0 etalab-2.0 eupl-1.1 eupl-1.2 agpl-3.0 gfdl gpl
    gpl-2.0 gpl-3.0 lgpl lgpl-2.1 lgpl-3.0 isc h-research intel-research lppl-1.3c ms-pl apple-ascl
    apple-amlr mpl-2.0 odc-by odbl openmdw-1.0 osl-3.0 postgresql ofl-1.1 ncsa unlicense zlib pddl
    lgpl-lr deepfloyd-if-license fair-noncommercial-research-license llama2 llama3 llama3.1 llama3.2
    llama3.3 llama4 gemma unknown other
    """.split()  # noqa: SIM905
)


MAX_DEPTH = 64
"""Deepest nesting of mappings and sequences accepted in card metadata."""
MAX_EXPANDED_SIZE = 2_000_000
"""Largest size of card metadata with every alias expanded: characters of its scalars plus one per node."""


class UnsafeMetadataError(yaml.YAMLError):
    """Card metadata that would expand beyond ``MAX_EXPANDED_SIZE`` or nest deeper than ``MAX_DEPTH``."""


class _BoundedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses nesting beyond ``MAX_DEPTH`` while composing (before any recursion)."""

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise UnsafeMetadataError(f"card metadata is nested more than {MAX_DEPTH} levels deep")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _check_expansion(root: yaml.Node) -> None:
    """Raise ``UnsafeMetadataError`` if ``root``, aliases expanded, is too large, too deep or recursive.

    Each distinct node is measured once (aliases share nodes), without recursion: linear in the YAML text.
    """
    measured: dict[int, tuple[int, int]] = {}  # node -> (expanded size, expanded depth)
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if id(node) in measured:
            continue
        children = _children(node)
        if not children_done:
            if any(id(child) in on_path for child in children) or id(node) in on_path:
                raise UnsafeMetadataError("card metadata contains a YAML alias to itself")
            on_path.add(id(node))
            stack.append((node, True))
            stack.extend((child, False) for child in children if id(child) not in measured)
            continue
        on_path.discard(id(node))
        size = 1 + (len(node.value) if isinstance(node, yaml.ScalarNode) else 0)
        size += sum(measured[id(child)][0] for child in children)
        depth = 1 + max((measured[id(child)][1] for child in children), default=0)
        if size > MAX_EXPANDED_SIZE:
            raise UnsafeMetadataError(
                f"card metadata expands to more than {MAX_EXPANDED_SIZE} characters through its YAML aliases; "
                "write the values out instead of repeating anchors"
            )
        if depth > MAX_DEPTH:
            raise UnsafeMetadataError(f"card metadata is nested more than {MAX_DEPTH} levels deep")
        measured[id(node)] = (size, depth)


def load_metadata(text: str) -> Any:
    """``text`` parsed like ``yaml.safe_load``, refused with ``UnsafeMetadataError`` when it would blow up.

    Raises ``yaml.YAMLError`` (of which ``UnsafeMetadataError`` is one) for text that is not valid YAML.
    """
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


@dataclass
class CardCheck:
    """The outcome of validating a card: error and warning messages (valid when ``errors`` is empty)."""

    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, list[dict[str, str]]]:
        return {
            "errors": [{"message": message} for message in self.errors],
            "warnings": [{"message": message} for message in self.warnings],
        }


def split_front_matter(content: str) -> str | None:
    """The YAML text between the leading ``---`` lines of a card, or ``None`` when it has no front matter."""
    lines = content.lstrip("\ufeff").splitlines()
    if not lines or lines[0].strip() != "---":
        return None
    for index, line in enumerate(lines[1:], start=1):
        if line.strip() == "---":
            return "\n".join(lines[1:index])
    return None


def card_data(content: str) -> dict[str, Any] | None:
    """The card's metadata as a dict, or ``None`` when it has none or it does not parse (never raises)."""
    text = split_front_matter(content)
    if text is None:
        return None
    try:
        value = load_metadata(text)
    except yaml.YAMLError:
        return None
    return value if isinstance(value, dict) else None


def metadata_refusal(content: str) -> str | None:
    """Why the metadata of card ``content`` is refused outright (blows up once expanded, too deep), or ``None``.

    Checked on every commit of ``README.md``; other problems are only reported by validation.
    """
    text = split_front_matter(content)
    try:
        if text is not None:
            load_metadata(text)
    except UnsafeMetadataError as error:
        return str(error)
    except yaml.YAMLError:
        return None
    return None


def _is_text_list(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, list) and all(isinstance(item, str) for item in value))


def validate_card(content: str, repo_type: str) -> CardCheck:
    """Validate the metadata of a repo card for a repository of type ``repo_type``."""
    check = CardCheck()
    text = split_front_matter(content)
    if text is None:
        check.warnings.append("empty or missing yaml metadata in repo card")
        return check
    try:
        metadata = load_metadata(text)
    except UnsafeMetadataError as error:
        check.errors.append(f"Refused card metadata: {error}")
        return check
    except yaml.YAMLError as error:
        check.errors.append(f"Invalid YAML in the card metadata: {error}")
        return check
    if metadata is None:
        check.warnings.append("empty or missing yaml metadata in repo card")
        return check
    if not isinstance(metadata, dict):
        check.errors.append(f'The card metadata must be a YAML mapping ("key: value"), got {type(metadata).__name__}')
        return check
    for key in _LIST_FIELDS:
        if key in metadata and not _is_text_list(metadata[key]):
            check.errors.append(f'"{key}" must be a string or a list of strings')
    for key in _TEXT_FIELDS:
        if key in metadata and not isinstance(metadata[key], str):
            check.errors.append(f'"{key}" must be a string')
    license_id = metadata.get("license")
    if license_id is not None:
        if not isinstance(license_id, str):
            check.errors.append('"license" must be a string')
        elif license_id not in KNOWN_LICENSES:
            check.warnings.append(f'"license" {license_id!r} is not a known license id; use "other" and license_name')
    relation = metadata.get("base_model_relation")
    if isinstance(relation, str) and relation not in _BASE_MODEL_RELATIONS:
        check.errors.append(f'"base_model_relation" must be one of {", ".join(_BASE_MODEL_RELATIONS)}')
    if "model-index" in metadata and not isinstance(metadata["model-index"], list):
        check.errors.append('"model-index" must be a list')
    if repo_type == "space":
        sdk = metadata.get("sdk")
        if sdk is not None and sdk not in SPACE_SDKS:
            check.errors.append(f'"sdk" must be one of {", ".join(SPACE_SDKS)}')
        for key in ("sdk_version", "app_file", "emoji", "colorFrom", "colorTo"):
            if key in metadata and not isinstance(metadata[key], str | int | float):
                check.errors.append(f'"{key}" must be a string')
    return check
