//! The `transform` function: S3 events of raw manifests, or `{"rebuild": true}`.
use tributary_lambdas::{Function, handlers::transform_handler, serve};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve(Function::Transform, |ctx, event| async move {
        transform_handler(&ctx, &event.payload).await
    })
    .await
}
