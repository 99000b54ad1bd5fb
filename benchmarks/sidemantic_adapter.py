"""The project's MetricFlow YAML loaded into sidemantic (the open peer of `make bench`), unchanged.

sidemantic 0.13's MetricFlow loader needs three things this project's files do not give it,
so they are done here, on copies in a temporary folder, never in the project's YAML:

- saved_queries/ is left out: the loader rejects saved-query files;
- a measure named like the simple metric over it (``sessions`` over ``sessions``) becomes
  ``<name>_measure``: with both named alike, resolving the metric recurses into itself;
- entity roles: the loader turns a foreign entity (``user``) into a relationship named after
  the entity, while sidemantic joins along relationships named after the model they reach
  (``users``): each is renamed after its target model.

Model tables point at the marts (``marts.<table>``), where dbt built them; MetricFlow's
agg_time_dimension is not made sidemantic's default time dimension (which it would group
every query by, asked or not). For the peer's own conversion logic, sidemantic's conversion
metric over the session events is added beside the project's (a ratio over page views).
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

import yaml
from sidemantic import Metric, SemanticLayer
from sidemantic.adapters.metricflow import MetricFlowAdapter
from sidemantic.core.relationship import Relationship

from greenery.warehouse import store

MEASURE_SUFFIX = "_measure"
_REF = re.compile(r"ref\(\s*['\"](\w+)['\"]\s*\)")
# sidemantic's conversion metric for session_view_to_checkout_conversion: the share of sessions
# with a page view that have a checkout at or after it, in the same session (MetricFlow's
# definition has no window; sessions end within hours, so 36500 days is "no window").
CONVERSIONS = {
    "session_view_to_checkout_conversion": Metric(
        name="session_view_to_checkout_conversion",
        type="conversion",
        entity="session_id",
        base_event="page_view",
        conversion_event="checkout",
        conversion_window="36500 days",
    ),
}
CONVERSION_MODEL = "session_events"


def _rename_measures(semantic_models: list[dict[str, Any]], metrics: list[dict[str, Any]]) -> None:
    """Measures named like a metric get a suffix; the metrics over them follow."""
    metric_names = {m["name"] for m in metrics}
    renamed: dict[str, str] = {}
    for model in semantic_models:
        for measure in model.get("measures") or []:
            if measure["name"] in metric_names:
                renamed[measure["name"]] = measure["name"] + MEASURE_SUFFIX
                measure["name"] = renamed[measure["name"]]
    for metric in metrics:
        params = metric.get("type_params") or {}
        measure = params.get("measure")
        if isinstance(measure, str) and measure in renamed:
            params["measure"] = renamed[measure]
        elif isinstance(measure, dict) and measure.get("name") in renamed:
            measure["name"] = renamed[measure["name"]]


def project_yaml(project_dir: Path, into: Path) -> Path:
    """The semantic models and metrics of the project, transformed for sidemantic, in `into`."""
    semantic_models: list[dict[str, Any]] = []
    metrics: list[dict[str, Any]] = []
    for path in sorted((project_dir / "semantic_models").glob("*.yml")):
        semantic_models += yaml.safe_load(path.read_text()).get("semantic_models") or []
    for path in sorted((project_dir / "metrics").glob("*.yml")):
        metrics += yaml.safe_load(path.read_text()).get("metrics") or []
    _rename_measures(semantic_models, metrics)
    into.mkdir(parents=True, exist_ok=True)
    (into / "semantic_models.yml").write_text(yaml.safe_dump({"semantic_models": semantic_models}))
    (into / "metrics.yml").write_text(yaml.safe_dump({"metrics": metrics}))
    return into


def load(warehouse_file: Path, project_dir: Path = store.PROJECT_DIR) -> SemanticLayer:
    """A sidemantic layer over the warehouse (read-only), with the project's models and metrics."""
    with tempfile.TemporaryDirectory(prefix="greenery-sidemantic-") as tmp:
        folder = project_yaml(project_dir, Path(tmp))
        graph = MetricFlowAdapter().parse(folder)
        semantic_models = yaml.safe_load((folder / "semantic_models.yml").read_text())["semantic_models"]
    layer = SemanticLayer(connection=f"duckdb:///{warehouse_file}?read_only=true", auto_register=False)
    tables = {m["name"]: _REF.search(m["model"]).group(1) for m in semantic_models}
    for name, model in graph.models.items():
        model.table = f"marts.{tables[name]}"
        model.default_time_dimension = None  # MetricFlow's agg_time_dimension is no implicit group-by
        _join_by_model_name(model, set(graph.models))
        layer.add_model(model)
    for metric in graph.metrics.values():
        layer.add_metric(metric)
    for metric in CONVERSIONS.values():
        graph.models[CONVERSION_MODEL].metrics.append(metric)
    return layer


def _join_by_model_name(model: Any, models: set[str]) -> None:
    """The loader names each relationship after the entity's role (``user``) with the model it
    reaches as target (``users``); sidemantic joins by relationship name, so name it by model."""
    model.relationships = [
        Relationship(name=r.target_model, type=r.type, foreign_key=r.foreign_key, primary_key=r.primary_key)
        if r.name not in models and r.target_model in models
        else r
        for r in model.relationships
    ]
