//! The `stream-sink` function: Kinesis batches with partial batch failures.
use tributary_lambdas::{Function, handlers::stream_sink_handler, serve};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve(Function::StreamSink, |ctx, event| async move {
        stream_sink_handler(&ctx, &event.payload).await
    })
    .await
}
