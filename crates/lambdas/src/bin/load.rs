//! The `load` function: a schedule, or S3 events of processed manifests.
use tributary_lambdas::{Function, handlers::load_handler, serve};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve(Function::Load, |ctx, event| async move {
        load_handler(&ctx, &event.payload).await
    })
    .await
}
