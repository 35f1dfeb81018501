//! The `ingest` function: EventBridge schedule or a manual backfill payload.
// Headroom for the compiler's layout queries over the nested stage futures
// (they are boxed at the stage boundaries; this keeps a deeper one building).
#![recursion_limit = "256"]
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
