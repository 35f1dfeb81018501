"""What every dashboard page shares: the warehouse connection, cached
queries and the reporting currency.

The warehouse is the one `WAREHOUSE_DATABASE_URL` names (scripts/dashboard.sh
takes it from the local stack when it is not set). A query that fails is
shown as an exception on the page, never hidden: the render test fails on it.
"""

from __future__ import annotations

import os

import pandas as pd
import psycopg
import streamlit as st

# How long a query's result is reused before the warehouse is asked again.
# The pipeline loads about once a minute; half a minute keeps pages fresh.
CACHE_SECONDS = 30


@st.cache_resource
def _connection() -> psycopg.Connection:
    url = os.environ.get("WAREHOUSE_DATABASE_URL")
    if not url:
        raise RuntimeError(
            "WAREHOUSE_DATABASE_URL is not set: start the dashboard with scripts/dashboard.sh"
        )
    # Read only, one statement at a time: a dashboard never writes.
    conn = psycopg.connect(url, autocommit=True, application_name="tributary-dashboard")
    conn.execute("SET default_transaction_read_only = on")
    conn.execute("SET statement_timeout = '30s'")
    return conn


@st.cache_data(ttl=CACHE_SECONDS, show_spinner=False)
def query(sql: str, params: tuple = ()) -> pd.DataFrame:
    """The rows of `sql` as a DataFrame (numerics as floats, for charts)."""
    conn = _connection()
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            columns = [c.name for c in cur.description]
            rows = cur.fetchall()
    except psycopg.OperationalError:
        # A dropped connection (a restarted stack): reconnect next time.
        _connection.clear()
        raise
    frame = pd.DataFrame(rows, columns=columns)
    for column in frame.columns:
        if frame[column].dtype == object and len(frame) and _is_decimal(frame[column]):
            frame[column] = frame[column].astype(float)
    return frame


def _is_decimal(series: pd.Series) -> bool:
    from decimal import Decimal

    first = series.dropna()
    return len(first) > 0 and isinstance(first.iloc[0], Decimal)


def reporting_currency() -> str:
    """The currency every amount is shown in (`tributary fx` sets it)."""
    frame = query("SELECT reporting_currency FROM tributary.fx_reporting LIMIT 1")
    return frame.iloc[0, 0] if len(frame) else "GBP"


def freshness() -> None:
    """When the warehouse last loaded, under each page's title."""
    frame = query(
        "SELECT max(loaded_at) AS loaded_at, count(*) AS loads FROM tributary.load_log"
    )
    loaded_at = frame.iloc[0]["loaded_at"]
    if loaded_at is None or pd.isna(loaded_at):
        st.info("The warehouse has not loaded anything yet: run `make demo` or `tributary run`.")
    else:
        st.caption(
            f"Warehouse last loaded {loaded_at:%Y-%m-%d %H:%M:%S %Z} "
            f"({frame.iloc[0]['loads']} loads); figures are cached for {CACHE_SECONDS} s."
        )


def empty(frame: pd.DataFrame, what: str, fix: str) -> bool:
    """True (after saying what is missing and how to get it) when `frame`
    has no rows."""
    if len(frame) == 0:
        st.info(f"No {what} yet: {fix}")
        return True
    return False
