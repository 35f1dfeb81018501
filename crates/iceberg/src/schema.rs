//! Arrow schemas of the lake's Parquet files as Iceberg schemas.
//!
//! The lake's files are written without Parquet field ids, so every table
//! carries a name mapping (`schema.name-mapping.default`): readers match
//! columns by name, which is what the Iceberg spec prescribes for files
//! written outside Iceberg.

use std::sync::Arc;

use arrow_schema::{DataType, Schema as ArrowSchema, TimeUnit};
use iceberg::spec::{NestedField, PrimitiveType, Schema, Type};

use crate::{Error, Result};

/// The Iceberg type of an Arrow column, or why there is none.
pub(crate) fn primitive(table: &str, column: &str, data_type: &DataType) -> Result<PrimitiveType> {
    let unsupported = || Error::Unsupported {
        table: table.to_string(),
        column: column.to_string(),
        data_type: data_type.to_string(),
    };
    Ok(match data_type {
        DataType::Boolean => PrimitiveType::Boolean,
        DataType::Int8 | DataType::Int16 | DataType::Int32 => PrimitiveType::Int,
        DataType::Int64 => PrimitiveType::Long,
        DataType::Float32 => PrimitiveType::Float,
        DataType::Float64 => PrimitiveType::Double,
        DataType::Decimal128(precision, scale) if *scale >= 0 => PrimitiveType::Decimal {
            precision: u32::from(*precision),
            scale: *scale as u32,
        },
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => PrimitiveType::String,
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => PrimitiveType::Binary,
        DataType::Date32 => PrimitiveType::Date,
        DataType::Time64(TimeUnit::Microsecond) => PrimitiveType::Time,
        // Iceberg timestamps are microseconds; files in milliseconds are
        // read by widening, which every Iceberg reader does for Parquet's
        // TIMESTAMP_MILLIS.
        DataType::Timestamp(TimeUnit::Millisecond | TimeUnit::Microsecond, None) => {
            PrimitiveType::Timestamp
        }
        DataType::Timestamp(TimeUnit::Millisecond | TimeUnit::Microsecond, Some(_)) => {
            PrimitiveType::Timestamptz
        }
        _ => return Err(unsupported()),
    })
}

/// The Iceberg schema of a table whose files have `arrow` as schema; field
/// ids are 1, 2, … in column order (new tables get exactly these).
pub(crate) fn to_iceberg(table: &str, arrow: &ArrowSchema) -> Result<Schema> {
    let mut fields = Vec::with_capacity(arrow.fields().len());
    for (position, field) in arrow.fields().iter().enumerate() {
        let ty = primitive(table, field.name(), field.data_type())?;
        fields.push(Arc::new(NestedField::new(
            position as i32 + 1,
            field.name(),
            Type::Primitive(ty),
            !field.is_nullable(),
        )));
    }
    Ok(Schema::builder().with_fields(fields).build()?)
}

/// The Arrow schema files of a table with `schema` are written in: its
/// columns in order, timestamps in microseconds (with time zone `UTC` for
/// `timestamptz`), nullable where the column is optional.
pub(crate) fn to_arrow(table: &str, schema: &Schema) -> Result<ArrowSchema> {
    let mut fields = Vec::new();
    for field in schema.as_struct().fields() {
        let unsupported = || Error::Unsupported {
            table: table.to_string(),
            column: field.name.clone(),
            data_type: field.field_type.to_string(),
        };
        let Type::Primitive(ty) = field.field_type.as_ref() else {
            return Err(unsupported());
        };
        let data_type = match ty {
            PrimitiveType::Boolean => DataType::Boolean,
            PrimitiveType::Int => DataType::Int32,
            PrimitiveType::Long => DataType::Int64,
            PrimitiveType::Float => DataType::Float32,
            PrimitiveType::Double => DataType::Float64,
            PrimitiveType::Decimal { precision, scale } => DataType::Decimal128(
                u8::try_from(*precision).map_err(|_| unsupported())?,
                i8::try_from(*scale).map_err(|_| unsupported())?,
            ),
            PrimitiveType::Date => DataType::Date32,
            PrimitiveType::Time => DataType::Time64(TimeUnit::Microsecond),
            PrimitiveType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            PrimitiveType::Timestamptz => {
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
            }
            PrimitiveType::String => DataType::Utf8,
            PrimitiveType::Binary => DataType::Binary,
            _ => return Err(unsupported()),
        };
        fields.push(arrow_schema::Field::new(
            field.name.clone(),
            data_type,
            !field.required,
        ));
    }
    Ok(ArrowSchema::new(fields))
}

/// The schema a merged file of the table is written in: the table's
/// columns in order (`current`, its Arrow form), each of `file`'s Arrow
/// type when the file has the column with the same Iceberg type (no cast
/// for what is already right), else the table's.
pub(crate) fn output_schema(
    table: &str,
    schema: &Schema,
    current: &ArrowSchema,
    file: &ArrowSchema,
) -> Result<arrow_schema::SchemaRef> {
    let mut fields = Vec::with_capacity(current.fields().len());
    for (field, iceberg) in current.fields().iter().zip(schema.as_struct().fields()) {
        let kept = file.field_with_name(field.name()).ok().filter(|f| {
            primitive(table, f.name(), f.data_type())
                .ok()
                .map(Type::Primitive)
                == Some(iceberg.field_type.as_ref().clone())
        });
        fields.push(match kept {
            Some(f) => {
                arrow_schema::Field::new(field.name(), f.data_type().clone(), field.is_nullable())
            }
            None => field.as_ref().clone(),
        });
    }
    Ok(std::sync::Arc::new(ArrowSchema::new(fields)))
}

/// Casts that fail rather than make a value NULL.
pub(crate) const EXACT: arrow_cast::CastOptions<'static> = arrow_cast::CastOptions {
    safe: false,
    format_options: arrow_cast::display::FormatOptions::new(),
};

/// `batch` as a file of a table whose files have schema `target`: columns
/// by name, in the target's order, cast where the type was widened, NULL
/// where the batch has none (a file from before the column was added).
pub(crate) fn conform(
    table: &str,
    batch: &arrow_array::RecordBatch,
    target: &arrow_schema::SchemaRef,
) -> Result<arrow_array::RecordBatch> {
    if batch.schema() == *target {
        return Ok(batch.clone());
    }
    let mut columns = Vec::with_capacity(target.fields().len());
    for field in target.fields() {
        columns.push(match batch.column_by_name(field.name()) {
            Some(column) if column.data_type() == field.data_type() => column.clone(),
            Some(column) => arrow_cast::cast_with_options(column, field.data_type(), &EXACT)
                .map_err(|e| Error::Schema {
                    table: table.to_string(),
                    reason: format!("column {}: {e}", field.name()),
                })?,
            None => arrow_array::new_null_array(field.data_type(), batch.num_rows()),
        });
    }
    Ok(arrow_array::RecordBatch::try_new(target.clone(), columns)?)
}

/// Whether Iceberg lets a column of type `from` become `to` in place:
/// int to long, float to double, a decimal to more digits of the same scale.
pub(crate) fn promotes(from: &PrimitiveType, to: &PrimitiveType) -> bool {
    match (from, to) {
        (PrimitiveType::Int, PrimitiveType::Long)
        | (PrimitiveType::Float, PrimitiveType::Double) => true,
        (
            PrimitiveType::Decimal {
                precision: p1,
                scale: s1,
            },
            PrimitiveType::Decimal {
                precision: p2,
                scale: s2,
            },
        ) => s1 == s2 && p2 >= p1,
        _ => false,
    }
}

/// The table property naming `schema`'s columns for readers of files
/// without field ids (`schema.name-mapping.default`).
pub(crate) fn name_mapping_property(schema: &Schema) -> std::collections::HashMap<String, String> {
    std::collections::HashMap::from([(
        "schema.name-mapping.default".to_string(),
        name_mapping_json(schema),
    )])
}

/// The name mapping of `schema` as the JSON the table property holds.
pub(crate) fn name_mapping_json(schema: &Schema) -> String {
    let fields: Vec<serde_json::Value> = schema
        .as_struct()
        .fields()
        .iter()
        .map(|f| serde_json::json!({"field-id": f.id, "names": [f.name]}))
        .collect();
    serde_json::Value::Array(fields).to_string()
}

/// Checks that files with schema `arrow` fit the table's `schema`: the same
/// columns, in the same order, of the same types. Adding columns is a new
/// table version (see [`crate::Catalog::evolve`]); anything else is refused.
pub(crate) fn check_fits(table: &str, schema: &Schema, arrow: &ArrowSchema) -> Result<()> {
    let fields = schema.as_struct().fields();
    let mismatch = |reason: String| Error::Schema {
        table: table.to_string(),
        reason,
    };
    if arrow.fields().len() < fields.len() {
        return Err(mismatch(format!(
            "the files have {} columns, the table {}; dropping a column needs a new table",
            arrow.fields().len(),
            fields.len()
        )));
    }
    for (field, column) in fields.iter().zip(arrow.fields()) {
        let ty = primitive(table, column.name(), column.data_type())?;
        if field.name != *column.name() || *field.field_type != Type::Primitive(ty.clone()) {
            return Err(mismatch(format!(
                "column {} ({}) in the table is {} ({}) in the files",
                field.name,
                field.field_type,
                column.name(),
                ty
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_schema::Field;

    #[test]
    fn warehouse_types_map_to_iceberg_types_and_ids_follow_column_order() {
        let arrow = ArrowSchema::new(vec![
            Field::new("id", DataType::Int32, false),
            Field::new("amount", DataType::Decimal128(10, 2), true),
            Field::new("at", DataType::Timestamp(TimeUnit::Millisecond, None), true),
            Field::new("on", DataType::Date32, false),
            Field::new("name", DataType::Utf8, true),
        ]);
        let schema = to_iceberg("t", &arrow).unwrap();
        let fields = schema.as_struct().fields();
        assert_eq!(
            fields.iter().map(|f| f.id).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5]
        );
        assert!(fields[0].required && !fields[1].required);
        assert_eq!(
            *fields[1].field_type,
            Type::Primitive(PrimitiveType::Decimal {
                precision: 10,
                scale: 2
            })
        );
        assert_eq!(
            *fields[2].field_type,
            Type::Primitive(PrimitiveType::Timestamp)
        );
        let mapping: serde_json::Value = serde_json::from_str(&name_mapping_json(&schema)).unwrap();
        assert_eq!(mapping[4]["names"][0], "name");
        assert_eq!(mapping[4]["field-id"], 5);
    }

    #[test]
    fn an_unsupported_type_names_table_and_column() {
        let arrow = ArrowSchema::new(vec![Field::new(
            "tags",
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            true,
        )]);
        let error = to_iceberg("dim_x", &arrow).unwrap_err().to_string();
        assert!(error.contains("dim_x.tags"), "{error}");
    }

    #[test]
    fn files_with_a_changed_column_do_not_fit() {
        let table = to_iceberg(
            "t",
            &ArrowSchema::new(vec![Field::new("id", DataType::Int32, false)]),
        )
        .unwrap();
        let changed = ArrowSchema::new(vec![Field::new("id", DataType::Utf8, false)]);
        assert!(check_fits("t", &table, &changed).is_err());
        let wider = ArrowSchema::new(vec![
            Field::new("id", DataType::Int32, false),
            Field::new("extra", DataType::Utf8, true),
        ]);
        check_fits("t", &table, &wider).unwrap();
    }
}
