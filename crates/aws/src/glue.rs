//! The Glue Data Catalog: one database, one Apache Iceberg table per
//! processed dataset, each pointed at its current metadata file, and one
//! table per raw dataset over its files as received (partition projection
//! on the `date=` folders), so Athena reads both without a crawler.

use std::{future::Future, pin::Pin};

use aws_sdk_glue::types::{Column, DatabaseInput, SerDeInfo, StorageDescriptor, TableInput};
use tributary_pipeline::catalog::{
    Catalog, RAW_PARTITION, RAW_SINCE, RawFormat, TableFormat, TableSpec, definition_digest,
};

use crate::{Error, Result, describe};

/// Registers tables in one Glue database.
#[derive(Debug, Clone)]
pub struct GlueCatalog {
    client: aws_sdk_glue::Client,
    database: String,
}

fn call<E, R>(operation: &'static str, error: &aws_sdk_glue::error::SdkError<E, R>) -> Error
where
    E: aws_sdk_glue::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    crate::sdk_error("glue", operation, error)
}

/// A request that could not be built: a bug, not worth retrying.
fn invalid(operation: &'static str, error: &(dyn std::error::Error + 'static)) -> Error {
    Error::Call {
        service: "glue",
        operation,
        reason: describe(error),
        retryable: false,
    }
}

fn columns(specs: &[(String, String)]) -> Result<Vec<Column>> {
    specs
        .iter()
        .map(|(name, ty)| {
            Column::builder()
                .name(name)
                .r#type(ty)
                .build()
                .map_err(|e| invalid("Column", &e))
        })
        .collect()
}

/// The table parameter holding a raw table's [`definition_digest`]: the
/// catalog updates the table when it differs.
pub const DEFINITION: &str = "tributary_definition";

/// The table input for a spec. An Iceberg table: Athena reads `table_type`
/// and `metadata_location`, the columns are for people browsing, and
/// `previous` is the metadata file registered before, if any. A raw table:
/// a Hive table of the files as received, its `date` folders found by
/// partition projection.
pub fn table_input(spec: &TableSpec, previous: Option<&str>) -> Result<TableInput> {
    let input = TableInput::builder()
        .name(&spec.name)
        .table_type("EXTERNAL_TABLE")
        .parameters("EXTERNAL", "TRUE");
    let descriptor = StorageDescriptor::builder()
        .set_columns(Some(columns(&spec.columns)?))
        .location(&spec.location);
    let (input, descriptor) = match &spec.format {
        TableFormat::Iceberg { metadata_location } => {
            let mut input = input
                .parameters("table_type", "ICEBERG")
                .parameters("metadata_location", metadata_location);
            if let Some(previous) = previous {
                input = input.parameters("previous_metadata_location", previous);
            }
            (input, descriptor)
        }
        TableFormat::Raw(format) => raw_input(spec, *format, input, descriptor)?,
    };
    input
        .storage_descriptor(descriptor.build())
        .build()
        .map_err(|e| invalid("TableInput", &e))
}

/// A raw table: its file format, and projection of the `date=YYYY-MM-DD`
/// folders from [`RAW_SINCE`] to today, so a new day needs no registration.
fn raw_input(
    spec: &TableSpec,
    format: RawFormat,
    input: aws_sdk_glue::types::builders::TableInputBuilder,
    descriptor: aws_sdk_glue::types::builders::StorageDescriptorBuilder,
) -> Result<(
    aws_sdk_glue::types::builders::TableInputBuilder,
    aws_sdk_glue::types::builders::StorageDescriptorBuilder,
)> {
    const TEXT_IN: &str = "org.apache.hadoop.mapred.TextInputFormat";
    const TEXT_OUT: &str = "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat";
    let (classification, input_format, output_format, serde, serde_parameters): (
        &str,
        &str,
        &str,
        &str,
        &[(&str, &str)],
    ) = match format {
        RawFormat::Parquet => (
            "parquet",
            "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
            "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
            "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe",
            &[("serialization.format", "1")],
        ),
        RawFormat::JsonLines => (
            "json",
            TEXT_IN,
            TEXT_OUT,
            "org.openx.data.jsonserde.JsonSerDe",
            &[("case.insensitive", "TRUE")],
        ),
        // One column a line: the default field delimiter (\u0001) never
        // occurs unescaped in JSON.
        RawFormat::Lines => (
            "csv",
            TEXT_IN,
            TEXT_OUT,
            "org.apache.hadoop.hive.serde2.lazy.LazySimpleSerDe",
            &[("serialization.format", "1")],
        ),
    };
    let mut serde_info = SerDeInfo::builder().serialization_library(serde);
    for (key, value) in serde_parameters {
        serde_info = serde_info.parameters(*key, *value);
    }
    let column = format!("projection.{RAW_PARTITION}");
    let input = input
        .parameters("classification", classification)
        .parameters("projection.enabled", "true")
        .parameters(format!("{column}.type"), "date")
        .parameters(format!("{column}.format"), "yyyy-MM-dd")
        .parameters(format!("{column}.range"), format!("{RAW_SINCE},NOW"))
        .parameters(format!("{column}.interval"), "1")
        .parameters(format!("{column}.interval.unit"), "DAYS")
        .parameters(
            "storage.location.template",
            format!("{}/{RAW_PARTITION}=${{{RAW_PARTITION}}}/", spec.location),
        )
        .parameters(DEFINITION, definition_digest(std::slice::from_ref(spec)))
        .partition_keys(
            Column::builder()
                .name(RAW_PARTITION)
                .r#type("string")
                .build()
                .map_err(|e| invalid("Column", &e))?,
        );
    let descriptor = descriptor
        .input_format(input_format)
        .output_format(output_format)
        .serde_info(serde_info.build());
    Ok((input, descriptor))
}

impl GlueCatalog {
    /// The catalog database `database`.
    pub fn new(client: aws_sdk_glue::Client, database: impl Into<String>) -> Self {
        Self {
            client,
            database: database.into(),
        }
    }

    /// Creates the database when it is missing (Terraform normally has).
    pub async fn ensure_database(&self) -> Result<()> {
        match self.client.get_database().name(&self.database).send().await {
            Ok(_) => return Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_entity_not_found_exception()) => {}
            Err(e) => return Err(call("GetDatabase", &e)),
        }
        let input = DatabaseInput::builder()
            .name(&self.database)
            .description("Tributary processed lake (tables created by the transform)")
            .build()
            .map_err(|e| invalid("DatabaseInput", &e))?;
        match self
            .client
            .create_database()
            .database_input(input)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_already_exists_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(call("CreateDatabase", &e)),
        }
    }

    /// Creates the table, or points it at its new metadata file.
    async fn ensure_table(&self, spec: &TableSpec) -> Result<()> {
        let existing = match self
            .client
            .get_table()
            .database_name(&self.database)
            .name(&spec.name)
            .send()
            .await
        {
            Ok(out) => out.table,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_entity_not_found_exception()) =>
            {
                None
            }
            Err(e) => return Err(call("GetTable", &e)),
        };
        let Some(table) = existing else {
            return match self
                .client
                .create_table()
                .database_name(&self.database)
                .table_input(table_input(spec, None)?)
                .send()
                .await
            {
                Ok(_) => Ok(()),
                // Another run created it meanwhile. An Iceberg table is
                // pointed at its newer version by the next sync; a raw
                // table's definition is written now (it is synced again
                // only when it changes, or by the hourly maintenance).
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_already_exists_exception()) =>
                {
                    match spec.format {
                        TableFormat::Iceberg { .. } => Ok(()),
                        TableFormat::Raw(_) => self.update_table(spec, None).await,
                    }
                }
                Err(e) => Err(call("CreateTable", &e)),
            };
        };
        let parameters = table.parameters();
        let registered = parameters
            .and_then(|p| p.get("metadata_location"))
            .map(String::as_str);
        let current = match &spec.format {
            TableFormat::Iceberg { metadata_location } => registered == Some(metadata_location),
            TableFormat::Raw(_) => {
                parameters
                    .and_then(|p| p.get(DEFINITION))
                    .map(String::as_str)
                    == Some(definition_digest(std::slice::from_ref(spec)).as_str())
            }
        };
        if current {
            return Ok(());
        }
        self.update_table(spec, registered).await
    }

    /// Writes the spec over the registered table (`previous`: its metadata
    /// file, for an Iceberg table).
    async fn update_table(&self, spec: &TableSpec, previous: Option<&str>) -> Result<()> {
        self.client
            .update_table()
            .database_name(&self.database)
            .table_input(table_input(spec, previous)?)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| call("UpdateTable", &e))
    }

    async fn sync_all(&self, tables: &[TableSpec]) -> Result<()> {
        if tables.is_empty() {
            return Ok(());
        }
        self.ensure_database().await?;
        for spec in tables {
            self.ensure_table(spec).await?;
        }
        Ok(())
    }
}

impl Catalog for GlueCatalog {
    fn sync<'a>(
        &'a self,
        tables: &'a [TableSpec],
    ) -> Pin<Box<dyn Future<Output = tributary_pipeline::Result<()>> + Send + 'a>> {
        Box::pin(async move { Ok(self.sync_all(tables).await?) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_is_an_iceberg_table_at_its_metadata() {
        let spec = TableSpec {
            name: "dim_staff".into(),
            location: "s3://processed/warehouse/dim_staff".into(),
            columns: vec![("staff_id".into(), "int".into())],
            format: TableFormat::Iceberg {
                metadata_location: "s3://processed/warehouse/dim_staff/metadata/v3.metadata.json"
                    .into(),
            },
        };
        let input = table_input(&spec, None).unwrap();
        assert_eq!(input.table_type(), Some("EXTERNAL_TABLE"));
        let parameters = input.parameters().unwrap();
        assert_eq!(parameters["table_type"], "ICEBERG");
        assert_eq!(
            parameters["metadata_location"],
            "s3://processed/warehouse/dim_staff/metadata/v3.metadata.json"
        );
        assert!(!parameters.contains_key("previous_metadata_location"));
        assert!(input.partition_keys().is_empty());
        let sd = input.storage_descriptor().unwrap();
        assert_eq!(sd.location(), Some("s3://processed/warehouse/dim_staff"));
        assert_eq!(sd.columns()[0].r#type(), Some("int"));
        let next = table_input(
            &spec,
            Some("s3://processed/warehouse/dim_staff/metadata/v2.metadata.json"),
        )
        .unwrap();
        assert_eq!(
            next.parameters().unwrap()["previous_metadata_location"],
            "s3://processed/warehouse/dim_staff/metadata/v2.metadata.json"
        );
    }

    #[test]
    fn a_raw_table_reads_its_files_as_received_by_projected_day() {
        let raw = tributary_lake::Lake::from_url("memory://raw").unwrap();
        let specs = tributary_pipeline::catalog::raw_specs(&raw, &Default::default());
        let by_name = |name: &str| specs.iter().find(|s| s.name == name).unwrap();
        let trades = table_input(by_name("raw_mercado_trades"), None).unwrap();
        let parameters = trades.parameters().unwrap();
        assert_eq!(parameters["projection.enabled"], "true");
        assert_eq!(parameters["projection.date.type"], "date");
        assert_eq!(parameters["projection.date.range"], "2020-01-01,NOW");
        assert_eq!(
            parameters["storage.location.template"],
            format!("{}/date=${{date}}/", by_name("raw_mercado_trades").location)
        );
        assert!(
            !parameters.contains_key("table_type"),
            "not an Iceberg table"
        );
        assert_eq!(trades.partition_keys()[0].name(), "date");
        let sd = trades.storage_descriptor().unwrap();
        assert_eq!(
            sd.serde_info().and_then(|s| s.serialization_library()),
            Some("org.openx.data.jsonserde.JsonSerDe")
        );
        let orders = table_input(by_name("raw_totesys_sales_order"), None).unwrap();
        let sd = orders.storage_descriptor().unwrap();
        assert_eq!(
            sd.input_format(),
            Some("org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat")
        );
        assert_eq!(orders.parameters().unwrap()["classification"], "parquet");
        let tickers = table_input(by_name("raw_mercado_tickers"), None).unwrap();
        let sd = tickers.storage_descriptor().unwrap();
        assert_eq!(sd.columns().len(), 1);
        assert_eq!(
            sd.serde_info().and_then(|s| s.serialization_library()),
            Some("org.apache.hadoop.hive.serde2.lazy.LazySimpleSerDe")
        );
    }
}
