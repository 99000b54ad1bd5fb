"""The metadata of one published version: metrics, dimensions, entities, measures, saved queries.

Computed once per published version from MetricFlow's engine (`list_metrics`,
`simple_dimensions_for_metrics`, the group-by items of metrics, `list_saved_queries`), in the shapes
dbt's Semantic Layer API names them; every protocol reads it from here.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from metricflow.engine.metricflow_engine import ENTITY_WITH_ANY_PROPERTIES
from metricflow.engine.models import Dimension as MfDimension
from metricflow_semantic_interfaces.references import MetricReference, SemanticModelElementReference
from metricflow_semantic_interfaces.type_enums import DimensionType, MetricType
from metricflow_semantic_interfaces.type_enums.time_granularity import TimeGranularity
from metricflow_semantics.model.semantics.element_filter import GroupByItemSetFilter
from metricflow_semantics.model.semantics.metric_lookup import MetricLookup
from metricflow_semantics.toolkit.syntactic_sugar import mf_first_item

from greenery.semantic import filters
from greenery.semantic.layer import SemanticLayer

_STANDARD_GRAINS = sorted(TimeGranularity, key=lambda g: g.to_int())
MAX_PAGE_SIZE = 1000
MAX_SEARCH_TERMS = 100  # searchTerms of one metricsPaginated call
Json = dict[str, Any]


@dataclass(frozen=True)
class Page:
    """One page of a searched list, as dbt's paginated fields return it (pages count from 1)."""

    page_num: int
    page_size: int
    total_items: int
    items: list[Json]

    @property
    def total_pages(self) -> int:
        return math.ceil(self.total_items / self.page_size)

    def as_json(self) -> Json:
        return {
            "pageNum": self.page_num,
            "pageSize": self.page_size,
            "totalItems": self.total_items,
            "totalPages": self.total_pages,
            "items": self.items,
        }


def page(
    items: Sequence[Json],
    *,
    search: str | None = None,
    search_terms: Sequence[str] = (),
    page_num: int = 1,
    page_size: int = 100,
) -> Page:
    """The items whose name, label or description contains `search` (or any of `search_terms`,
    case-insensitive), cut to one page."""
    if page_num < 1:
        raise ValueError(f"pageNum counts from 1 (got {page_num})")
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValueError(f"pageSize must be between 1 and {MAX_PAGE_SIZE} (got {page_size})")
    if len(search_terms) > MAX_SEARCH_TERMS:
        raise ValueError(f"at most {MAX_SEARCH_TERMS} searchTerms (got {len(search_terms)})")
    terms = [t.strip().lower() for t in [search or "", *search_terms] if t and t.strip()]
    searchable = [(item, _searchable(item)) for item in items]
    found = [item for item, text in searchable if not terms or any(t in text for t in terms)]
    start = (page_num - 1) * page_size
    return Page(page_num, page_size, len(found), list(found[start : start + page_size]))


def _searchable(item: Json) -> str:
    return " ".join(str(item.get(key) or "") for key in ("name", "label", "description")).lower()


def _config(element: Any) -> Json:
    """``config { meta }`` as dbt's API answers it: the YAML's ``meta:``, {} when none."""
    config = getattr(element, "config", None)
    meta = getattr(config, "meta", None) if config is not None else None
    return {"meta": dict(meta or {})}


# ---- metadata ----------------------------------------------------------------------------


def _grain_name(grain: object) -> str:
    """A grain as a lower-case name, whether MetricFlow gives an enum, a custom grain or a string."""
    if isinstance(grain, TimeGranularity):
        return grain.value
    return str(getattr(grain, "name", grain)).lower()


def _grains_from(smallest: object, custom: Sequence[str]) -> tuple[list[str], list[str]]:
    """(TimeGranularity enum names, grain names incl. custom ones) queryable from `smallest` up."""
    floor = next((g.to_int() for g in _STANDARD_GRAINS if g.value == _grain_name(smallest)), 0)
    standard = [g for g in _STANDARD_GRAINS if g.to_int() >= floor]
    return [g.name for g in standard], [g.value for g in standard] + list(custom)


class Catalog:
    """The metadata of one published version, as the GraphQL API returns it (built once)."""

    def __init__(self, layer: SemanticLayer, engine_lock: threading.Lock) -> None:
        self._engine = layer.engine
        self._lookup = layer.lookup
        self._lock = engine_lock
        manifest = layer.lookup.semantic_manifest
        self._custom_grains = [
            g.name for spine in manifest.project_configuration.time_spines for g in spine.custom_granularities
        ]
        self.model_entities: dict[str, list[Json]] = {
            model.name: [
                {"name": e.name, "description": e.description, "type": e.type.value.upper()}
                for e in model.entities
            ]
            for model in manifest.semantic_models
        }
        self._measure_models = {
            measure.name: model.name for model in manifest.semantic_models for measure in model.measures
        }
        self._non_additive = {
            measure.name
            for model in manifest.semantic_models
            for measure in model.measures
            if measure.non_additive_dimension is not None
        }
        self._measures: dict[str, Json] = {
            measure.name: {
                "name": measure.name,
                "aggTimeDimension": measure.agg_time_dimension
                or (model.defaults.agg_time_dimension if model.defaults else None),
                "agg": measure.agg.value.upper(),
                "expr": measure.expr or measure.name,
            }
            for model in manifest.semantic_models
            for measure in model.measures
        }
        with self._lock:
            self.metrics: list[Json] = [
                self._metric(m) for m in self._engine.list_metrics(include_dimensions=True)
            ]
            self.saved_queries: list[Json] = [self._saved_query(q) for q in self._engine.list_saved_queries()]
        self._by_name = {m["name"]: m for m in self.metrics}
        self.environment_info: Json = {
            "sqlDialect": layer.client.sql_engine_type.name,
            "hasMetricsDefined": bool(self.metrics),
            "dialect": layer.client.sql_engine_type.name,
            "dialectSupportedBySlg": True,
        }

    def metrics_for(self, group_by: Sequence[str]) -> list[Json]:
        """The metrics queryable by every one of these dimension or entity names (all when none)."""
        wanted = set(group_by)
        return [
            m
            for m in self.metrics
            if wanted <= {d["name"] for d in m["dimensions"]} | {e["name"] for e in m["entities"]}
        ]

    def dimensions(self, metric_names: Sequence[str]) -> list[Json]:
        """Dimensions common to all the metrics (all dimensions when no metric is named)."""
        names = self._known(metric_names)
        if len(names) == 1:
            return self._by_name[names[0]]["dimensions"]
        with self._lock:
            found = self._engine.list_dimensions(metric_names=names or None)
        return self._unique([self._dimension(d) for d in found])

    def entities(self, metric_names: Sequence[str]) -> list[Json]:
        names = self._known(metric_names)
        if len(names) == 1:
            return self._by_name[names[0]]["entities"]
        if not names:  # every entity some metric can be grouped by
            return self._unique([e for m in self.metrics for e in m["entities"]])
        with self._lock:
            return self._groupable_entities(names)

    def measures(self, metric_names: Sequence[str]) -> list[Json]:
        names = self._known(metric_names) or list(self._by_name)
        return self._unique([m for name in names for m in self._by_name[name]["measures"]])

    def _known(self, metric_names: Sequence[str]) -> list[str]:
        unknown = [n for n in metric_names if n not in self._by_name]
        if unknown:
            known = ", ".join(sorted(self._by_name))
            raise ValueError(f"unknown metric(s) {', '.join(map(repr, unknown))}; known: {known}")
        return list(dict.fromkeys(metric_names))

    @staticmethod
    def _unique(items: list[Json]) -> list[Json]:
        """The first item of each name, in order (MetricFlow lists some once per semantic model)."""
        first: dict[str, Json] = {}
        for item in items:
            first.setdefault(item["name"], item)
        return list(first.values())

    def _metric(self, metric: Any) -> Json:
        reference = MetricReference(metric.name)
        smallest = self._lookup.metric_lookup.get_min_queryable_time_granularity(reference)
        enum_grains, grains = _grains_from(smallest, self._custom_grains)
        pydantic = self._lookup.metric_lookup.get_metric(reference)
        return {
            "name": metric.name,
            "description": metric.description,
            "type": metric.type.value.upper(),
            "queryableGranularities": enum_grains,
            "queryableTimeGranularities": grains,
            "label": metric.label or metric.name,
            "requiresMetricTime": self._requires_metric_time(metric.name),
            "dimensions": self._unique([self._dimension(d) for d in metric.dimensions]),
            "measures": [
                self._measures[m.name]
                for m in pydantic.type_params.input_measures
                if m.name in self._measures
            ],
            "entities": self._groupable_entities([metric.name]),
            "config": _config(metric),
        }

    def _requires_metric_time(self, name: str) -> bool:
        """Whether MetricFlow refuses the metric without metric_time (offsets, windowed cumulative)."""
        metric = self._lookup.metric_lookup.get_metric(MetricReference(name))
        params = metric.type_params
        if metric.type is MetricType.CUMULATIVE:
            cumulative = params.cumulative_type_params
            if (
                params.window
                or params.grain_to_date
                or (cumulative and (cumulative.window or cumulative.grain_to_date))
            ):
                return True
        if metric.type is MetricType.DERIVED and any(
            i.offset_window is not None or i.offset_to_grain is not None for i in metric.input_metrics
        ):
            return True
        inputs = MetricLookup.metric_inputs(metric, include_conversion_metric_input=False)
        return any(self._requires_metric_time(i.name) for i in inputs)

    def filter_commutes(self, name: str) -> bool:
        """Whether filtering the rows first gives what filtering the answer gives.

        True for simple metrics and ratios or sums of them: a filter on a group-by column may
        then go into MetricFlow's query. Not for offsets, cumulative windows or conversions,
        whose values for one group read rows of others.
        """
        metric = self._lookup.metric_lookup.get_metric(MetricReference(name))
        if metric.type in (MetricType.CUMULATIVE, MetricType.CONVERSION) or self._requires_metric_time(name):
            return False
        inputs = MetricLookup.metric_inputs(metric, include_conversion_metric_input=True)
        return all(self.filter_commutes(i.name) for i in inputs)

    def has_every_group(self, name: str) -> bool:
        """Whether the metric has a row for every group of its semantic model's rows: a simple
        metric with no filter, on a measure additive over time, nulls not filled from a time
        spine. Grouped by dimensions with such a metric, MetricFlow gives the groups that occur
        in the model's rows; with no metric, every value of the dimensions' own tables and, for
        metric_time, every day of the time spine."""
        metric = self._lookup.metric_lookup.get_metric(MetricReference(name))
        measure = metric.type_params.measure
        return (
            metric.type is MetricType.SIMPLE
            and metric.filter is None
            and measure is not None
            and measure.filter is None
            and not measure.join_to_timespine
            and measure.fill_nulls_with is None
            and measure.name not in self._non_additive
        )

    def home_model(self, name: str) -> str:
        """The semantic model whose measures a metric reads (its first one's)."""
        metric = self._lookup.metric_lookup.get_metric(MetricReference(name))
        measures = metric.type_params.input_measures
        if not measures:
            return self.home_model(metric.input_metrics[0].name)
        return self._measure_models[measures[0].name]

    def _dimension(self, dimension: MfDimension) -> Json:
        enum_grains, grains = (
            _grains_from(dimension.type_params.time_granularity, self._custom_grains)
            if dimension.type is DimensionType.TIME and dimension.type_params is not None
            else ([], [])
        )
        name = dimension.granularity_free_dunder_name
        return {
            "name": name,
            "qualifiedName": name,
            "description": dimension.description,
            "type": dimension.type.value.upper(),
            "label": dimension.label,
            "isPartition": dimension.is_partition,
            "expr": dimension.expr,
            "queryableGranularities": enum_grains,
            "queryableTimeGranularities": grains,
            "config": _config(dimension),
        }

    def _groupable_entities(self, metric_names: Sequence[str]) -> list[Json]:
        """The entities all the metrics can be grouped by, named as a query names them.

        MetricFlow's ``entities_for_metrics`` drops the join path (``order`` where a
        product-session metric reaches it only as ``session__order``); this keeps it.
        """
        found = self._lookup.metric_lookup.get_common_group_by_items(
            metric_references=tuple(MetricReference(name) for name in metric_names),
            set_filter=GroupByItemSetFilter.create(any_properties_allowlist=ENTITY_WITH_ANY_PROPERTIES),
        )
        entities: list[Json] = []
        for annotated in found.annotated_specs:
            origin = mf_first_item(annotated.origin_semantic_model_references)
            entity = self._lookup.semantic_model_lookup.get_entity_in_semantic_model(
                SemanticModelElementReference(origin.semantic_model_name, annotated.spec.element_name)
            )
            if entity is not None:
                entities.append(self._entity(entity, annotated.spec.dunder_name))
        return self._unique(entities)

    @staticmethod
    def _entity(entity: Any, name: str) -> Json:
        return {
            "name": name,
            "description": entity.description,
            "type": entity.type.value.upper(),
            "role": entity.role or entity.name,
            "expr": entity.expr or entity.name,
            "config": _config(entity),
        }

    @staticmethod
    def _saved_query(query: Any) -> Json:
        params = query.query_params
        where = [f.where_sql_template for f in params.where.where_filters] if params.where else []
        return {
            "name": query.name,
            "description": query.description,
            "label": query.label,
            "queryParams": {
                "metrics": [{"name": m} for m in params.metrics],
                "groupBy": [_saved_group_by(g) for g in params.group_by],
                "where": {
                    "whereSqlTemplate": " AND ".join(f"({w})" for w in where) if len(where) > 1 else where[0]
                }
                if where
                else None,
            },
            "exports": [
                {
                    "name": export.name,
                    "config": {
                        "alias": export.config.alias,
                        "schema": export.config.schema_name,
                        "exportAs": export.config.export_as.value.upper(),
                    },
                }
                for export in query.exports
            ],
        }


def _saved_group_by(text: str) -> Json:
    """``TimeDimension('metric_time', 'week')`` → name metric_time, grain WEEK, timeGranularity week."""
    try:
        reference = filters.parse_reference(text)
    except ValueError:  # not the object syntax: a plain name such as ``metric_time__week``
        return {"name": text.strip(), "grain": None, "timeGranularity": None, "datePart": None}
    grain = reference.grain.lower() if reference.grain else None
    standard = {g.value for g in TimeGranularity}
    return {
        "name": reference.name,
        "grain": grain.upper() if grain in standard else None,
        "timeGranularity": grain,
        "datePart": reference.date_part.upper() if reference.date_part else None,
    }
