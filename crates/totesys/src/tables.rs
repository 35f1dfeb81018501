//! What the totesys star schema reads from the source: the 11 tables and
//! the columns the transform turns into facts and dimensions, with their
//! types. This is the model's contract, as a dbt project's `sources` would
//! be: which tables are extracted, and the columns they have today, come
//! from the source file (`sources/totesys.toml`) and the catalog at run time
//! ([`crate::source`]), and are checked against it.

use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// A source column type, as PostgreSQL sends it in binary COPY.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PgType {
    /// `integer` / `serial` → Int32.
    Int4,
    /// `text`, `varchar(n)` → Utf8.
    Text,
    /// An enum type (`PaymentTypeName`, `TransactionType`) → Utf8 with its label.
    Enum,
    /// `timestamp(3)` without time zone → Timestamp(ms), UTC by convention.
    Timestamp,
    /// `numeric(10,2)` → Decimal128(10,2).
    Numeric {
        /// Total digits.
        precision: u8,
        /// Digits after the point.
        scale: i8,
    },
    /// `boolean` → Boolean.
    Bool,
}

impl PgType {
    /// The Arrow type the raw lake stores this column as.
    pub fn arrow_type(self) -> DataType {
        match self {
            PgType::Int4 => DataType::Int32,
            PgType::Text | PgType::Enum => DataType::Utf8,
            PgType::Timestamp => DataType::Timestamp(TimeUnit::Millisecond, None),
            PgType::Numeric { precision, scale } => DataType::Decimal128(precision, scale),
            PgType::Bool => DataType::Boolean,
        }
    }
}

/// One column of a source table.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    /// Column name in the source.
    pub name: &'static str,
    /// Its type.
    pub pg: PgType,
    /// Whether the source allows NULL.
    pub nullable: bool,
}

/// One source table.
#[derive(Debug)]
pub struct TableDef {
    /// Table name in the source (and in the lake).
    pub name: &'static str,
    /// The integer primary key column.
    pub primary_key: &'static str,
    /// Columns in source order.
    pub columns: &'static [Column],
}

const fn col(name: &'static str, pg: PgType) -> Column {
    Column {
        name,
        pg,
        nullable: false,
    }
}

const fn nullable(name: &'static str, pg: PgType) -> Column {
    Column {
        name,
        pg,
        nullable: true,
    }
}

use PgType::{Bool, Enum, Int4, Text, Timestamp};
const MONEY: PgType = PgType::Numeric {
    precision: 10,
    scale: 2,
};

/// Every table the star schema reads, parents before children.
pub static MODEL_INPUTS: [TableDef; 11] = [
    TableDef {
        name: "address",
        primary_key: "address_id",
        columns: &[
            col("address_id", Int4),
            col("address_line_1", Text),
            nullable("address_line_2", Text),
            nullable("district", Text),
            col("city", Text),
            col("postal_code", Text),
            col("country", Text),
            col("phone", Text),
            col("created_at", Timestamp),
            col("last_updated", Timestamp),
        ],
    },
    TableDef {
        name: "counterparty",
        primary_key: "counterparty_id",
        columns: &[
            col("counterparty_id", Int4),
            col("counterparty_legal_name", Text),
            col("legal_address_id", Int4),
            nullable("commercial_contact", Text),
            nullable("delivery_contact", Text),
            col("created_at", Timestamp),
            col("last_updated", Timestamp),
        ],
    },
    TableDef {
        name: "currency",
        primary_key: "currency_id",
        columns: &[
            col("currency_id", Int4),
            col("currency_code", Text),
            col("created_at", Timestamp),
            col("last_updated", Timestamp),
        ],
    },
    TableDef {
        name: "department",
        primary_key: "department_id",
        columns: &[
            col("department_id", Int4),
            col("department_name", Text),
            nullable("location", Text),
            nullable("manager", Text),
            col("created_at", Timestamp),
            col("last_updated", Timestamp),
        ],
    },
    TableDef {
        name: "design",
        primary_key: "design_id",
        columns: &[
            col("design_id", Int4),
            col("created_at", Timestamp),
            col("design_name", Text),
            col("file_location", Text),
            col("file_name", Text),
            col("last_updated", Timestamp),
        ],
    },
    TableDef {
        name: "payment_type",
        primary_key: "payment_type_id",
        columns: &[
            col("payment_type_id", Int4),
            col("payment_type_name", Enum),
            col("created_at", Timestamp),
            col("last_updated", Timestamp),
        ],
    },
    TableDef {
        name: "staff",
        primary_key: "staff_id",
        columns: &[
            col("staff_id", Int4),
            col("first_name", Text),
            col("last_name", Text),
            col("department_id", Int4),
            col("email_address", Text),
            col("created_at", Timestamp),
            col("last_updated", Timestamp),
        ],
    },
    TableDef {
        name: "sales_order",
        primary_key: "sales_order_id",
        columns: &[
            col("sales_order_id", Int4),
            col("created_at", Timestamp),
            col("last_updated", Timestamp),
            col("design_id", Int4),
            col("staff_id", Int4),
            col("counterparty_id", Int4),
            col("units_sold", Int4),
            col("unit_price", MONEY),
            col("currency_id", Int4),
            col("agreed_delivery_date", Text),
            col("agreed_payment_date", Text),
            col("agreed_delivery_location_id", Int4),
        ],
    },
    TableDef {
        name: "purchase_order",
        primary_key: "purchase_order_id",
        columns: &[
            col("purchase_order_id", Int4),
            col("created_at", Timestamp),
            col("last_updated", Timestamp),
            col("staff_id", Int4),
            col("counterparty_id", Int4),
            col("item_code", Text),
            col("item_quantity", Int4),
            col("item_unit_price", MONEY),
            col("currency_id", Int4),
            col("agreed_delivery_date", Text),
            col("agreed_payment_date", Text),
            col("agreed_delivery_location_id", Int4),
        ],
    },
    TableDef {
        name: "transaction",
        primary_key: "transaction_id",
        columns: &[
            col("transaction_id", Int4),
            col("transaction_type", Enum),
            nullable("sales_order_id", Int4),
            nullable("purchase_order_id", Int4),
            col("created_at", Timestamp),
            col("last_updated", Timestamp),
        ],
    },
    TableDef {
        name: "payment",
        primary_key: "payment_id",
        columns: &[
            col("payment_id", Int4),
            col("created_at", Timestamp),
            col("last_updated", Timestamp),
            col("transaction_id", Int4),
            col("counterparty_id", Int4),
            col("payment_amount", MONEY),
            col("currency_id", Int4),
            col("payment_type_id", Int4),
            col("paid", Bool),
            col("payment_date", Text),
            col("company_ac_number", Int4),
            col("counterparty_ac_number", Int4),
        ],
    },
];

/// The column every table is tracked by.
pub const LAST_UPDATED: &str = "last_updated";

impl TableDef {
    /// Looks a model table up by name; `None` for anything not in [`MODEL_INPUTS`].
    pub fn by_name(name: &str) -> Option<&'static TableDef> {
        MODEL_INPUTS.iter().find(|table| table.name == name)
    }

    /// The Arrow schema of the table's raw files.
    pub fn arrow_schema(&self) -> SchemaRef {
        let fields: Vec<Field> = self
            .columns
            .iter()
            .map(|c| Field::new(c.name, c.pg.arrow_type(), c.nullable))
            .collect();
        Arc::new(Schema::new(fields))
    }

    /// Position of a column, by name.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_has_its_key_first_and_a_last_updated_timestamp() {
        assert_eq!(MODEL_INPUTS.len(), 11);
        for table in &MODEL_INPUTS {
            assert_eq!(table.columns[0].name, table.primary_key, "{}", table.name);
            assert_eq!(table.columns[0].pg, PgType::Int4);
            let lu = table.column_index(LAST_UPDATED).expect(table.name);
            assert_eq!(table.columns[lu].pg, PgType::Timestamp);
            assert!(!table.columns[lu].nullable);
        }
    }

    #[test]
    fn schemas_use_exact_types() {
        let payment = TableDef::by_name("payment").unwrap().arrow_schema();
        assert_eq!(
            payment
                .field_with_name("payment_amount")
                .unwrap()
                .data_type(),
            &DataType::Decimal128(10, 2)
        );
        assert_eq!(
            payment.field_with_name("last_updated").unwrap().data_type(),
            &DataType::Timestamp(TimeUnit::Millisecond, None)
        );
        assert_eq!(
            payment.field_with_name("payment_date").unwrap().data_type(),
            &DataType::Utf8
        );
        assert!(TableDef::by_name("pg_shadow").is_none());
        assert!(TableDef::by_name("payment; drop table x").is_none());
    }
}
