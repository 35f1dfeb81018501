//! PostgreSQL column types as the catalog reports them, and what each
//! becomes in the lake (Arrow, then Parquet) and in the warehouse.

use std::{collections::BTreeMap, sync::Arc};

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::{Deserialize, Serialize};
use tokio_postgres::Client;

use crate::{Error, Result};

/// A column's type, domains resolved to their base type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PgColumnType {
    /// `smallint`.
    Int2,
    /// `integer`.
    Int4,
    /// `bigint`.
    Int8,
    /// `real`.
    Float4,
    /// `double precision`.
    Float8,
    /// `boolean`.
    Bool,
    /// `text`, `varchar(n)`, `char(n)`, `name`.
    Text,
    /// `numeric(p,s)`; both `None` when unconstrained.
    Numeric {
        /// Total digits.
        precision: Option<u8>,
        /// Digits after the point.
        scale: Option<i8>,
    },
    /// `date`.
    Date,
    /// `time` (without time zone).
    Time,
    /// `timestamp` (without time zone).
    Timestamp,
    /// `timestamptz`.
    Timestamptz,
    /// `interval`.
    Interval,
    /// `uuid`.
    Uuid,
    /// `json`.
    Json,
    /// `jsonb`.
    Jsonb,
    /// `bytea`.
    Bytea,
    /// An enum type: its labels travel as text.
    Enum {
        /// The enum type's name.
        name: String,
    },
    /// A one-dimensional array of `element`.
    Array {
        /// The element type.
        element: Box<PgColumnType>,
    },
}

/// One column of a source table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceColumn {
    /// The column's name.
    pub name: String,
    /// Its type, as read (after an override's cast, if any).
    pub ty: PgColumnType,
    /// The type as PostgreSQL names it (`format_type`), for messages and the manifest.
    pub pg_type: String,
    /// Whether it may be NULL.
    pub nullable: bool,
    /// The override this column is read with (a cast), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cast: Option<String>,
}

impl SourceColumn {
    /// The expression the extract selects: the quoted column, cast to its
    /// override when it has one.
    pub fn select_expr(&self) -> String {
        let quoted = quote_ident(&self.name);
        match &self.cast {
            Some(cast) => format!("{quoted}::{cast}"),
            None => quoted,
        }
    }
}

/// `name` quoted as a PostgreSQL identifier.
pub use tributary_totesys::source::quote_ident;

/// The Arrow schema of a table's columns.
pub fn arrow_schema(columns: &[SourceColumn]) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| Field::new(&c.name, c.ty.arrow_type(), c.nullable))
            .collect::<Vec<_>>(),
    ))
}

impl PgColumnType {
    /// The Arrow type the lake stores this as.
    ///
    /// | PostgreSQL | Arrow |
    /// |---|---|
    /// | `smallint`, `integer`, `bigint` | `Int16`, `Int32`, `Int64` |
    /// | `real`, `double precision` | `Float32`, `Float64` |
    /// | `boolean` | `Boolean` |
    /// | `text`, `varchar(n)`, `char(n)`, `name`, enums | `Utf8` (an enum as its label) |
    /// | `numeric(p,s)`, 1 ≤ p ≤ 38 and 0 ≤ s ≤ p | `Decimal128(p, s)` |
    /// | any other `numeric` | `Utf8` |
    /// | `date` | `Date32` |
    /// | `time` | `Time64(Microsecond)` |
    /// | `timestamp` | `Timestamp(Microsecond, None)` |
    /// | `timestamptz` | `Timestamp(Microsecond, "UTC")` |
    /// | `interval` | `Utf8`, ISO 8601 |
    /// | `uuid` | `Utf8`, lowercase and hyphenated |
    /// | `json`, `jsonb` | `Utf8`, the JSON text |
    /// | `bytea` | `Binary` |
    /// | one-dimensional arrays | `List` of the element's type (field `item`, nullable) |
    ///
    /// A `numeric` that Decimal128 cannot hold (unconstrained, more than 38
    /// digits, or a scale that is negative or larger than the precision) is
    /// stored as PostgreSQL's own decimal text: exact, never rounded, with
    /// every digit of its display scale; `NaN`, `Infinity` and `-Infinity`
    /// as those words. A constrained `numeric` that holds `NaN` or an
    /// infinity does not decode (override it as `text`).
    ///
    /// An `interval` is written as an ISO 8601 duration that PostgreSQL
    /// reads back as the same interval: years, months and days as stored,
    /// then hours, minutes and seconds of the time part, each part with its
    /// own sign (`P1Y2M3DT4H5M6.5S`, `P-1D`, `PT-5S`, `PT0S` for zero).
    pub fn arrow_type(&self) -> DataType {
        match self {
            Self::Int2 => DataType::Int16,
            Self::Int4 => DataType::Int32,
            Self::Int8 => DataType::Int64,
            Self::Float4 => DataType::Float32,
            Self::Float8 => DataType::Float64,
            Self::Bool => DataType::Boolean,
            Self::Numeric { .. } => match self.decimal() {
                Some((precision, scale)) => DataType::Decimal128(precision, scale),
                None => DataType::Utf8,
            },
            Self::Date => DataType::Date32,
            Self::Time => DataType::Time64(TimeUnit::Microsecond),
            Self::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            Self::Timestamptz => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            Self::Text
            | Self::Interval
            | Self::Uuid
            | Self::Json
            | Self::Jsonb
            | Self::Enum { .. } => DataType::Utf8,
            Self::Bytea => DataType::Binary,
            Self::Array { element } => {
                DataType::List(Arc::new(Field::new("item", element.arrow_type(), true)))
            }
        }
    }

    /// The `(precision, scale)` of a `numeric` stored as Decimal128, `None`
    /// for a `numeric` stored as text (and for every other type).
    pub fn decimal(&self) -> Option<(u8, i8)> {
        match self {
            Self::Numeric {
                precision: Some(precision),
                scale,
            } => {
                let scale = scale.unwrap_or(0);
                ((1..=38).contains(precision) && scale >= 0 && scale as u8 <= *precision)
                    .then_some((*precision, scale))
            }
            _ => None,
        }
    }

    /// The column type of the warehouse's copy of the table.
    pub fn warehouse_type(&self) -> String {
        match self {
            Self::Int2 => "smallint".into(),
            Self::Int4 => "integer".into(),
            Self::Int8 => "bigint".into(),
            Self::Float4 => "real".into(),
            Self::Float8 => "double precision".into(),
            Self::Bool => "boolean".into(),
            Self::Text | Self::Enum { .. } => "text".into(),
            Self::Numeric {
                precision: Some(precision),
                scale,
            } => format!("numeric({precision},{})", scale.unwrap_or(0)),
            Self::Numeric { .. } => "numeric".into(),
            Self::Date => "date".into(),
            Self::Time => "time".into(),
            Self::Timestamp => "timestamp".into(),
            Self::Timestamptz => "timestamptz".into(),
            Self::Interval => "interval".into(),
            Self::Uuid => "uuid".into(),
            Self::Json => "json".into(),
            Self::Jsonb => "jsonb".into(),
            Self::Bytea => "bytea".into(),
            Self::Array { element } => format!("{}[]", element.warehouse_type()),
        }
    }

    /// Parses a type name as a source file's override names it
    /// (`text`, `bigint`, `numeric(12,2)`, `timestamp with time zone`,
    /// `text[]`, …); `None` for a name Tributary does not map.
    pub fn parse(name: &str) -> Option<PgColumnType> {
        let name = name
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_ascii_lowercase();
        if let Some(element) = name.strip_suffix("[]") {
            return match Self::parse(element)? {
                Self::Array { .. } => None,
                element => Some(Self::Array {
                    element: Box::new(element),
                }),
            };
        }
        // Split `base(args) rest`, e.g. `timestamp(3) with time zone`.
        let (base, args) = match name.split_once('(') {
            Some((base, rest)) => {
                let (args, tail) = rest.split_once(')')?;
                let args: Vec<u32> = args
                    .split(',')
                    .map(|a| a.trim().parse::<u32>().ok())
                    .collect::<Option<_>>()?;
                (format!("{} {}", base.trim(), tail.trim()), args)
            }
            None => (name, Vec::new()),
        };
        let base = base.trim();
        let no_args = |ty: PgColumnType| args.is_empty().then_some(ty);
        let at_most_one = |ty: PgColumnType| (args.len() <= 1).then_some(ty);
        match base {
            "smallint" | "int2" => no_args(Self::Int2),
            "integer" | "int" | "int4" => no_args(Self::Int4),
            "bigint" | "int8" => no_args(Self::Int8),
            "real" | "float4" => no_args(Self::Float4),
            "double precision" | "float8" => no_args(Self::Float8),
            "float" => match args.as_slice() {
                [] => Some(Self::Float8),
                [p] if (1..=24).contains(p) => Some(Self::Float4),
                [p] if (25..=53).contains(p) => Some(Self::Float8),
                _ => None,
            },
            "boolean" | "bool" => no_args(Self::Bool),
            "text" | "name" => no_args(Self::Text),
            "varchar" | "character varying" | "char" | "character" | "bpchar" => {
                at_most_one(Self::Text)
            }
            "numeric" | "decimal" => match args.as_slice() {
                [] => Some(Self::Numeric {
                    precision: None,
                    scale: None,
                }),
                [p] => numeric_type(*p as i64, 0),
                [p, s] => numeric_type(*p as i64, *s as i64),
                _ => None,
            },
            "date" => no_args(Self::Date),
            "time" | "time without time zone" => at_most_one(Self::Time),
            "timestamp" | "timestamp without time zone" => at_most_one(Self::Timestamp),
            "timestamptz" | "timestamp with time zone" => at_most_one(Self::Timestamptz),
            "interval" => at_most_one(Self::Interval),
            "uuid" => no_args(Self::Uuid),
            "json" => no_args(Self::Json),
            "jsonb" => no_args(Self::Jsonb),
            "bytea" => no_args(Self::Bytea),
            _ => None,
        }
    }
}

/// `numeric(precision, scale)`, or unconstrained `numeric` when the
/// modifiers do not fit the type's fields (the values stay exact either way).
fn numeric_type(precision: i64, scale: i64) -> Option<PgColumnType> {
    if !(1..=1000).contains(&precision) {
        return None;
    }
    Some(match (u8::try_from(precision), i8::try_from(scale)) {
        (Ok(precision), Ok(scale)) => PgColumnType::Numeric {
            precision: Some(precision),
            scale: Some(scale),
        },
        _ => PgColumnType::Numeric {
            precision: None,
            scale: None,
        },
    })
}

/// `numeric`'s type modifier (`atttypmod`) as `numeric(p,s)`; -1 is unconstrained.
fn numeric_from_typmod(typmod: i32) -> PgColumnType {
    if typmod < 4 {
        return PgColumnType::Numeric {
            precision: None,
            scale: None,
        };
    }
    let packed = typmod - 4;
    let precision = (packed >> 16) & 0xffff;
    // PostgreSQL 15 stores the scale as an 11-bit two's complement number.
    let scale = ((packed & 0x7ff) ^ 1024) - 1024;
    numeric_type(precision.into(), scale.into()).unwrap_or(PgColumnType::Numeric {
        precision: None,
        scale: None,
    })
}

/// Built-in type OIDs (fixed by PostgreSQL's catalog).
mod oid {
    pub(super) const BOOL: u32 = 16;
    pub(super) const BYTEA: u32 = 17;
    pub(super) const NAME: u32 = 19;
    pub(super) const INT8: u32 = 20;
    pub(super) const INT2: u32 = 21;
    pub(super) const INT4: u32 = 23;
    pub(super) const TEXT: u32 = 25;
    pub(super) const JSON: u32 = 114;
    pub(super) const FLOAT4: u32 = 700;
    pub(super) const FLOAT8: u32 = 701;
    pub(super) const BPCHAR: u32 = 1042;
    pub(super) const VARCHAR: u32 = 1043;
    pub(super) const DATE: u32 = 1082;
    pub(super) const TIME: u32 = 1083;
    pub(super) const TIMESTAMP: u32 = 1114;
    pub(super) const TIMESTAMPTZ: u32 = 1184;
    pub(super) const INTERVAL: u32 = 1186;
    pub(super) const NUMERIC: u32 = 1700;
    pub(super) const UUID: u32 = 2950;
    pub(super) const JSONB: u32 = 3802;
}

/// A built-in scalar type by OID, with the column's type modifier.
fn builtin(type_oid: u32, typmod: i32) -> Option<PgColumnType> {
    use PgColumnType as T;
    Some(match type_oid {
        oid::BOOL => T::Bool,
        oid::BYTEA => T::Bytea,
        oid::NAME | oid::TEXT | oid::BPCHAR | oid::VARCHAR => T::Text,
        oid::INT8 => T::Int8,
        oid::INT2 => T::Int2,
        oid::INT4 => T::Int4,
        oid::JSON => T::Json,
        oid::FLOAT4 => T::Float4,
        oid::FLOAT8 => T::Float8,
        oid::DATE => T::Date,
        oid::TIME => T::Time,
        oid::TIMESTAMP => T::Timestamp,
        oid::TIMESTAMPTZ => T::Timestamptz,
        oid::INTERVAL => T::Interval,
        oid::NUMERIC => numeric_from_typmod(typmod),
        oid::UUID => T::Uuid,
        oid::JSONB => T::Jsonb,
        _ => return None,
    })
}

/// What the catalog says about one type.
struct CatalogType {
    name: String,
    kind: i8,
    category: i8,
    base: u32,
    base_typmod: i32,
    element: u32,
}

/// Looks types up in `pg_type`, each at most once.
struct Catalog<'a> {
    client: &'a Client,
    seen: BTreeMap<u32, Option<Arc<CatalogType>>>,
}

impl Catalog<'_> {
    async fn get(&mut self, type_oid: u32) -> Result<Option<Arc<CatalogType>>> {
        if let Some(found) = self.seen.get(&type_oid) {
            return Ok(found.clone());
        }
        let row = self
            .client
            .query_opt(
                "SELECT typname::text, typtype, typcategory, typbasetype, typtypmod, typelem \
                 FROM pg_catalog.pg_type WHERE oid = $1",
                &[&type_oid],
            )
            .await?;
        let found = row.map(|row| {
            Arc::new(CatalogType {
                name: row.get(0),
                kind: row.get(1),
                category: row.get(2),
                base: row.get(3),
                base_typmod: row.get(4),
                element: row.get(5),
            })
        });
        self.seen.insert(type_oid, found.clone());
        Ok(found)
    }

    /// The mapped type of `type_oid` with modifier `typmod`: domains
    /// resolved, enums by name, one level of array; `None` if unmapped.
    async fn resolve(&mut self, type_oid: u32, typmod: i32) -> Result<Option<PgColumnType>> {
        let (mut type_oid, mut typmod) = (type_oid, typmod);
        let mut array_of = false;
        // Domains over domains (over arrays of domains…) end in a few steps;
        // the bound only guards against a catalog that loops.
        for _ in 0..32 {
            if let Some(ty) = builtin(type_oid, typmod) {
                return Ok(Some(wrap(ty, array_of)));
            }
            let Some(found) = self.get(type_oid).await? else {
                return Ok(None);
            };
            match found.kind as u8 {
                b'd' => {
                    type_oid = found.base;
                    if found.base_typmod != -1 {
                        typmod = found.base_typmod;
                    }
                }
                b'e' => {
                    let ty = PgColumnType::Enum {
                        name: found.name.clone(),
                    };
                    return Ok(Some(wrap(ty, array_of)));
                }
                b'b' if found.category as u8 == b'A' && found.element != 0 => {
                    if array_of {
                        return Ok(None);
                    }
                    array_of = true;
                    type_oid = found.element;
                }
                _ => return Ok(None),
            }
        }
        Ok(None)
    }
}

/// `ty`, or an array of `ty`.
fn wrap(ty: PgColumnType, array: bool) -> PgColumnType {
    if array {
        PgColumnType::Array {
            element: Box::new(ty),
        }
    } else {
        ty
    }
}

/// The columns of `schema.table` in order, from the catalog; `overrides`
/// (column → PostgreSQL type) are read as casts. An unmapped type without
/// an override is [`crate::Error::UnsupportedType`].
///
/// Domains become their base type (with the domain's type modifier), enums
/// [`PgColumnType::Enum`], arrays of a mapped element type
/// [`PgColumnType::Array`]. An override must name a type
/// [`PgColumnType::parse`] knows, or it is [`crate::Error::Config`].
pub async fn table_columns(
    client: &Client,
    schema: &str,
    table: &str,
    overrides: &BTreeMap<String, String>,
) -> Result<Vec<SourceColumn>> {
    let rows = client
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull, \
                    a.atttypid, a.atttypmod \
             FROM pg_catalog.pg_attribute a \
             JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped \
             ORDER BY a.attnum",
            &[&schema, &table],
        )
        .await?;
    if rows.is_empty() {
        return Err(Error::Config {
            file: format!("{schema}.{table}"),
            reason: format!("table {schema}.{table} does not exist or has no columns"),
        });
    }
    let mut catalog = Catalog {
        client,
        seen: BTreeMap::new(),
    };
    let mut columns = Vec::with_capacity(rows.len());
    for row in rows {
        let name: String = row.get(0);
        let pg_type: String = row.get(1);
        let not_null: bool = row.get(2);
        let type_oid: u32 = row.get(3);
        let typmod: i32 = row.get(4);
        let (ty, cast) = match overrides.get(&name) {
            Some(cast) => {
                let Some(ty) = PgColumnType::parse(cast) else {
                    return Err(Error::Config {
                        file: format!("[tables.{table}.types]"),
                        reason: format!(
                            "{table}.{name}: override type {cast:?} is not one Tributary reads; \
                             use text, smallint, integer, bigint, real, double precision, boolean, \
                             numeric(p,s), numeric, date, time, timestamp, timestamptz, interval, \
                             uuid, json, jsonb or bytea (or an array of one, e.g. text[])"
                        ),
                    });
                };
                (ty, Some(cast.trim().to_string()))
            }
            None => match catalog.resolve(type_oid, typmod).await? {
                Some(ty) => (ty, None),
                None => {
                    return Err(Error::UnsupportedType {
                        table: table.to_string(),
                        column: name,
                        pg_type,
                    });
                }
            },
        };
        columns.push(SourceColumn {
            name,
            ty,
            pg_type,
            nullable: !not_null,
            cast,
        });
    }
    for name in overrides.keys() {
        if !columns.iter().any(|c| &c.name == name) {
            tracing::warn!(table, column = %name, "type override names a column the table does not have");
        }
    }
    Ok(columns)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric(precision: u8, scale: i8) -> PgColumnType {
        PgColumnType::Numeric {
            precision: Some(precision),
            scale: Some(scale),
        }
    }

    const UNCONSTRAINED: PgColumnType = PgColumnType::Numeric {
        precision: None,
        scale: None,
    };

    #[test]
    fn arrow_types_follow_the_mapping() {
        use PgColumnType as T;
        let cases = [
            (T::Int2, DataType::Int16),
            (T::Int4, DataType::Int32),
            (T::Int8, DataType::Int64),
            (T::Float4, DataType::Float32),
            (T::Float8, DataType::Float64),
            (T::Bool, DataType::Boolean),
            (T::Text, DataType::Utf8),
            (numeric(12, 3), DataType::Decimal128(12, 3)),
            (numeric(38, 0), DataType::Decimal128(38, 0)),
            (numeric(39, 2), DataType::Utf8),
            (numeric(5, -2), DataType::Utf8),
            (numeric(2, 5), DataType::Utf8),
            (UNCONSTRAINED, DataType::Utf8),
            (T::Date, DataType::Date32),
            (T::Time, DataType::Time64(TimeUnit::Microsecond)),
            (
                T::Timestamp,
                DataType::Timestamp(TimeUnit::Microsecond, None),
            ),
            (
                T::Timestamptz,
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            ),
            (T::Interval, DataType::Utf8),
            (T::Uuid, DataType::Utf8),
            (T::Json, DataType::Utf8),
            (T::Jsonb, DataType::Utf8),
            (T::Bytea, DataType::Binary),
            (
                T::Enum {
                    name: "mood".into(),
                },
                DataType::Utf8,
            ),
            (
                T::Array {
                    element: Box::new(numeric(6, 2)),
                },
                DataType::List(Arc::new(Field::new(
                    "item",
                    DataType::Decimal128(6, 2),
                    true,
                ))),
            ),
        ];
        for (ty, arrow) in cases {
            assert_eq!(ty.arrow_type(), arrow, "{ty:?}");
        }
    }

    #[test]
    fn warehouse_types_name_postgresql_types() {
        use PgColumnType as T;
        let cases = [
            (T::Int2, "smallint"),
            (T::Float8, "double precision"),
            (numeric(12, 3), "numeric(12,3)"),
            (numeric(50, 10), "numeric(50,10)"),
            (UNCONSTRAINED, "numeric"),
            (T::Timestamptz, "timestamptz"),
            (
                T::Enum {
                    name: "mood".into(),
                },
                "text",
            ),
            (
                T::Array {
                    element: Box::new(T::Enum {
                        name: "mood".into(),
                    }),
                },
                "text[]",
            ),
            (
                T::Array {
                    element: Box::new(numeric(6, 2)),
                },
                "numeric(6,2)[]",
            ),
        ];
        for (ty, name) in cases {
            assert_eq!(ty.warehouse_type(), name);
            // Every warehouse type parses back to the same type (enums as text).
            let back = PgColumnType::parse(name).unwrap();
            assert_eq!(back.warehouse_type(), name);
        }
    }

    #[test]
    fn override_names_parse() {
        use PgColumnType as T;
        let cases = [
            ("text", T::Text),
            ("  Character   Varying(20) ", T::Text),
            ("bigint", T::Int8),
            ("int", T::Int4),
            ("float", T::Float8),
            ("float(10)", T::Float4),
            ("numeric(12,2)", numeric(12, 2)),
            ("decimal(7)", numeric(7, 0)),
            ("numeric", UNCONSTRAINED),
            ("numeric(500,2)", UNCONSTRAINED),
            ("timestamp(3) with time zone", T::Timestamptz),
            ("timestamp without time zone", T::Timestamp),
            ("jsonb", T::Jsonb),
            (
                "text[]",
                T::Array {
                    element: Box::new(T::Text),
                },
            ),
        ];
        for (name, ty) in cases {
            assert_eq!(PgColumnType::parse(name), Some(ty), "{name}");
        }
        for bad in [
            "point",
            "text[][]",
            "numeric(a,2)",
            "integer(3)",
            "text; drop table x",
            "numeric(0,0)",
            "",
        ] {
            assert_eq!(PgColumnType::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn numeric_type_modifiers_unpack() {
        let typmod = |p: i32, s: i32| ((p << 16) | (s & 0x7ff)) + 4;
        assert_eq!(numeric_from_typmod(-1), UNCONSTRAINED);
        assert_eq!(numeric_from_typmod(typmod(12, 3)), numeric(12, 3));
        assert_eq!(numeric_from_typmod(typmod(5, -2)), numeric(5, -2));
        assert_eq!(numeric_from_typmod(typmod(1000, 2)), UNCONSTRAINED);
    }
}
