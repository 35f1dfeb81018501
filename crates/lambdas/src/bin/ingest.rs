//! The `ingest` function: EventBridge schedule or a manual backfill payload.
use tributary_lambdas::{Function, handlers::ingest_handler, serve};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve(Function::Ingest, |ctx, event| async move {
        let deadline = std::time::SystemTime::UNIX_EPOCH
            + std::time::Duration::from_millis(event.context.deadline);
        ingest_handler(&ctx, &event.payload, Some(deadline)).await
    })
    .await
}
