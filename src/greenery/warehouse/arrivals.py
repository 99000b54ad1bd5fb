"""The next days of a generated warehouse, as a folder of CSVs for `greenery load --append`.

`greenery generate --next-days K --out DIR` reads what the raw catalog holds (its users and
addresses, its latest event, the last day's sessions without a checkout), has the generator
continue that timeline for K days (`generate.next_days`, at the scale and seed the raw
catalog records it was generated with), and writes the new orders, order items and events
into DIR.

DIR gets the days whole or not at all: the CSVs are written into ``.DIR.tmp`` beside it,
fsynced, and that folder is renamed DIR. A run killed before the rename leaves no DIR, so
`load --append` can never take a part of a day (orders without their events); the next run
removes the ``.tmp`` folder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from greenery.data.generate import DAY, START, Generation, Loaded, first_new_day, next_days, with_text_ids
from greenery.warehouse import store
from greenery.warehouse.lock import exclusive, folder_aside

STATE_MEMORY = "256MB"  # for reading the state: DuckDB keeps the events' scanned blocks up to its
# limit (`greenery generate --scale 10000 --next-days 1`: 1,048 MiB at most with 3 GB, 588 MiB with this)


def _seconds(times: pa.Array) -> np.ndarray:
    """Seconds since the generator's START of an Arrow timestamp column."""
    stamps = times.to_numpy(zero_copy_only=False).astype("datetime64[s]")
    return (stamps - START).astype(np.int64)


def loaded_state(warehouse_file: Path | None = None) -> Loaded:
    """What the raw catalog holds that the next days continue."""
    raw = store.raw_path(warehouse_file)
    if not raw.exists():
        raise ValueError(f"no raw data at {raw}: run `greenery generate --scale N` first")
    con = store.open_duckdb(raw, read_only=True, warehouse_file=warehouse_file)
    try:
        con.execute(f"SET memory_limit = '{STATE_MEMORY}'")  # over the environment's, still checked
        con.execute("SET arrow_lossless_conversion = true")  # ids as Arrow uuids, as the generator makes them
        schema = store.RAW_SCHEMA
        # the latest browsing or checkout: shipping events come hours after their day
        last = con.sql(
            f"select max(created_at) from {schema}.events where event_type <> 'package_shipped'"
        ).to_arrow_table()
        if last.column(0)[0].as_py() is None:
            raise ValueError(f"no events in {raw} to continue")
        addresses = con.sql(f"select address_id from {schema}.addresses order by address_id").to_arrow_table()
        users = con.sql(
            f"""
            select users.user_id, users.created_at, coalesce(address_index.i, 0) as address
            from {schema}.users as users
            left join (
                select address_id, row_number() over (order by address_id) - 1 as i
                from {schema}.addresses
            ) as address_index on users.address_id = address_index.address_id
            order by users.created_at, users.user_id
            """
        ).to_arrow_table()
        last_seconds = int(_seconds(last.column(0).combine_chunks())[0])
        day_start = np.datetime64(START + np.timedelta64(last_seconds // DAY * DAY, "s"), "us")
        open_sessions = con.sql(
            f"""
            select session_id, any_value(user_id) as user_id, max(created_at) as last_at
            from {schema}.events
            where created_at >= ?
            group by session_id
            having count(order_id) = 0
            order by session_id
            """,
            params=[day_start.item()],
        ).to_arrow_table()
        generation = store.generation_in(con)
    finally:
        con.close()
    return Loaded(
        user_ids=users.column("user_id").combine_chunks(),
        user_created=_seconds(users.column("created_at").combine_chunks()),
        user_address=users.column("address").to_numpy().astype(np.int32),
        address_ids=addresses.column("address_id").combine_chunks(),
        last_event=last_seconds,
        open_sessions=open_sessions.column("session_id").combine_chunks(),
        open_users=open_sessions.column("user_id").combine_chunks(),
        open_last=_seconds(open_sessions.column("last_at").combine_chunks()),
        generation=generation,
    )


def _continued_generation(recorded: Generation | None, scale: int | None, seed: int | None) -> Generation:
    """What the next days are generated with: what the warehouse was (`recorded`), else the
    given `scale` and `seed` or the defaults (data loaded from CSVs). A given value that
    differs from the recorded one is refused: those days would not continue the warehouse's."""
    if recorded is None:
        return Generation.given(scale, seed)
    asked = {"scale": (scale, recorded.scale), "seed": (seed, recorded.seed)}
    differ = [f"{name} {given}" for name, (given, made) in asked.items() if given not in (None, made)]
    if differ:
        raise ValueError(
            f"the warehouse was generated at scale {recorded.scale} with seed {recorded.seed}, and its"
            f" next days continue it (asked for {' and '.join(differ)}): leave out --scale and --seed,"
            " or give the warehouse's"
        )
    return recorded


def write_next_days(
    out: Path,
    days: int,
    *,
    scale: int | None = None,
    seed: int | None = None,
    warehouse_file: Path | None = None,
) -> tuple[np.datetime64, Generation, dict[str, int]]:
    """The `days` days after the warehouse's latest event as CSVs in `out`, a new or empty
    folder that gets them all or none; returns the first new day, what they were generated
    with (`_continued_generation`) and rows per file."""
    out = out.resolve()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"{out} is not an empty folder: give an empty or new folder for the new days' CSVs")
    # held throughout: its reads would block a writer, and a second run would share its .tmp
    with exclusive(store.resolve(warehouse_file), "generate"):
        loaded = loaded_state(warehouse_file)
        generation = _continued_generation(loaded.generation, scale, seed)
        parts: dict[str, list[pa.Table]] = {}
        for name, chunk in next_days(loaded, days, scale=generation.scale, seed=generation.seed):
            parts.setdefault(name, []).append(with_text_ids(chunk))
        with folder_aside(out) as staging:
            counts = _write_csvs(parts, staging)
    first_day = START + np.timedelta64(first_new_day(loaded) * DAY, "s")
    return first_day.astype("datetime64[D]"), generation, counts


def _write_csvs(parts: dict[str, list[pa.Table]], folder: Path) -> dict[str, int]:
    """One CSV per table in `folder`; rows per file."""
    counts = {}
    for name, chunks in parts.items():
        frame = pa.concat_tables(chunks).to_pandas()
        frame.to_csv(folder / f"{name}.csv", index=False)
        counts[name] = len(frame)
    return counts
