"""Sales in the reporting currency: the trend, the top designs and
countries, and the hours orders arrive in."""

import altair as alt
import streamlit as st

from common import empty, freshness, query, reporting_currency


def top_bars(frame, name: str, count: str, currency: str) -> None:
    """Horizontal bars of `value` per `name`, largest first."""
    if empty(frame, f"{name}s", "run the pipeline"):
        return
    st.altair_chart(
        alt.Chart(frame)
        .mark_bar()
        .encode(
            x=alt.X("value:Q", title=f"Sales ({currency})"),
            y=alt.Y(f"{name}:N", sort="-x", title=None),
            tooltip=[f"{name}:N", alt.Tooltip("value:Q", format=",.0f"), f"{count}:Q"],
        ),
        use_container_width=True,
    )

currency = reporting_currency()
st.title(f"Sales in {currency}")
freshness()

days = st.select_slider("Period (days up to the latest sale)", [30, 90, 180, 365, 730], value=365)
bounds = query("SELECT max(day) AS last FROM agg_sales_daily")
last = bounds.iloc[0]["last"]
if last is None:
    st.info("No sales yet: run `make demo` (or `tributary run`) to load the warehouse.")
    st.stop()

# Every amount below is converted at its day's rate (fact_exchange_rate);
# a day whose rate is missing is a gap that is named, never a zero.
period = (last, days)
where = "day > %s::date - %s"

totals = query(
    f"""SELECT sum(value_sum_reporting) AS value, sum(orders) AS orders, sum(units) AS units,
               count(*) FILTER (WHERE currencies_without_rate IS NOT NULL) AS gaps
        FROM agg_sales_daily_reporting WHERE {where}""",
    period,
)
row = totals.iloc[0]
a, b, c = st.columns(3)
a.metric(f"Sales ({currency})", f"{(row['value'] or 0):,.0f}")
b.metric("Orders", f"{int(row['orders'] or 0):,}")
c.metric("Units", f"{int(row['units'] or 0):,}")
if row["gaps"]:
    missing = query(
        f"""SELECT date, currency_code FROM exchange_rate_gaps
            WHERE date > %s::date - %s ORDER BY date LIMIT 20""",
        period,
    )
    st.warning(
        f"{int(row['gaps'])} day/country/design totals have no {currency} rate for one of their "
        f"currencies and are left out of the sums (run `tributary fx --for-facts`). "
        f"First gaps: {', '.join(f'{r.currency_code} {r.date}' for r in missing.itertuples())}"
    )

weekly = query(
    f"""SELECT date_trunc('week', day)::date AS week, sum(value_sum_reporting) AS value,
               sum(orders) AS orders
        FROM agg_sales_daily_reporting WHERE {where} GROUP BY 1 ORDER BY 1""",
    period,
)
st.subheader("Weekly sales")
if not empty(weekly, "weekly sales", "run the pipeline"):
    st.altair_chart(
        alt.Chart(weekly)
        .mark_line(point=True)
        .encode(
            x=alt.X("week:T", title="Week"),
            y=alt.Y("value:Q", title=f"Sales ({currency})"),
            tooltip=["week:T", alt.Tooltip("value:Q", format=",.0f"), "orders:Q"],
        ),
        use_container_width=True,
    )

left, right = st.columns(2)
designs = query(
    f"""SELECT d.design_name || ' (#' || a.design_id || ')' AS design,
               sum(a.value_sum_reporting) AS value, sum(a.units) AS units
        FROM agg_sales_daily_reporting a JOIN dim_design d USING (design_id)
        WHERE {where} GROUP BY 1 ORDER BY value DESC NULLS LAST LIMIT 10""",
    period,
)
with left:
    st.subheader("Top 10 designs")
    top_bars(designs, "design", "units", currency)

countries = query(
    f"""SELECT country, sum(value_sum_reporting) AS value, sum(orders) AS orders
        FROM agg_sales_daily_reporting WHERE {where}
        GROUP BY 1 ORDER BY value DESC NULLS LAST LIMIT 10""",
    period,
)
with right:
    st.subheader("Top 10 countries")
    st.caption("The counterparty's legal country as it was when the order was last updated.")
    top_bars(countries, "country", "orders", currency)

hourly = query(
    f"""SELECT hour, sum(orders) AS orders, sum(units) AS units
        FROM agg_sales_hourly WHERE {where} GROUP BY 1 ORDER BY 1""",
    period,
)
st.subheader("Orders by hour of the day (UTC)")
if not empty(hourly, "hourly orders", "run the pipeline"):
    st.altair_chart(
        alt.Chart(hourly)
        .mark_bar()
        .encode(
            x=alt.X("hour:O", title="Hour (UTC)"),
            y=alt.Y("orders:Q", title="Orders"),
            tooltip=["hour:O", "orders:Q", "units:Q"],
        ),
        use_container_width=True,
    )
