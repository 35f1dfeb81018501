//! The Glue Data Catalog: one database, one table per processed dataset,
//! partitions added as they are written, so Athena needs no crawler.

use std::{future::Future, pin::Pin};

use aws_sdk_glue::types::{
    Column, DatabaseInput, PartitionInput, SerDeInfo, StorageDescriptor, TableInput,
};
use tributary_pipeline::catalog::{Catalog, TableSpec};

use crate::{Error, Result, describe};

const PARQUET_INPUT: &str = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat";
const PARQUET_OUTPUT: &str = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat";
const PARQUET_SERDE: &str = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe";
/// BatchCreatePartition takes at most 100 partitions per call.
const PARTITIONS_PER_CALL: usize = 100;

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

fn storage(location: &str, cols: Vec<Column>) -> StorageDescriptor {
    StorageDescriptor::builder()
        .set_columns(Some(cols))
        .location(location)
        .input_format(PARQUET_INPUT)
        .output_format(PARQUET_OUTPUT)
        .serde_info(
            SerDeInfo::builder()
                .serialization_library(PARQUET_SERDE)
                .parameters("serialization.format", "1")
                .build(),
        )
        .build()
}

/// The table input for a spec: an external Parquet table, partitioned.
pub fn table_input(spec: &TableSpec) -> Result<TableInput> {
    if let Some(metadata) = &spec.iceberg_metadata {
        // An Iceberg table: Athena reads `table_type` and
        // `metadata_location`; the columns are for people browsing.
        return TableInput::builder()
            .name(&spec.name)
            .table_type("EXTERNAL_TABLE")
            .parameters("table_type", "ICEBERG")
            .parameters("metadata_location", metadata)
            .parameters("EXTERNAL", "TRUE")
            .storage_descriptor(
                StorageDescriptor::builder()
                    .set_columns(Some(columns(&spec.columns)?))
                    .location(spec.location.trim_end_matches('/'))
                    .build(),
            )
            .build()
            .map_err(|e| invalid("TableInput", &e));
    }
    let partition_keys = spec
        .partition_keys
        .iter()
        .map(|k| (k.clone(), "string".to_string()))
        .collect::<Vec<_>>();
    TableInput::builder()
        .name(&spec.name)
        .table_type("EXTERNAL_TABLE")
        .parameters("classification", "parquet")
        .parameters("EXTERNAL", "TRUE")
        .parameters("parquet.compression", "ZSTD")
        .storage_descriptor(storage(&spec.location, columns(&spec.columns)?))
        .set_partition_keys(Some(columns(&partition_keys)?))
        .build()
        .map_err(|e| invalid("TableInput", &e))
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

    /// Creates the table, or updates it when its columns or location changed.
    async fn ensure_table(&self, spec: &TableSpec) -> Result<()> {
        let input = table_input(spec)?;
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
        match existing {
            None => match self
                .client
                .create_table()
                .database_name(&self.database)
                .table_input(input)
                .send()
                .await
            {
                Ok(_) => Ok(()),
                // Another run created it meanwhile.
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_already_exists_exception()) =>
                {
                    Ok(())
                }
                Err(e) => Err(call("CreateTable", &e)),
            },
            Some(table) if spec.iceberg_metadata.is_some() => {
                let registered = table.parameters().and_then(|p| p.get("metadata_location"));
                if registered == spec.iceberg_metadata.as_ref() {
                    return Ok(());
                }
                let mut input = input;
                if let Some(previous) = registered {
                    let mut parameters = input.parameters().cloned().unwrap_or_default();
                    parameters.insert("previous_metadata_location".into(), previous.clone());
                    input = TableInput::builder()
                        .name(&spec.name)
                        .table_type("EXTERNAL_TABLE")
                        .set_parameters(Some(parameters))
                        .set_storage_descriptor(input.storage_descriptor().cloned())
                        .build()
                        .map_err(|e| invalid("TableInput", &e))?;
                }
                self.client
                    .update_table()
                    .database_name(&self.database)
                    .table_input(input)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| call("UpdateTable", &e))
            }
            Some(table) => {
                let current = table.storage_descriptor();
                let same = current.is_some_and(|sd| {
                    sd.location() == Some(spec.location.as_str())
                        && sd.columns().len() == spec.columns.len()
                        && sd
                            .columns()
                            .iter()
                            .zip(&spec.columns)
                            .all(|(c, (n, t))| c.name() == n && c.r#type() == Some(t.as_str()))
                });
                if same {
                    return Ok(());
                }
                self.client
                    .update_table()
                    .database_name(&self.database)
                    .table_input(input)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| call("UpdateTable", &e))
            }
        }
    }

    /// Adds partitions; ones already present are fine.
    async fn add_partitions(&self, spec: &TableSpec) -> Result<()> {
        let cols = columns(&spec.columns)?;
        for chunk in spec.partitions.chunks(PARTITIONS_PER_CALL) {
            let inputs = chunk
                .iter()
                .map(|p| {
                    PartitionInput::builder()
                        .set_values(Some(p.values.clone()))
                        .storage_descriptor(storage(&p.location, cols.clone()))
                        .build()
                })
                .collect();
            let out = self
                .client
                .batch_create_partition()
                .database_name(&self.database)
                .table_name(&spec.name)
                .set_partition_input_list(Some(inputs))
                .send()
                .await
                .map_err(|e| call("BatchCreatePartition", &e))?;
            // Present partitions keep their place unless the spec puts them
            // elsewhere than the table's own directory (a closed day's
            // compacted generation): only those are looked up, so the
            // partition every run writes to (today's) costs no extra call.
            for error in out.errors() {
                let exists = error
                    .error_detail()
                    .and_then(|d| d.error_code())
                    .is_some_and(|c| c == "AlreadyExistsException");
                let values = error.partition_values();
                let moved = chunk
                    .iter()
                    .find(|p| p.values.as_slice() == values)
                    .filter(|p| !spec.is_default_location(p));
                if let (true, Some(partition)) = (exists, moved) {
                    self.move_partition(spec, partition, &cols).await?;
                }
            }
            let failures: Vec<String> = out
                .errors()
                .iter()
                .filter_map(|e| {
                    let detail = e.error_detail()?;
                    let code = detail.error_code().unwrap_or_default();
                    (code != "AlreadyExistsException").then(|| {
                        format!(
                            "{:?}: {} {}",
                            e.partition_values(),
                            code,
                            detail.error_message().unwrap_or_default()
                        )
                    })
                })
                .collect();
            if !failures.is_empty() {
                return Err(Error::Call {
                    service: "glue",
                    operation: "BatchCreatePartition",
                    reason: format!("table {}: {}", spec.name, failures.join("; ")),
                    retryable: true,
                });
            }
        }
        Ok(())
    }

    /// Points an existing partition at the spec's location when it differs.
    async fn move_partition(
        &self,
        spec: &TableSpec,
        partition: &tributary_pipeline::catalog::PartitionSpec,
        cols: &[Column],
    ) -> Result<()> {
        let current = self
            .client
            .get_partition()
            .database_name(&self.database)
            .table_name(&spec.name)
            .set_partition_values(Some(partition.values.clone()))
            .send()
            .await
            .map_err(|e| call("GetPartition", &e))?;
        let location = current
            .partition()
            .and_then(|p| p.storage_descriptor())
            .and_then(|sd| sd.location());
        if location == Some(partition.location.as_str()) {
            return Ok(());
        }
        self.client
            .update_partition()
            .database_name(&self.database)
            .table_name(&spec.name)
            .set_partition_value_list(Some(partition.values.clone()))
            .partition_input(
                PartitionInput::builder()
                    .set_values(Some(partition.values.clone()))
                    .storage_descriptor(storage(&partition.location, cols.to_vec()))
                    .build(),
            )
            .send()
            .await
            .map(|_| ())
            .map_err(|e| call("UpdatePartition", &e))
    }

    async fn sync_all(&self, tables: &[TableSpec]) -> Result<()> {
        if tables.is_empty() {
            return Ok(());
        }
        self.ensure_database().await?;
        for spec in tables {
            self.ensure_table(spec).await?;
            self.add_partitions(spec).await?;
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
    fn table_input_is_an_external_parquet_table_with_partition_keys() {
        let specs = tributary_pipeline::catalog::table_specs(
            "s3://processed",
            ["markets/trades/date=2024-02-23/r.parquet"],
        );
        let input = table_input(&specs[0]).unwrap();
        assert_eq!(input.name(), "markets_trades");
        assert_eq!(input.table_type(), Some("EXTERNAL_TABLE"));
        let sd = input.storage_descriptor().unwrap();
        assert_eq!(sd.location(), Some("s3://processed/markets/trades/"));
        assert_eq!(
            sd.serde_info().unwrap().serialization_library(),
            Some(PARQUET_SERDE)
        );
        assert_eq!(input.partition_keys()[0].name(), "date");
        let price = sd.columns().iter().find(|c| c.name() == "price").unwrap();
        assert!(price.r#type().is_some());
    }

    #[test]
    fn an_iceberg_spec_is_an_iceberg_table_at_its_metadata() {
        let spec = TableSpec {
            name: "dim_staff".into(),
            location: "s3://processed/warehouse/dim_staff/".into(),
            columns: vec![("staff_id".into(), "int".into())],
            partition_keys: Vec::new(),
            partitions: Vec::new(),
            iceberg_metadata: Some(
                "s3://processed/warehouse/dim_staff/metadata/v3.metadata.json".into(),
            ),
        };
        let input = table_input(&spec).unwrap();
        let parameters = input.parameters().unwrap();
        assert_eq!(parameters["table_type"], "ICEBERG");
        assert_eq!(
            parameters["metadata_location"],
            "s3://processed/warehouse/dim_staff/metadata/v3.metadata.json"
        );
        assert!(input.partition_keys().is_empty());
        assert_eq!(
            input.storage_descriptor().unwrap().location(),
            Some("s3://processed/warehouse/dim_staff")
        );
    }
}
