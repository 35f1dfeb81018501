"""Tributary's dashboards over the local warehouse (Streamlit).

    scripts/dashboard.sh          # after `make demo`: http://127.0.0.1:8501

Three pages, each reading only the warehouse: sales in the reporting
currency, payments and delivery, and the crypto markets.
"""

import streamlit as st

st.set_page_config(page_title="Tributary", page_icon=":material/water:", layout="wide")

pages = st.navigation(
    [
        st.Page("views/sales.py", title="Sales", icon=":material/payments:", url_path="sales"),
        st.Page("views/payments.py", title="Payments and delivery", icon=":material/schedule:", url_path="payments"),
        st.Page("views/crypto.py", title="Crypto markets", icon=":material/currency_bitcoin:", url_path="crypto"),
    ]
)
pages.run()
