"""The seven Greenery source tables as the course defined them (raw.public in Snowflake).

One place that knows the raw schema: the loader validates against it, the generator
produces it, and the warehouse creates its tables from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# `uuid`: a uuid, given as text of 8-4-4-4-12 hex digits; stored as DuckDB's 16-byte uuid type here
# (what the models read it as, macros/id_type.sql) and as text on Snowflake.
ColumnType = Literal["varchar", "uuid", "integer", "real", "timestamp"]

# DuckDB types for the course DDL. `real` is stored as DOUBLE, the width of Snowflake's
# FLOAT (what the course's `real` columns became there); timestamps are naive UTC.
DUCKDB_TYPES: dict[str, str] = {
    "varchar": "VARCHAR",
    "uuid": "UUID",
    "integer": "INTEGER",
    "real": "DOUBLE",
    "timestamp": "TIMESTAMP",
}


@dataclass(frozen=True)
class Column:
    name: str
    type: ColumnType
    nullable: bool = False


@dataclass(frozen=True)
class ForeignKey:
    column: str
    table: str
    ref_column: str
    # False: the raw layer keeps a row whose value is not found (the models set it aside and
    # count it in data_quality_anomalies, docs/dbt-project.md "Dirty data"); the loader does
    # not reject it.
    enforced: bool = True


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    foreign_keys: tuple[ForeignKey, ...] = field(default_factory=tuple)

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def create_sql(self, qualified_name: str) -> str:
        cols = ",\n    ".join(
            f"{c.name} {DUCKDB_TYPES[c.type]}{'' if c.nullable else ' NOT NULL'}" for c in self.columns
        )
        return f"CREATE TABLE {qualified_name} (\n    {cols}\n)"


def _cols(spec: str) -> tuple[Column, ...]:
    """Parse 'name type [null], ...' into columns (compact and easy to read)."""
    columns = []
    for part in spec.split(","):
        words = part.split()
        columns.append(Column(words[0], words[1], nullable=len(words) > 2))  # type: ignore[arg-type]
    return tuple(columns)


TABLES: tuple[Table, ...] = (
    Table(
        "addresses",
        _cols("address_id uuid, address varchar, zipcode integer, state varchar, country varchar"),
        ("address_id",),
    ),
    Table(
        "users",
        _cols(
            "user_id uuid, first_name varchar, last_name varchar, email varchar,"
            " phone_number varchar, created_at timestamp, updated_at timestamp null,"
            " address_id uuid"
        ),
        ("user_id",),
        (ForeignKey("address_id", "addresses", "address_id"),),
    ),
    Table("promos", _cols("promo_id varchar, discount integer, status varchar"), ("promo_id",)),
    Table(
        "products",
        _cols("product_id uuid, name varchar, price real, inventory integer"),
        ("product_id",),
    ),
    Table(
        "orders",
        _cols(
            "order_id uuid, user_id uuid, promo_id varchar null, address_id uuid,"
            " created_at timestamp, order_cost real, shipping_cost real, order_total real,"
            " tracking_id varchar null, shipping_service varchar null,"
            " estimated_delivery_at timestamp null, delivered_at timestamp null, status varchar"
        ),
        ("order_id",),
        (
            ForeignKey("user_id", "users", "user_id"),
            ForeignKey("promo_id", "promos", "promo_id"),
            ForeignKey("address_id", "addresses", "address_id"),
        ),
    ),
    Table(
        "order_items",
        _cols("order_id uuid, product_id uuid, quantity integer"),
        ("order_id", "product_id"),
        (
            ForeignKey("order_id", "orders", "order_id"),
            ForeignKey("product_id", "products", "product_id"),
        ),
    ),
    # Website events are the dirtiest table (a tracker, not the shop's database): a missing
    # time, a user or product id that the shop does not know, and a row delivered twice
    # (same event_id, same values) are loaded as they are; stg_greenery__events applies the
    # policy for each and data_quality_anomalies counts them (docs/dbt-project.md).
    Table(
        "events",
        _cols(
            "event_id uuid, session_id uuid, user_id uuid, page_url varchar,"
            " created_at timestamp null, event_type varchar, order_id uuid null,"
            " product_id uuid null"
        ),
        ("event_id",),
        (
            ForeignKey("user_id", "users", "user_id", enforced=False),
            ForeignKey("order_id", "orders", "order_id"),
            ForeignKey("product_id", "products", "product_id", enforced=False),
        ),
    ),
)

TABLES_BY_NAME: dict[str, Table] = {t.name: t for t in TABLES}
# Tables whose rows may arrive twice, exactly alike (at-least-once delivery): the loader
# accepts a repeated primary key when the whole row repeats, and staging keeps one.
REPEATABLE_ROWS: frozenset[str] = frozenset({"events"})

# Not a course table: the inventory of every product week by week, which `greenery replay`
# writes into raw.public.products one week at a time before each `dbt snapshot`. It lives in
# its own schema of the raw catalog (raw.replay) so raw.public stays exactly the course's.
INVENTORY_BY_WEEK = Table(
    "product_inventory_by_week",
    _cols(
        "week integer, recorded_at timestamp, product_id uuid, name varchar, price real, inventory integer"
    ),
    ("week", "product_id"),
)

EVENT_TYPES = ("page_view", "add_to_cart", "checkout", "package_shipped")
ORDER_STATUSES = ("preparing", "shipped", "delivered")
SHIPPING_SERVICES = ("ups", "fedex", "usps", "dhl")
PAGE_URL_PREFIX = "https://greenary.com"

# Columns whose values cannot be below zero (prices, costs, counts): the loader refuses a row
# with one, naming its file, line and column.
NON_NEGATIVE: frozenset[tuple[str, str]] = frozenset(
    {
        ("promos", "discount"),
        ("products", "price"),
        ("products", "inventory"),
        ("orders", "order_cost"),
        ("orders", "shipping_cost"),
        ("orders", "order_total"),
        ("order_items", "quantity"),
        (INVENTORY_BY_WEEK.name, "inventory"),
    }
)
# DuckDB's INTEGER (the raw tables' whole numbers): a value outside cannot be stored.
INTEGER_RANGE = (-(2**31), 2**31 - 1)
