//! The `load` function: a schedule, or S3 events of processed manifests.
// rustc 1.95 can overflow its default query depth (128) on this binary
// ("queries overflow the depth limit!" in core's niche types), depending on
// what else is in the crate graph: seen in its plain and its unit-test build.
#![recursion_limit = "256"]
use tributary_lambdas::{Function, handlers::load_handler, serve};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve(Function::Load, |ctx, event| async move {
        load_handler(&ctx, &event.payload).await
    })
    .await
}
