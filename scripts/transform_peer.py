#!/usr/bin/env python3
"""The transform's peer for benchmarks: the same raw -> star schema remodel
written the way a data team would in pandas (pyarrow for Parquet I/O).

    transform_peer.py RAW_LAKE_DIR OUT_DIR

Reads every raw totesys manifest of a file lake, builds the dimensions (latest
version per id, the joins of counterparty with address and staff with
department, currency names), the three fact tables (timestamps split into
date and time, text dates parsed, every reference checked, bad rows set
aside with their reason) and dim_date, and writes them as Parquet (zstd
level 1, 128K-row row groups, like the lake). Prints one line of figures:
"peer: <fact rows> fact rows, <quarantined> quarantined, <seconds> s".
It is a benchmark peer, not part of the product.
"""

import glob
import json
import os
import sys
import time

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

# The codes the generator and the sample data use, with their ISO 4217 names.
CURRENCY_NAMES = {
    "GBP": "Pound Sterling",
    "USD": "US Dollar",
    "EUR": "Euro",
    "JPY": "Yen",
    "CHF": "Swiss Franc",
    "BRL": "Brazilian Real",
}

FACTS = {
    "sales_order": (
        "fact_sales_order",
        "sales_order_id",
        {"staff_id": "sales_staff_id"},
        ["sales_order_id", "created_date", "created_time", "last_updated_date",
         "last_updated_time", "sales_staff_id", "counterparty_id", "units_sold",
         "unit_price", "currency_id", "design_id", "agreed_payment_date",
         "agreed_delivery_date", "agreed_delivery_location_id"],
        ["agreed_payment_date", "agreed_delivery_date"],
        {"sales_staff_id": "staff", "counterparty_id": "counterparty",
         "currency_id": "currency", "design_id": "design",
         "agreed_delivery_location_id": "location"},
    ),
    "purchase_order": (
        "fact_purchase_order",
        "purchase_order_id",
        {},
        ["purchase_order_id", "created_date", "created_time", "last_updated_date",
         "last_updated_time", "staff_id", "counterparty_id", "item_code",
         "item_quantity", "item_unit_price", "currency_id", "agreed_delivery_date",
         "agreed_payment_date", "agreed_delivery_location_id"],
        ["agreed_delivery_date", "agreed_payment_date"],
        {"staff_id": "staff", "counterparty_id": "counterparty",
         "currency_id": "currency", "agreed_delivery_location_id": "location"},
    ),
    "payment": (
        "fact_payment",
        "payment_id",
        {},
        ["payment_id", "created_date", "created_time", "last_updated_date",
         "last_updated_time", "transaction_id", "counterparty_id", "payment_amount",
         "currency_id", "payment_type_id", "paid", "payment_date"],
        ["payment_date"],
        {"transaction_id": "transaction", "counterparty_id": "counterparty",
         "currency_id": "currency", "payment_type_id": "payment_type"},
    ),
}


def raw_files(lake):
    files = {}
    for manifest in sorted(glob.glob(os.path.join(lake, "_manifests/totesys/*.json"))):
        with open(manifest) as f:
            for entry in json.load(f)["files"]:
                files.setdefault(entry["table"], []).append(os.path.join(lake, entry["key"]))
    return files


def read(files, table):
    paths = files.get(table, [])
    if not paths:
        return pd.DataFrame()
    return pa.concat_tables([pq.read_table(p) for p in paths]).to_pandas()


def latest(frame, key):
    return frame.sort_values("last_updated", kind="stable").drop_duplicates(key, keep="last")


def write(out, name, frame):
    pq.write_table(
        pa.Table.from_pandas(frame, preserve_index=False),
        os.path.join(out, f"{name}.parquet"),
        compression="zstd",
        compression_level=1,
        row_group_size=128 * 1024,
    )


def main(lake, out):
    started = time.perf_counter()
    os.makedirs(out, exist_ok=True)
    files = raw_files(lake)
    ref = {t: latest(read(files, t), f"{t}_id") for t in
           ["address", "counterparty", "currency", "department", "design", "payment_type", "staff"]}
    transaction = latest(read(files, "transaction"), "transaction_id")

    address = ref["address"].rename(columns={"address_id": "location_id"})
    dim_location = address[["location_id", "address_line_1", "address_line_2", "district",
                            "city", "postal_code", "country", "phone"]]
    cp = ref["counterparty"].merge(address, left_on="legal_address_id", right_on="location_id")
    dim_counterparty = cp[["counterparty_id", "counterparty_legal_name", "address_line_1",
                           "address_line_2", "district", "city", "postal_code", "country",
                           "phone"]]
    staff = ref["staff"].merge(ref["department"], on="department_id")
    dim_staff = staff[["staff_id", "first_name", "last_name", "department_name", "location",
                       "email_address"]]
    currency = ref["currency"].copy()
    currency["currency_name"] = currency["currency_code"].str.strip().str.upper().map(CURRENCY_NAMES)
    dim_currency = currency.dropna(subset=["currency_name"])[
        ["currency_id", "currency_code", "currency_name"]]
    dim_design = ref["design"][["design_id", "design_name", "file_location", "file_name"]]
    dim_payment_type = ref["payment_type"][["payment_type_id", "payment_type_name"]]
    dim_transaction = transaction[["transaction_id", "transaction_type", "sales_order_id",
                                   "purchase_order_id"]]
    for name, frame in [("dim_location", dim_location), ("dim_counterparty", dim_counterparty),
                        ("dim_staff", dim_staff), ("dim_currency", dim_currency),
                        ("dim_design", dim_design), ("dim_payment_type", dim_payment_type),
                        ("dim_transaction", dim_transaction)]:
        write(out, name, frame)
    known = {
        "staff": dim_staff["staff_id"], "counterparty": dim_counterparty["counterparty_id"],
        "currency": dim_currency["currency_id"], "design": dim_design["design_id"],
        "location": dim_location["location_id"], "payment_type": dim_payment_type["payment_type_id"],
        "transaction": dim_transaction["transaction_id"],
    }

    dates = set()
    fact_rows = quarantined = 0
    for source, (fact, key, renames, columns, text_dates, references) in FACTS.items():
        raw = read(files, source)
        if raw.empty:
            continue
        raw = raw.rename(columns=renames)
        reason = pd.Series(pd.NA, index=raw.index, dtype="object")
        for stamp in ["created", "last_updated"]:
            column = "created_at" if stamp == "created" else "last_updated"
            ts = pd.to_datetime(raw[column])
            raw[f"{stamp}_date"] = ts.dt.date
            raw[f"{stamp}_time"] = ts.dt.time
        for column in text_dates:
            parsed = pd.to_datetime(raw[column].str.strip(), format="%Y-%m-%d", errors="coerce")
            bad = parsed.isna() & reason.isna()
            reason[bad] = column + " is not a date (YYYY-MM-DD)"
            raw[column] = parsed.dt.date
        for column, dimension in references.items():
            missing = ~raw[column].isin(known[dimension]) & reason.isna()
            reason[missing] = column + " is not in dim_" + dimension
        keep = reason.isna()
        quarantined += int((~keep).sum())
        facts = raw.loc[keep, columns]
        fact_rows += len(facts)
        for column in ["created_date", "last_updated_date"] + text_dates:
            dates.update(facts[column].unique())
        write(out, fact, facts)

    days = pd.to_datetime(pd.Series(sorted(dates)))
    dim_date = pd.DataFrame({
        "date_id": days.dt.date, "year": days.dt.year, "month": days.dt.month,
        "day": days.dt.day, "day_of_week": days.dt.day_of_week + 1,
        "day_name": days.dt.day_name(), "month_name": days.dt.month_name(),
        "quarter": days.dt.quarter,
    })
    write(out, "dim_date", dim_date)
    elapsed = time.perf_counter() - started
    print(f"peer: {fact_rows} fact rows, {quarantined} quarantined, {elapsed:.3f} s")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
