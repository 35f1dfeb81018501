//! The warehouse tables as typed definitions: Arrow schemas for the
//! processed lake and column lists for the loader.

use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// A warehouse column type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WType {
    /// `int` → Int32.
    Int,
    /// `varchar` → Utf8.
    Text,
    /// `date` → Date32.
    Date,
    /// `time` → Int64: microseconds since midnight (source precision is
    /// ms). Not Parquet's TIME: Athena has no type for Iceberg `time`, so
    /// the lake keeps a `long` that every engine reads (`created_date +
    /// to_microseconds(created_time)` in DuckDB, `date_add('microsecond',
    /// created_time, cast(created_date AS timestamp))` in Athena).
    Time,
    /// `numeric(10,2)` (and unconstrained `numeric` holding source money) → Decimal128(10,2).
    Money,
    /// `boolean` → Boolean.
    Bool,
    /// `bigint` → Int64.
    BigInt,
    /// `timestamp` (no time zone, UTC by convention) → Timestamp(ms).
    Timestamp,
}

impl WType {
    /// The Arrow type in processed Parquet.
    pub fn arrow_type(self) -> DataType {
        match self {
            WType::Int => DataType::Int32,
            WType::Text => DataType::Utf8,
            WType::Date => DataType::Date32,
            WType::Time => DataType::Int64,
            WType::Money => DataType::Decimal128(10, 2),
            WType::Bool => DataType::Boolean,
            WType::BigInt => DataType::Int64,
            WType::Timestamp => DataType::Timestamp(TimeUnit::Millisecond, None),
        }
    }
}

/// The microseconds since midnight of a time-of-day column: the lake's
/// Int64 ([`WType::Time`]), or Parquet TIME(µs) in files written before
/// December 2026.
pub fn micros_of_day(array: &dyn arrow_array::Array) -> Option<&[i64]> {
    let any = array.as_any();
    if let Some(micros) = any.downcast_ref::<arrow_array::Int64Array>() {
        return Some(micros.values());
    }
    any.downcast_ref::<arrow_array::Time64MicrosecondArray>()
        .map(|time| &**time.values())
}

/// What kind of table, which decides how it is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The calendar: inserted if missing.
    Date,
    /// A dimension: latest version, upserted on its key.
    Dimension,
    /// The type 2 history of a dimension: every version of an entity,
    /// each valid from `valid_from` until `valid_to`. A load replaces the
    /// whole history of every entity (`key`) its files carry.
    History,
    /// A fact: one row per source version; the warehouse numbers rows with
    /// `record_key` and keeps the first copy of each (id, last_updated).
    Fact {
        /// The serial column the warehouse fills.
        record_key: &'static str,
    },
}

/// One warehouse column.
#[derive(Debug, Clone, Copy)]
pub struct WColumn {
    /// Name.
    pub name: &'static str,
    /// Type.
    pub ty: WType,
    /// Whether NULL is allowed.
    pub nullable: bool,
    /// The dimension table this column references, if any.
    pub references: Option<&'static str>,
}

/// One warehouse table.
#[derive(Debug)]
pub struct WarehouseTable {
    /// Table name.
    pub name: &'static str,
    /// How it loads.
    pub kind: Kind,
    /// The natural key: the id column of a dimension, the source id of a fact.
    pub key: &'static str,
    /// Columns as stored in Parquet (a fact's serial record key excluded).
    pub columns: &'static [WColumn],
}

const fn c(name: &'static str, ty: WType) -> WColumn {
    WColumn {
        name,
        ty,
        nullable: false,
        references: None,
    }
}
const fn n(name: &'static str, ty: WType) -> WColumn {
    WColumn {
        name,
        ty,
        nullable: true,
        references: None,
    }
}
const fn r(name: &'static str, ty: WType, table: &'static str) -> WColumn {
    WColumn {
        name,
        ty,
        nullable: false,
        references: Some(table),
    }
}

use WType::{BigInt, Bool, Date, Int, Money, Text, Time, Timestamp};

/// Every warehouse table in load order: calendar, dimensions, their
/// histories, facts.
pub static WAREHOUSE_TABLES: [WarehouseTable; 17] = [
    WarehouseTable {
        name: "dim_date",
        kind: Kind::Date,
        key: "date_id",
        columns: &[
            c("date_id", Date),
            c("year", Int),
            c("month", Int),
            c("day", Int),
            c("day_of_week", Int),
            c("day_name", Text),
            c("month_name", Text),
            c("quarter", Int),
        ],
    },
    WarehouseTable {
        name: "dim_staff",
        kind: Kind::Dimension,
        key: "staff_id",
        columns: &[
            c("staff_id", Int),
            c("first_name", Text),
            c("last_name", Text),
            c("department_name", Text),
            n("location", Text),
            c("email_address", Text),
        ],
    },
    WarehouseTable {
        name: "dim_location",
        kind: Kind::Dimension,
        key: "location_id",
        columns: &[
            c("location_id", Int),
            c("address_line_1", Text),
            n("address_line_2", Text),
            n("district", Text),
            c("city", Text),
            c("postal_code", Text),
            c("country", Text),
            c("phone", Text),
        ],
    },
    WarehouseTable {
        name: "dim_currency",
        kind: Kind::Dimension,
        key: "currency_id",
        columns: &[
            c("currency_id", Int),
            c("currency_code", Text),
            c("currency_name", Text),
        ],
    },
    WarehouseTable {
        name: "dim_design",
        kind: Kind::Dimension,
        key: "design_id",
        columns: &[
            c("design_id", Int),
            c("design_name", Text),
            c("file_location", Text),
            c("file_name", Text),
        ],
    },
    WarehouseTable {
        name: "dim_counterparty",
        kind: Kind::Dimension,
        key: "counterparty_id",
        columns: &[
            c("counterparty_id", Int),
            c("counterparty_legal_name", Text),
            c("counterparty_legal_address_line_1", Text),
            n("counterparty_legal_address_line_2", Text),
            n("counterparty_legal_district", Text),
            c("counterparty_legal_city", Text),
            c("counterparty_legal_postal_code", Text),
            c("counterparty_legal_country", Text),
            c("counterparty_legal_phone_number", Text),
        ],
    },
    WarehouseTable {
        name: "dim_payment_type",
        kind: Kind::Dimension,
        key: "payment_type_id",
        columns: &[c("payment_type_id", Int), c("payment_type_name", Text)],
    },
    WarehouseTable {
        name: "dim_transaction",
        kind: Kind::Dimension,
        key: "transaction_id",
        columns: &[
            c("transaction_id", Int),
            c("transaction_type", Text),
            n("sales_order_id", Int),
            n("purchase_order_id", Int),
        ],
    },
    WarehouseTable {
        name: "dim_staff_history",
        kind: Kind::History,
        key: "staff_id",
        columns: &[
            c("staff_version_id", BigInt),
            c("staff_id", Int),
            c("first_name", Text),
            c("last_name", Text),
            c("department_name", Text),
            n("location", Text),
            c("email_address", Text),
            c("valid_from", Timestamp),
            n("valid_to", Timestamp),
            c("is_current", Bool),
            c("version", Int),
        ],
    },
    WarehouseTable {
        name: "dim_location_history",
        kind: Kind::History,
        key: "location_id",
        columns: &[
            c("location_version_id", BigInt),
            c("location_id", Int),
            c("address_line_1", Text),
            n("address_line_2", Text),
            n("district", Text),
            c("city", Text),
            c("postal_code", Text),
            c("country", Text),
            c("phone", Text),
            c("valid_from", Timestamp),
            n("valid_to", Timestamp),
            c("is_current", Bool),
            c("version", Int),
        ],
    },
    WarehouseTable {
        name: "dim_currency_history",
        kind: Kind::History,
        key: "currency_id",
        columns: &[
            c("currency_version_id", BigInt),
            c("currency_id", Int),
            c("currency_code", Text),
            c("currency_name", Text),
            c("valid_from", Timestamp),
            n("valid_to", Timestamp),
            c("is_current", Bool),
            c("version", Int),
        ],
    },
    WarehouseTable {
        name: "dim_design_history",
        kind: Kind::History,
        key: "design_id",
        columns: &[
            c("design_version_id", BigInt),
            c("design_id", Int),
            c("design_name", Text),
            c("file_location", Text),
            c("file_name", Text),
            c("valid_from", Timestamp),
            n("valid_to", Timestamp),
            c("is_current", Bool),
            c("version", Int),
        ],
    },
    WarehouseTable {
        name: "dim_counterparty_history",
        kind: Kind::History,
        key: "counterparty_id",
        columns: &[
            c("counterparty_version_id", BigInt),
            c("counterparty_id", Int),
            c("counterparty_legal_name", Text),
            c("counterparty_legal_address_line_1", Text),
            n("counterparty_legal_address_line_2", Text),
            n("counterparty_legal_district", Text),
            c("counterparty_legal_city", Text),
            c("counterparty_legal_postal_code", Text),
            c("counterparty_legal_country", Text),
            c("counterparty_legal_phone_number", Text),
            c("valid_from", Timestamp),
            n("valid_to", Timestamp),
            c("is_current", Bool),
            c("version", Int),
        ],
    },
    WarehouseTable {
        name: "dim_payment_type_history",
        kind: Kind::History,
        key: "payment_type_id",
        columns: &[
            c("payment_type_version_id", BigInt),
            c("payment_type_id", Int),
            c("payment_type_name", Text),
            c("valid_from", Timestamp),
            n("valid_to", Timestamp),
            c("is_current", Bool),
            c("version", Int),
        ],
    },
    WarehouseTable {
        name: "fact_sales_order",
        kind: Kind::Fact {
            record_key: "sales_record_id",
        },
        key: "sales_order_id",
        columns: &[
            c("sales_order_id", Int),
            r("created_date", Date, "dim_date"),
            c("created_time", Time),
            r("last_updated_date", Date, "dim_date"),
            c("last_updated_time", Time),
            r("sales_staff_id", Int, "dim_staff"),
            r("counterparty_id", Int, "dim_counterparty"),
            c("units_sold", Int),
            c("unit_price", Money),
            r("currency_id", Int, "dim_currency"),
            r("design_id", Int, "dim_design"),
            r("agreed_payment_date", Date, "dim_date"),
            r("agreed_delivery_date", Date, "dim_date"),
            r("agreed_delivery_location_id", Int, "dim_location"),
        ],
    },
    WarehouseTable {
        name: "fact_purchase_order",
        kind: Kind::Fact {
            record_key: "purchase_record_id",
        },
        key: "purchase_order_id",
        columns: &[
            c("purchase_order_id", Int),
            r("created_date", Date, "dim_date"),
            c("created_time", Time),
            r("last_updated_date", Date, "dim_date"),
            c("last_updated_time", Time),
            r("staff_id", Int, "dim_staff"),
            r("counterparty_id", Int, "dim_counterparty"),
            c("item_code", Text),
            c("item_quantity", Int),
            c("item_unit_price", Money),
            r("currency_id", Int, "dim_currency"),
            r("agreed_delivery_date", Date, "dim_date"),
            r("agreed_payment_date", Date, "dim_date"),
            r("agreed_delivery_location_id", Int, "dim_location"),
        ],
    },
    WarehouseTable {
        name: "fact_payment",
        kind: Kind::Fact {
            record_key: "payment_record_id",
        },
        key: "payment_id",
        columns: &[
            c("payment_id", Int),
            r("created_date", Date, "dim_date"),
            c("created_time", Time),
            r("last_updated_date", Date, "dim_date"),
            c("last_updated_time", Time),
            r("transaction_id", Int, "dim_transaction"),
            r("counterparty_id", Int, "dim_counterparty"),
            c("payment_amount", Money),
            r("currency_id", Int, "dim_currency"),
            r("payment_type_id", Int, "dim_payment_type"),
            c("paid", Bool),
            r("payment_date", Date, "dim_date"),
        ],
    },
];

impl WarehouseTable {
    /// Looks a table up by name.
    pub fn by_name(name: &str) -> Option<&'static WarehouseTable> {
        WAREHOUSE_TABLES.iter().find(|t| t.name == name)
    }

    /// The Arrow schema of its processed Parquet files.
    pub fn arrow_schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns
                .iter()
                .map(|c| Field::new(c.name, c.ty.arrow_type(), c.nullable))
                .collect::<Vec<_>>(),
        ))
    }

    /// The key of a dimension as the primary key of the table it references:
    /// the column other tables' foreign keys point at.
    pub fn primary_key(&self) -> &'static str {
        self.columns[0].name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reference_names_a_table_loaded_before_it() {
        for (position, table) in WAREHOUSE_TABLES.iter().enumerate() {
            for column in table.columns {
                if let Some(target) = column.references {
                    let target_position = WAREHOUSE_TABLES.iter().position(|t| t.name == target);
                    assert!(
                        target_position.is_some_and(|p| p < position),
                        "{}.{} references {target}",
                        table.name,
                        column.name
                    );
                }
            }
        }
    }

    #[test]
    fn each_history_carries_its_dimensions_columns_between_its_key_and_validity() {
        let histories: Vec<_> = WAREHOUSE_TABLES
            .iter()
            .filter(|t| t.kind == Kind::History)
            .collect();
        assert_eq!(histories.len(), 6);
        for history in histories {
            let dimension = WarehouseTable::by_name(history.name.trim_end_matches("_history"))
                .unwrap_or_else(|| panic!("{} has no dimension", history.name));
            let n = history.columns.len();
            let names = |columns: &[WColumn]| {
                columns
                    .iter()
                    .map(|c| (c.name, c.ty, c.nullable))
                    .collect::<Vec<_>>()
            };
            assert_eq!(
                names(&history.columns[1..n - 4]),
                names(dimension.columns),
                "{}",
                history.name
            );
            assert_eq!(history.key, dimension.key, "{}", history.name);
            assert_eq!(
                history.columns[n - 4..]
                    .iter()
                    .map(|c| c.name)
                    .collect::<Vec<_>>(),
                ["valid_from", "valid_to", "is_current", "version"]
            );
        }
    }

    #[test]
    fn the_ddl_declares_every_column_in_order() {
        let ddl = crate::WAREHOUSE_DDL;
        for table in &WAREHOUSE_TABLES {
            let start = ddl
                .find(&format!("CREATE TABLE IF NOT EXISTS {} (", table.name))
                .unwrap_or_else(|| panic!("{} missing from the DDL", table.name));
            let body = &ddl[start..start + ddl[start..].find(");").unwrap()];
            let mut last = 0;
            for column in table.columns {
                let at = body
                    .find(&format!("\n    {} ", column.name))
                    .unwrap_or_else(|| panic!("{}.{} missing", table.name, column.name));
                assert!(at > last, "{}.{} out of order", table.name, column.name);
                last = at;
                let line =
                    &body[at..at + body[at + 1..].find('\n').unwrap_or(body.len() - at - 1) + 1];
                let required = line.contains("NOT NULL") || line.contains("PRIMARY KEY");
                assert_eq!(required, !column.nullable, "{line}");
            }
        }
    }
}
