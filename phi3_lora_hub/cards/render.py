"""Render and write model cards: YAML metadata through ``ModelCardData``, the body from a Jinja template.

The default template is ``model_card_templates/phi3_lora_adapter.md.j2`` (shipped inside the wheel as
``phi3_lora_hub/model_card_templates``); any other template file can be given instead.
"""

from __future__ import annotations

import re
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any

from phi3_lora_hub.cards.context import (
    TEMPLATE_VARIABLES,
    CardOptions,
    base_model_of,
    build_context,
    data_description,
    hub_model_id,
    trainer_evaluation_data,
)
from phi3_lora_hub.cards.loss_curve import draw_loss_curve
from phi3_lora_hub.cards.run_files import RunFiles
from phi3_lora_hub.errors import ConfigError, closest
from phi3_lora_hub.run_file_names import CARD_NAME, LORALIB_CONFIG, LOSS_CURVE_NAME

DEFAULT_TEMPLATE = "phi3_lora_adapter.md.j2"
TEMPLATES_PACKAGE = "phi3_lora_hub.model_card_templates"
BASE_TAGS = ("phi3", "peft", "lora", "sft", "trl", "text-generation", "phi3-lora-hub")


def templates_dir() -> Path:
    """The folder of the bundled templates: the package ``phi3_lora_hub.model_card_templates``, which is the
    top-level ``model_card_templates/`` of a checkout (editable installs map it there) and ships in the wheel."""
    return Path(str(resources.files(TEMPLATES_PACKAGE)))


def template_path(template: str | Path | None = None) -> Path:
    """The template file to use: ``template`` when given (checked to exist), else the bundled default."""
    if template is None:
        return templates_dir() / DEFAULT_TEMPLATE
    path = Path(template).expanduser()
    if not path.is_file():
        raise ConfigError(f"Model card template {str(path)!r} does not exist; pass the path of a Jinja Markdown file.")
    return path


def check_template(template: str | Path) -> Path:
    """The template file, checked before any training: it exists, parses, and names only variables a card has.

    Raises ``ConfigError`` naming the line of a syntax error, or an unknown variable and the closest known one.
    (A misspelt attribute, ``row.stepp``, can only be found when the card is rendered.)
    """
    import inspect

    import jinja2
    import jinja2.meta
    from huggingface_hub import ModelCardData

    path = template_path(template)
    try:
        parsed = jinja2.Environment().parse(path.read_text(encoding="utf-8"))
    except jinja2.TemplateSyntaxError as error:
        raise ConfigError(f"Model card template {path}, line {error.lineno}: {error.message}.") from None
    metadata = set(inspect.signature(ModelCardData.__init__).parameters) - {"self", "kwargs"}
    known = [*TEMPLATE_VARIABLES, "card_data", *sorted(metadata)]
    for name in sorted(jinja2.meta.find_undeclared_variables(parsed)):
        if name not in known:
            suggestion = closest(name, known)
            did_you_mean = f" Did you mean {suggestion!r}?" if suggestion else ""
            raise ConfigError(
                f"Model card template {path} uses the variable {name!r}, which cards do not define.{did_you_mean} "
                "The variables are listed in phi3_lora_hub.cards.TEMPLATE_VARIABLES."
            )
    return path


def card_data(files: RunFiles, options: CardOptions) -> Any:
    """The ``ModelCardData`` (YAML metadata) of the run in ``files``."""
    from huggingface_hub import EvalResult, ModelCardData

    recipe = files.recipe or {}
    base_id = hub_model_id(base_model_of(files, options))
    dataset_id = hub_model_id(options.dataset or recipe.get("dataset"))
    tags = list(BASE_TAGS)
    if (files.directory / LORALIB_CONFIG).is_file():
        tags.append("loralib")
    if recipe.get("quantization"):
        tags.append("qlora")
    dataset_name = (
        dataset_id or options.dataset or ((files.data_report or {}).get("train") or {}).get("source") or "custom"
    )
    if files.evaluation is not None:  # the same numbers as the evaluation table of the card, on the same data
        evaluated_id = next(
            (
                hub_id
                for hub_id in map(hub_model_id, (recipe.get("eval_dataset"), recipe.get("dataset")))
                if hub_id and files.evaluation.dataset.startswith(hub_id)
            ),
            None,
        )
        eval_results = files.evaluation.eval_results(dataset_type=evaluated_id, dataset_name=evaluated_id)
    else:  # no evaluation report: the Trainer's evaluation loss, when there was one, on the evaluation data
        losses = [e["eval_loss"] for e in files.log_history if isinstance(e.get("eval_loss"), (int, float))]
        evaluated = data_description(trainer_evaluation_data(files)) or dataset_name
        eval_results = (
            [
                EvalResult(
                    task_type="text-generation",
                    task_name="Chat",
                    dataset_type=hub_model_id(recipe.get("eval_dataset") or recipe.get("dataset")) or evaluated,
                    dataset_name=evaluated,
                    dataset_split=recipe.get("eval_split"),
                    metric_type="loss",
                    metric_name="Evaluation loss (assistant tokens)",
                    metric_value=round(float(losses[-1]), 4),
                )
            ]
            if losses
            else []
        )
    return ModelCardData(
        base_model=base_id,
        library_name="peft",
        pipeline_tag="text-generation",
        license=options.license,
        tags=tags,
        datasets=[dataset_id] if dataset_id else None,
        model_name=options.repo_id.split("/")[-1],
        eval_results=eval_results or None,
    )


def _render(files: RunFiles, options: CardOptions, template: str | Path | None) -> Any:
    """Render like ``ModelCard.from_template`` (the card data's fields and ``card_data`` as YAML, then the context),
    but with ``StrictUndefined``: a misspelt variable in a user's template is a ``ConfigError`` naming it and the
    closest variable there is, not an empty string in the published card."""
    import jinja2
    from huggingface_hub import ModelCard

    path = template_path(template)
    data = card_data(files, options)
    variables = {**data.to_dict(), **build_context(files, options)}
    try:
        body = jinja2.Template(path.read_text(encoding="utf-8"), undefined=jinja2.StrictUndefined)
        content = body.render(card_data=data.to_yaml(), **variables)
    except jinja2.TemplateSyntaxError as error:
        raise ConfigError(f"Model card template {path}, line {error.lineno}: {error.message}.") from None
    except jinja2.UndefinedError as error:
        name = re.search(r"'([^']+)' is undefined", str(error))
        suggestion = closest(name.group(1), [*variables, "card_data"]) if name else None
        did_you_mean = f" Did you mean {suggestion!r}?" if suggestion else ""
        raise ConfigError(
            f"Model card template {path}: {error}.{did_you_mean} Its variables are listed in "
            "phi3_lora_hub.cards.TEMPLATE_VARIABLES (plus card_data and the metadata fields)."
        ) from None
    return ModelCard(content)


def render_card(directory: str | Path, options: CardOptions, template: str | Path | None = None) -> Any:
    """The ``huggingface_hub.ModelCard`` of the adapter or checkpoint in ``directory`` (nothing is written)."""
    return _render(RunFiles.read(directory), options, template)


def write_card(
    directory: str | Path, options: CardOptions, template: str | Path | None = None, *, evaluation: Any = None
) -> Any:
    """Draw ``loss_curve.png`` and write ``README.md`` into ``directory``; return the ``ModelCard``.

    The card describes the step of the files in ``directory`` (its loss curve ends there too). ``evaluation`` (an
    ``EvaluationReport``) is shown instead of the directory's own ``eval_results.json``, when given.
    """
    directory = Path(directory)
    files = RunFiles.read(directory)
    if evaluation is not None:
        files.evaluation = evaluation
    drawn = draw_loss_curve(files.log_history, directory / LOSS_CURVE_NAME, up_to=files.step)
    if not drawn:
        (directory / LOSS_CURVE_NAME).unlink(missing_ok=True)
    card = _render(files, replace(options, loss_curve=LOSS_CURVE_NAME if drawn else None), template)
    (directory / CARD_NAME).write_text(str(card), encoding="utf-8")
    return card
