"""Payments and delivery: how late customers pay (mean and p90), what
falls due each week in the reporting currency, and how long orders take
from creation to agreed delivery."""

import altair as alt
import streamlit as st

from common import empty, freshness, query, reporting_currency

currency = reporting_currency()
st.title("Payments and delivery")
freshness()

days = st.select_slider("Period (days up to the latest agreed payment)", [30, 90, 180, 365, 730], value=365)
bounds = query("SELECT max(day) AS last FROM agg_payment_delay_daily WHERE paid > 0")
last = bounds.iloc[0]["last"]
if last is None:
    st.info("No paid payments yet: run `make demo` (or `tributary run`) to load the warehouse.")
    st.stop()
period = (last, days)
where = "day > %s::date - %s AND day <= %s::date"
period3 = (last, days, last)

summary = query(
    f"""SELECT sum(payments) AS payments, sum(paid) AS paid,
               sum(delay_days_sum) / nullif(sum(paid), 0) AS mean_delay
        FROM agg_payment_delay_daily WHERE {where}""",
    period3,
)
row = summary.iloc[0]
a, b, c = st.columns(3)
a.metric("Payments due", f"{int(row['payments'] or 0):,}")
b.metric("Paid", f"{(row['paid'] or 0) / max(row['payments'] or 1, 1):.0%}")
c.metric("Mean delay (days)", "–" if row["mean_delay"] is None else f"{row['mean_delay']:.1f}")

# The p90 of each day's paid payments (the points), and its 28-day moving
# average (the line): a day's p90 rests on a handful of payments.
delay = query(
    f"""SELECT day, currency_code, delay_days_p90, delay_days_mean, paid,
               avg(delay_days_p90) OVER (PARTITION BY currency_code ORDER BY day
                   RANGE BETWEEN interval '27 days' PRECEDING AND CURRENT ROW) AS p90_28d
        FROM agg_payment_delay_daily
        WHERE {where} AND delay_days_p90 IS NOT NULL ORDER BY day""",
    period3,
)
st.subheader("Days from the agreed payment date to payment: 90th percentile")
st.caption(
    "Points: each agreed payment day's p90, per currency (negative means paid early). "
    "Lines: their 28-day moving average."
)
if not empty(delay, "paid payments", "run the pipeline"):
    base = alt.Chart(delay).encode(
        x=alt.X("day:T", title="Agreed payment date"),
        color=alt.Color("currency_code:N", title="Currency"),
    )
    st.altair_chart(
        base.mark_circle(size=14, opacity=0.35).encode(
            y=alt.Y("delay_days_p90:Q", title="p90 delay (days)"),
            tooltip=["day:T", "currency_code:N", "delay_days_p90:Q",
                     alt.Tooltip("delay_days_mean:Q", format=".1f"), "paid:Q"],
        )
        + base.mark_line(strokeWidth=2.5).encode(y="p90_28d:Q"),
        use_container_width=True,
    )

due = query(
    f"""SELECT date_trunc('week', day)::date AS week, sum(amount_sum_reporting) AS amount,
               sum(payments) AS payments, sum(paid) AS paid
        FROM agg_payment_delay_daily_reporting WHERE {where} GROUP BY 1 ORDER BY 1""",
    period3,
)
left, right = st.columns(2)
with left:
    st.subheader(f"Payments falling due per week ({currency})")
    if not empty(due, "payments due", "run the pipeline"):
        st.altair_chart(
            alt.Chart(due)
            .mark_bar()
            .encode(
                x=alt.X("week:T", title="Week"),
                y=alt.Y("amount:Q", title=f"Amount ({currency})"),
                tooltip=["week:T", alt.Tooltip("amount:Q", format=",.0f"), "payments:Q", "paid:Q"],
            ),
            use_container_width=True,
        )

lead = query(
    """SELECT day, orders,
              sum(days_sum) OVER w / sum(orders) OVER w AS mean_28d,
              avg(days_p90) OVER w AS p90_28d
       FROM agg_delivery_lead_time_daily
       WHERE day > (SELECT max(day) FROM agg_delivery_lead_time_daily) - %s
       WINDOW w AS (ORDER BY day RANGE BETWEEN interval '27 days' PRECEDING AND CURRENT ROW)
       ORDER BY day""",
    (days,),
)
with right:
    st.subheader("Order to agreed delivery (days)")
    st.caption("Over the 28 days up to each order date: the mean, and the average of the daily p90s.")
    if not empty(lead, "orders", "run the pipeline"):
        long = lead.melt(id_vars=["day", "orders"], value_vars=["mean_28d", "p90_28d"], var_name="measure", value_name="days")
        long["measure"] = long["measure"].map({"mean_28d": "mean", "p90_28d": "p90"})
        st.altair_chart(
            alt.Chart(long)
            .mark_line(strokeWidth=2)
            .encode(
                x=alt.X("day:T", title="Order date"),
                y=alt.Y("days:Q", title="Days"),
                color=alt.Color("measure:N", title=None),
                tooltip=["day:T", "measure:N", alt.Tooltip("days:Q", format=".1f")],
            ),
            use_container_width=True,
        )
