"""Crypto markets: each coin's price over its last day of trades, daily
volumes with the p90 trade size, and trades per minute."""

import altair as alt
import streamlit as st

from common import empty, freshness, query

st.title("Crypto markets")
freshness()

latest = query(
    """SELECT DISTINCT ON (t.symbol) t.symbol, a.name, t.price, t.traded_at
       FROM fact_trade t LEFT JOIN dim_asset a ON a.symbol = split_part(t.symbol, '-', 1)
       ORDER BY t.symbol, t.traded_at DESC, t.tid DESC"""
)
if latest.empty:
    st.info("No trades yet: run `make demo` (or `tributary markets`) to load them.")
    st.stop()
for column, row in zip(st.columns(min(len(latest), 6)), latest.itertuples()):
    column.metric(
        row.name or row.symbol,
        f"{row.price:,.2f}",
        help=f"{row.symbol}: the last trade, at {row.traded_at:%Y-%m-%d %H:%M:%S} UTC, in BRL",
    )

# The last price of each minute over the newest day of trades (the trade
# index makes this a range scan, whatever the table's size), as a change
# from each coin's first minute so that coins of any price share one axis.
prices = query(
    """SELECT symbol, minute, price,
              100 * (price / first_value(price) OVER (PARTITION BY symbol ORDER BY minute) - 1) AS change
       FROM (SELECT DISTINCT ON (symbol, minute) symbol, minute, price FROM (
                 SELECT symbol, date_trunc('minute', traded_at) AS minute, traded_at, tid, price
                 FROM fact_trade
                 WHERE traded_at > (SELECT max(traded_at) FROM fact_trade) - interval '1 day') t
             ORDER BY symbol, minute, traded_at DESC, tid DESC) last_per_minute
       ORDER BY symbol, minute"""
)
st.subheader("Price over the last day")
st.caption("The last trade of each minute, as a change from the coin's first minute; the tooltip gives the price in BRL.")
if not empty(prices, "prices", "run `tributary markets`"):
    st.altair_chart(
        alt.Chart(prices)
        .mark_line(point=True)
        .encode(
            x=alt.X("minute:T", title="Minute (UTC)"),
            y=alt.Y("change:Q", title="Change (%)"),
            color=alt.Color("symbol:N", title="Coin"),
            tooltip=["symbol:N", "minute:T", alt.Tooltip("price:Q", format=",.2f"),
                     alt.Tooltip("change:Q", format="+.3f")],
        ),
        use_container_width=True,
    )

left, right = st.columns(2)
daily = query(
    """SELECT symbol, day, trades, quote_volume, size_mean, size_p90 FROM agg_trades_daily
       WHERE day > (SELECT max(day) FROM agg_trades_daily) - 30 ORDER BY day"""
)
with left:
    st.subheader("Daily volume (BRL), last 30 days")
    if not empty(daily, "daily volumes", "run `tributary markets`"):
        st.altair_chart(
            alt.Chart(daily)
            .mark_bar()
            .encode(
                x=alt.X("yearmonthdate(day):O", title="Day (UTC)"),
                xOffset="symbol:N",
                y=alt.Y("quote_volume:Q", title="Volume (BRL, symlog scale)", scale=alt.Scale(type="symlog")),
                color=alt.Color("symbol:N", title="Coin"),
                tooltip=["symbol:N", "day:T", "trades:Q", alt.Tooltip("quote_volume:Q", format=",.0f"),
                         alt.Tooltip("size_mean:Q", format=".6f"), alt.Tooltip("size_p90:Q", format=".6f")],
            ),
            use_container_width=True,
        )

minutes = query("SELECT symbol, minute, trades, base_volume FROM agg_trades_minute ORDER BY minute")
with right:
    st.subheader("Trades per minute, last day")
    if not empty(minutes, "minute counts", "run `tributary markets`"):
        st.altair_chart(
            alt.Chart(minutes)
            .mark_line(point=True)
            .encode(
                x=alt.X("minute:T", title="Minute (UTC)"),
                y=alt.Y("trades:Q", title="Trades"),
                color=alt.Color("symbol:N", title="Coin"),
                tooltip=["symbol:N", "minute:T", "trades:Q", alt.Tooltip("base_volume:Q", format=".6f")],
            ),
            use_container_width=True,
        )

st.subheader("Trade size per coin and day")
if not empty(daily, "trade sizes", "run `tributary markets`"):
    st.dataframe(
        daily.sort_values(["day", "symbol"], ascending=[False, True]).rename(
            columns={"size_mean": "mean size", "size_p90": "p90 size", "quote_volume": "volume (BRL)"}
        ),
        hide_index=True,
        use_container_width=True,
    )
