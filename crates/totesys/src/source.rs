//! The totesys source as configured (`sources/totesys.toml`) and as the
//! PostgreSQL catalog describes it at run time.
//!
//! Which tables are read, by which key and cursor, is configuration
//! ([`SourceSpec`]); what their columns are is discovered from the catalog
//! on every run ([`discover`]), inside the run's snapshot, and checked
//! against what the star schema reads ([`crate::MODEL_INPUTS`]). A column
//! the model does not read flows into the raw lake as it is; a change to a
//! column the model reads stops that table only, with the reason.

use std::{collections::BTreeMap, sync::Arc};

use arrow_schema::{Field, Schema, SchemaRef};
use serde::{Deserialize, Serialize};
use tokio_postgres::Transaction;

use crate::{PgType, Result, TableDef};

/// What the configuration says about the totesys source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceSpec {
    /// The PostgreSQL schema the tables live in.
    pub schema: String,
    /// The tables to read, in the order they are read.
    pub tables: Vec<ConfiguredTable>,
}

/// One configured table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfiguredTable {
    /// Its name in the source (and in the lake).
    pub name: String,
    /// The timestamp column every change moves forward.
    pub cursor: String,
    /// The integer key column; `None`: the catalog's primary key.
    pub primary_key: Option<String>,
}

impl SourceSpec {
    /// The configured table called `name`.
    pub fn table(&self, name: &str) -> Option<&ConfiguredTable> {
        self.tables.iter().find(|t| t.name == name)
    }

    /// The configured table names, comma-separated (for messages).
    pub fn names(&self) -> String {
        self.tables
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// One source column as discovered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceColumn {
    /// Its name.
    pub name: String,
    /// How it is decoded.
    pub pg: PgType,
    /// Whether the source allows NULL.
    pub nullable: bool,
    /// Read as its text (`::text`): a column the star schema does not read,
    /// of a type the extract has no exact decoding for.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub as_text: bool,
}

/// One source table as this run reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceTable {
    /// The PostgreSQL schema.
    pub schema: String,
    /// Table name in the source (and in the lake).
    pub name: String,
    /// The integer key column.
    pub primary_key: String,
    /// The timestamp column changes are tracked by.
    pub cursor: String,
    /// Columns in source order.
    pub columns: Vec<SourceColumn>,
}

impl SourceTable {
    /// The table exactly as the model reads it (schema `public`, cursor
    /// `last_updated`): what a source holding only the model's columns
    /// discovers. For tests and tools that build a source.
    pub fn from_model(def: &TableDef) -> Arc<SourceTable> {
        Arc::new(SourceTable {
            schema: "public".to_string(),
            name: def.name.to_string(),
            primary_key: def.primary_key.to_string(),
            cursor: crate::LAST_UPDATED.to_string(),
            columns: def
                .columns
                .iter()
                .map(|c| SourceColumn {
                    name: c.name.to_string(),
                    pg: c.pg,
                    nullable: c.nullable,
                    as_text: false,
                })
                .collect(),
        })
    }

    /// The Arrow schema of the table's raw files.
    pub fn arrow_schema(&self) -> SchemaRef {
        let fields: Vec<Field> = self
            .columns
            .iter()
            .map(|c| Field::new(&c.name, c.pg.arrow_type(), c.nullable))
            .collect();
        Arc::new(Schema::new(fields))
    }

    /// Position of a column, by name.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// `alias."a", alias."b"::text, …` for a SELECT list.
    pub fn quoted_columns(&self, alias: &str) -> String {
        self.columns
            .iter()
            .map(|c| {
                let cast = if c.as_text { "::text" } else { "" };
                format!("{alias}.{}{cast}", quote_ident(&c.name))
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `"schema"."table"`.
    pub fn quoted_name(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }
}

/// A PostgreSQL identifier, quoted (names come from the catalog and the
/// configuration, never spliced bare).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Why a configured table is not read this run: the other tables go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableStop {
    /// The table.
    pub table: String,
    /// What is wrong, naming the column.
    pub reason: String,
    /// What fixes it.
    pub action: String,
}

/// Reads every configured table's columns and key from the catalog, in the
/// transaction `tx` (the run's snapshot), and checks each against the model.
/// One entry per configured table, in configuration order.
pub async fn discover(
    tx: &Transaction<'_>,
    spec: &SourceSpec,
) -> Result<Vec<Result<Arc<SourceTable>, TableStop>>> {
    let names: Vec<&str> = spec.tables.iter().map(|t| t.name.as_str()).collect();
    let rows = tx
        .query(
            "SELECT c.relname::text, a.attname::text, t.typname::text, t.typtype::text, \
                    a.atttypmod, a.attnotnull, format_type(a.atttypid, a.atttypmod) \
             FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
             JOIN pg_type t ON t.oid = a.atttypid \
             WHERE n.nspname = $1 AND c.relname = ANY($2) AND c.relkind IN ('r', 'p') \
             ORDER BY c.relname, a.attnum",
            &[&spec.schema, &names],
        )
        .await?;
    let mut columns: BTreeMap<String, Vec<CatalogColumn>> = BTreeMap::new();
    for row in rows {
        columns.entry(row.get(0)).or_default().push(CatalogColumn {
            name: row.get(1),
            typname: row.get(2),
            typtype: row.get(3),
            typmod: row.get(4),
            not_null: row.get(5),
            shown: row.get(6),
        });
    }
    let keys = primary_keys(tx, &spec.schema, &names).await?;
    // Columns a unique index covers alone (and in every row): what may key a
    // table in place of its primary key.
    let unique = tx
        .query(
            "SELECT c.relname::text, a.attname::text \
             FROM pg_index i \
             JOIN pg_class c ON c.oid = i.indrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = i.indkey[0] \
             WHERE i.indisunique AND i.indnkeyatts = 1 AND i.indpred IS NULL \
               AND n.nspname = $1 AND c.relname = ANY($2)",
            &[&spec.schema, &names],
        )
        .await?;
    let mut unique_columns: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for row in unique {
        unique_columns
            .entry(row.get(0))
            .or_default()
            .push(row.get(1));
    }
    Ok(spec
        .tables
        .iter()
        .map(|configured| {
            let found = columns.get(&configured.name).map(Vec::as_slice);
            let key = keys.get(&configured.name).map(Vec::as_slice);
            let unique = unique_columns
                .get(&configured.name)
                .map_or(&[][..], Vec::as_slice);
            describe(&spec.schema, configured, found, key, unique)
                .and_then(|table| check_against_model(&table).map(|()| Arc::new(table)))
        })
        .collect())
}

/// The primary key columns, in key order, of each of `tables` in `schema`
/// that has one (the generic sources ask the same of the catalog).
pub async fn primary_keys(
    tx: &Transaction<'_>,
    schema: &str,
    tables: &[&str],
) -> Result<BTreeMap<String, Vec<String>>, tokio_postgres::Error> {
    let rows = tx
        .query(
            "SELECT c.relname::text, array_agg(a.attname::text ORDER BY k.ord) \
             FROM pg_index i \
             JOIN pg_class c ON c.oid = i.indrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) \
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum \
             WHERE i.indisprimary AND n.nspname = $1 AND c.relname = ANY($2) \
             GROUP BY c.relname",
            &[&schema, &tables],
        )
        .await?;
    Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// One column as the catalog lists it.
#[derive(Debug, Clone)]
pub struct CatalogColumn {
    /// Its name.
    pub name: String,
    /// `pg_type.typname` (`int4`, `varchar`, …).
    pub typname: String,
    /// `pg_type.typtype` (`b` base, `e` enum, `d` domain, …).
    pub typtype: String,
    /// `atttypmod` (numeric's precision and scale; -1 when unconstrained).
    pub typmod: i32,
    /// `attnotnull`.
    pub not_null: bool,
    /// `format_type(…)`, for messages.
    pub shown: String,
}

/// The decoding of a catalog type, or `None` when the totesys extract does
/// not read it.
pub fn pg_type_of(column: &CatalogColumn) -> Option<PgType> {
    if column.typtype == "e" {
        return Some(PgType::Enum);
    }
    match column.typname.as_str() {
        "int4" => Some(PgType::Int4),
        "text" | "varchar" | "bpchar" => Some(PgType::Text),
        "timestamp" => Some(PgType::Timestamp),
        "bool" => Some(PgType::Bool),
        "numeric" if column.typmod >= 4 => {
            let precision = ((column.typmod - 4) >> 16) & 0xffff;
            let scale = (column.typmod - 4) & 0xffff;
            (1..=38)
                .contains(&precision)
                .then_some(PgType::Numeric {
                    precision: precision as u8,
                    scale: scale as i8,
                })
                .filter(|_| scale <= precision)
        }
        _ => None,
    }
}

const READ_TYPES: &str =
    "integer, text, varchar, char, enums, timestamp (without time zone), numeric(p,s) and boolean";

/// One configured table from its catalog columns and primary key.
pub fn describe(
    schema: &str,
    configured: &ConfiguredTable,
    columns: Option<&[CatalogColumn]>,
    catalog_key: Option<&[String]>,
    unique: &[String],
) -> Result<SourceTable, TableStop> {
    let table = configured.name.as_str();
    let stop = |reason: String, action: &str| TableStop {
        table: table.to_string(),
        reason,
        action: action.to_string(),
    };
    let Some(columns) = columns.filter(|c| !c.is_empty()) else {
        return Err(stop(
            format!("table {schema}.{table} is not in the source (or is not a table)"),
            "create it, or remove it from the totesys source file",
        ));
    };
    let model = TableDef::by_name(table);
    let mut read = Vec::with_capacity(columns.len());
    for column in columns {
        let (pg, as_text) = match pg_type_of(column) {
            Some(pg) => (pg, false),
            // A column nothing downstream reads: kept, as its text.
            None if model.is_none_or(|m| m.columns.iter().all(|c| c.name != column.name)) => {
                (PgType::Text, true)
            }
            None => {
                return Err(stop(
                    format!(
                        "{table}.{} has type {}, which the star schema does not read \
                         (the totesys extract reads {READ_TYPES})",
                        column.name, column.shown
                    ),
                    "change the column back to the type the star schema reads \
                     (crates/totesys/src/tables.rs)",
                ));
            }
        };
        read.push(SourceColumn {
            name: column.name.clone(),
            pg,
            nullable: !column.not_null,
            as_text,
        });
    }
    let primary_key = match (&configured.primary_key, catalog_key) {
        (Some(key), _) => key.clone(),
        (None, Some([key])) => key.clone(),
        (None, Some(keys)) => {
            return Err(stop(
                format!(
                    "{table}'s primary key has {} columns ({}); the totesys extract needs one integer key",
                    keys.len(),
                    keys.join(", ")
                ),
                "name one integer key column: primary_key = [\"…\"] under the table in the source file",
            ));
        }
        (None, None) => {
            return Err(stop(
                format!("{table} has no primary key in the catalog"),
                "name its integer key column: primary_key = [\"…\"] under the table in the source file",
            ));
        }
    };
    let column = |name: &str| read.iter().find(|c| c.name == name);
    if column(&primary_key).is_none_or(|c| c.pg != PgType::Int4 || c.as_text) {
        return Err(stop(
            format!("{table}.{primary_key}, its key, is not an integer column of the table"),
            "name an integer key column in the source file",
        ));
    }
    // The catalog's primary key is unique and never NULL; another key must
    // be too, or a read in key order could skip rows that share a value.
    let is_primary = catalog_key.is_some_and(|k| k == [primary_key.clone()]);
    if !is_primary
        && (column(&primary_key).is_some_and(|c| c.nullable) || !unique.contains(&primary_key))
    {
        return Err(stop(
            format!(
                "{table}.{primary_key}, its key, is not NOT NULL with a unique index of its own"
            ),
            "add the constraint at the source, or name a column that has it",
        ));
    }
    match column(&configured.cursor) {
        Some(c) if c.pg == PgType::Timestamp && !c.as_text && !c.nullable => {}
        Some(c) if c.pg == PgType::Timestamp && c.nullable => {
            return Err(stop(
                format!(
                    "{table}.{}, its cursor, may be NULL: such rows would never be read again",
                    configured.cursor
                ),
                "make the column NOT NULL at the source, or name another cursor",
            ));
        }
        _ => {
            return Err(stop(
                format!(
                    "{table}.{}, its cursor, is not a timestamp column of the table",
                    configured.cursor
                ),
                "name a timestamp column that every change moves forward: cursor = \"…\"",
            ));
        }
    }
    Ok(SourceTable {
        schema: schema.to_string(),
        name: table.to_string(),
        primary_key,
        cursor: configured.cursor.clone(),
        columns: read,
    })
}

/// Checks that a table the star schema reads still gives it every column it
/// reads, with the same type, no more nullable than it was, and the same key
/// and cursor. Tables the model does not read pass as they are.
pub fn check_against_model(table: &SourceTable) -> Result<(), TableStop> {
    let Some(model) = TableDef::by_name(&table.name) else {
        return Ok(());
    };
    let stop = |reason: String| TableStop {
        table: table.name.clone(),
        reason,
        action: "the star schema reads this column as it was: restore it at the source \
                 (the table is read again from where it stopped once it matches)"
            .to_string(),
    };
    if table.primary_key != model.primary_key || table.cursor != crate::LAST_UPDATED {
        return Err(stop(format!(
            "{} is keyed by ({}, {}) but the star schema reads it by ({}, {})",
            table.name,
            table.primary_key,
            table.cursor,
            model.primary_key,
            crate::LAST_UPDATED
        )));
    }
    for wanted in model.columns {
        let Some(found) = table.columns.iter().find(|c| c.name == wanted.name) else {
            return Err(stop(format!(
                "{}.{} is gone from the source (dropped or renamed); the star schema reads it",
                table.name, wanted.name
            )));
        };
        let same_type = found.pg.arrow_type() == wanted.pg.arrow_type();
        if !same_type {
            return Err(stop(format!(
                "{}.{} changed type: the star schema reads {}, the source now has {}",
                table.name,
                wanted.name,
                wanted.pg.arrow_type(),
                found.pg.arrow_type()
            )));
        }
        if found.nullable && !wanted.nullable {
            return Err(stop(format!(
                "{}.{} became nullable at the source; the star schema needs a value in every row",
                table.name, wanted.name
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(name: &str, typname: &str, typmod: i32, not_null: bool) -> CatalogColumn {
        CatalogColumn {
            name: name.to_string(),
            typname: typname.to_string(),
            typtype: "b".to_string(),
            typmod,
            not_null,
            shown: typname.to_string(),
        }
    }

    fn describe_t(
        schema: &str,
        configured: &ConfiguredTable,
        columns: Option<&[CatalogColumn]>,
        key: Option<&[String]>,
    ) -> Result<SourceTable, TableStop> {
        describe(schema, configured, columns, key, &[])
    }

    fn configured(name: &str) -> ConfiguredTable {
        ConfiguredTable {
            name: name.to_string(),
            cursor: "last_updated".to_string(),
            primary_key: None,
        }
    }

    /// The catalog's view of a model table, as totesys defines it.
    fn catalog_of(def: &TableDef) -> Vec<CatalogColumn> {
        def.columns
            .iter()
            .map(|c| match c.pg {
                PgType::Int4 => column(c.name, "int4", -1, !c.nullable),
                PgType::Text => column(c.name, "varchar", 104, !c.nullable),
                PgType::Enum => CatalogColumn {
                    typtype: "e".to_string(),
                    ..column(c.name, "payment_kind", -1, !c.nullable)
                },
                PgType::Timestamp => column(c.name, "timestamp", 3, !c.nullable),
                PgType::Numeric { precision, scale } => column(
                    c.name,
                    "numeric",
                    ((i32::from(precision) << 16) | i32::from(scale as u8)) + 4,
                    !c.nullable,
                ),
                PgType::Bool => column(c.name, "bool", -1, !c.nullable),
            })
            .collect()
    }

    #[test]
    fn every_model_table_is_discovered_as_the_model_reads_it() {
        for def in &crate::MODEL_INPUTS {
            let table = describe_t(
                "public",
                &configured(def.name),
                Some(&catalog_of(def)),
                Some(&[def.primary_key.to_string()]),
            )
            .unwrap();
            check_against_model(&table).unwrap();
            assert_eq!(table, *SourceTable::from_model(def), "{}", def.name);
        }
    }

    #[test]
    fn an_added_column_flows_and_a_changed_model_column_stops_the_table() {
        let def = TableDef::by_name("payment").unwrap();
        let mut columns = catalog_of(def);
        columns.push(column("note", "text", -1, false));
        let key = [def.primary_key.to_string()];
        let table =
            describe_t("public", &configured("payment"), Some(&columns), Some(&key)).unwrap();
        check_against_model(&table).unwrap();
        assert_eq!(table.columns.last().unwrap().name, "note");
        assert!(table.arrow_schema().field_with_name("note").is_ok());

        let dropped: Vec<_> = catalog_of(def)
            .into_iter()
            .filter(|c| c.name != "payment_amount")
            .collect();
        let table =
            describe_t("public", &configured("payment"), Some(&dropped), Some(&key)).unwrap();
        let stop = check_against_model(&table).unwrap_err();
        assert!(
            stop.reason.contains("payment.payment_amount is gone"),
            "{stop:?}"
        );

        let mut narrowed = catalog_of(def);
        let amount = narrowed
            .iter_mut()
            .find(|c| c.name == "payment_amount")
            .unwrap();
        amount.typmod = ((8 << 16) | 2) + 4;
        let table = describe_t(
            "public",
            &configured("payment"),
            Some(&narrowed),
            Some(&key),
        )
        .unwrap();
        let stop = check_against_model(&table).unwrap_err();
        assert!(stop.reason.contains("changed type"), "{stop:?}");
        assert!(stop.reason.contains("Decimal128(10, 2)"), "{stop:?}");

        let mut nullable = catalog_of(def);
        nullable[1].not_null = false;
        let table = describe_t(
            "public",
            &configured("payment"),
            Some(&nullable),
            Some(&key),
        )
        .unwrap();
        assert!(
            check_against_model(&table)
                .unwrap_err()
                .reason
                .contains("became nullable")
        );
    }

    #[test]
    fn what_the_extract_cannot_read_is_named_with_its_fix() {
        let def = TableDef::by_name("staff").unwrap();
        let key = [def.primary_key.to_string()];
        let mut columns = catalog_of(def);
        columns.push(CatalogColumn {
            shown: "jsonb".to_string(),
            ..column("profile", "jsonb", -1, false)
        });
        // A column the star schema does not read is kept as its text.
        let table = describe_t("public", &configured("staff"), Some(&columns), Some(&key)).unwrap();
        let profile = table.columns.last().unwrap();
        assert!(profile.as_text && profile.pg == PgType::Text, "{profile:?}");
        assert!(table.quoted_columns("t").ends_with("t.\"profile\"::text"));
        check_against_model(&table).unwrap();
        // One it reads is not.
        let mut retyped = catalog_of(def);
        retyped[1] = CatalogColumn {
            shown: "jsonb".to_string(),
            ..column(&retyped[1].name, "jsonb", -1, true)
        };
        let stop =
            describe_t("public", &configured("staff"), Some(&retyped), Some(&key)).unwrap_err();
        assert!(
            stop.reason.contains("staff.first_name has type jsonb"),
            "{stop:?}"
        );
        assert!(stop.action.contains("change the column back"), "{stop:?}");

        let stop = describe_t("public", &configured("staff"), None, None).unwrap_err();
        assert!(stop.reason.contains("public.staff is not in the source"));

        let stop =
            describe_t("public", &configured("staff"), Some(&catalog_of(def)), None).unwrap_err();
        assert!(stop.reason.contains("no primary key"), "{stop:?}");

        // Another key must be unique and NOT NULL.
        let keyed = ConfiguredTable {
            primary_key: Some("department_id".to_string()),
            ..configured("staff")
        };
        let stop = describe("public", &keyed, Some(&catalog_of(def)), Some(&key), &[]).unwrap_err();
        assert!(stop.reason.contains("unique index"), "{stop:?}");
        let unique = ["department_id".to_string()];
        describe(
            "public",
            &keyed,
            Some(&catalog_of(def)),
            Some(&key),
            &unique,
        )
        .unwrap();
        // A cursor that may be NULL would lose rows.
        let mut nullable_cursor = catalog_of(def);
        nullable_cursor.last_mut().unwrap().not_null = false;
        let stop = describe_t(
            "public",
            &configured("staff"),
            Some(&nullable_cursor),
            Some(&key),
        )
        .unwrap_err();
        assert!(stop.reason.contains("may be NULL"), "{stop:?}");

        let other_cursor = ConfiguredTable {
            cursor: "created_at".to_string(),
            ..configured("staff")
        };
        let table =
            describe_t("public", &other_cursor, Some(&catalog_of(def)), Some(&key)).unwrap();
        assert!(
            check_against_model(&table)
                .unwrap_err()
                .reason
                .contains("keyed by")
        );

        let unconstrained = CatalogColumn {
            typmod: -1,
            ..column("x", "numeric", -1, false)
        };
        assert_eq!(pg_type_of(&unconstrained), None);
    }

    #[test]
    fn identifiers_are_quoted() {
        let mut table =
            (*SourceTable::from_model(TableDef::by_name("transaction").unwrap())).clone();
        table.columns[0].name = "we\"ird".to_string();
        assert_eq!(table.quoted_name(), "\"public\".\"transaction\"");
        assert!(table.quoted_columns("t").starts_with("t.\"we\"\"ird\""));
    }
}
