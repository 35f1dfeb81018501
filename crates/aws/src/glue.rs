//! The Glue Data Catalog: one database, one Apache Iceberg table per
//! processed dataset, each pointed at its current metadata file, so Athena
//! reads the tables without a crawler.

use std::{future::Future, pin::Pin};

use aws_sdk_glue::types::{Column, DatabaseInput, StorageDescriptor, TableInput};
use tributary_pipeline::catalog::{Catalog, TableSpec};

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

/// The table input for a spec: an external Iceberg table. Athena reads
/// `table_type` and `metadata_location`; the columns are for people
/// browsing. `previous` is the metadata file registered before, if any.
pub fn table_input(spec: &TableSpec, previous: Option<&str>) -> Result<TableInput> {
    let mut input = TableInput::builder()
        .name(&spec.name)
        .table_type("EXTERNAL_TABLE")
        .parameters("table_type", "ICEBERG")
        .parameters("metadata_location", &spec.metadata_location)
        .parameters("EXTERNAL", "TRUE");
    if let Some(previous) = previous {
        input = input.parameters("previous_metadata_location", previous);
    }
    input
        .storage_descriptor(
            StorageDescriptor::builder()
                .set_columns(Some(columns(&spec.columns)?))
                .location(&spec.location)
                .build(),
        )
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
                // Another run created it meanwhile: the next sync updates it.
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_already_exists_exception()) =>
                {
                    Ok(())
                }
                Err(e) => Err(call("CreateTable", &e)),
            };
        };
        let registered = table
            .parameters()
            .and_then(|p| p.get("metadata_location"))
            .map(String::as_str);
        if registered == Some(spec.metadata_location.as_str()) {
            return Ok(());
        }
        self.client
            .update_table()
            .database_name(&self.database)
            .table_input(table_input(spec, registered)?)
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
            metadata_location: "s3://processed/warehouse/dim_staff/metadata/v3.metadata.json"
                .into(),
        };
        let input = table_input(&spec, None).unwrap();
        assert_eq!(input.table_type(), Some("EXTERNAL_TABLE"));
        let parameters = input.parameters().unwrap();
        assert_eq!(parameters["table_type"], "ICEBERG");
        assert_eq!(parameters["metadata_location"], spec.metadata_location);
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
}
