//! The four Lambda functions of Tributary, as a library the binaries (and
//! the tests) call: [`context`] builds clients once per cold start,
//! [`events`] reads the triggering events, [`handlers`] call the pipeline,
//! [`sources`] runs the configured sources deployed with the code,
//! and [`failure`] turns errors into Diagnostics that say whether a retry
//! can help.

pub mod context;
pub mod events;
pub mod failure;
pub mod handlers;
pub mod sources;

pub use context::{Context, Function};
pub use failure::Failure;

/// Logging as lambda_runtime's default subscriber sets it up (JSON with
/// the function's JSON log format; level from `AWS_LAMBDA_LOG_LEVEL`, else
/// `RUST_LOG`, else info), less one line: the runtime logs every returned
/// error again as its Debug text, which [`invoke`] or the stage already
/// logged with its run id and advice. Its panic lines stay.
fn init_logging() {
    use std::str::FromStr;
    use tracing_subscriber::{
        EnvFilter, Layer,
        filter::{LevelFilter, filter_fn},
        layer::SubscriberExt,
        util::SubscriberInitExt,
    };
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL").or_else(|_| std::env::var("RUST_LOG"));
    let level =
        LevelFilter::from_str(level.as_deref().unwrap_or("info")).unwrap_or(LevelFilter::INFO);
    let levels = EnvFilter::builder()
        .with_default_directive(level.into())
        .from_env_lossy();
    let not_a_repeat = filter_fn(|meta| {
        !(meta.target().starts_with("lambda_runtime::layers::panic")
            && *meta.level() == tracing::Level::ERROR
            && meta.fields().field("error").is_none())
    });
    let lines = tracing_subscriber::fmt::layer()
        .with_target(false)
        .without_time();
    let registry = tracing_subscriber::registry().with(levels);
    if json {
        registry.with(lines.json().with_filter(not_a_repeat)).init();
    } else {
        registry.with(lines.with_filter(not_a_repeat)).init();
    }
}

/// One invocation. lambda_runtime logs a returned error only as its Debug
/// text (filtered out by [`init_logging`]), so a
/// failure gets one ERROR line here unless a stage inside already logged it
/// (with its run id and advice): the error-log alarm counts one per failure.
async fn invoke<Fut>(function: Function, work: Fut) -> Result<serde_json::Value, Failure>
where
    Fut: std::future::Future<Output = Result<serde_json::Value, Failure>>,
{
    let (result, logged) = tributary_pipeline::stage::logging_failures(work).await;
    if let Err(failure) = &result
        && !logged
    {
        tracing::error!(
            function = function.name(),
            error_type = %failure.error_type(),
            advice = if failure.retryable {
                "a retry may succeed: Lambda or the next schedule retries"
            } else {
                "a person must act: the cause above does not go away by retrying"
            },
            "invocation failed: {failure}"
        );
    }
    result
}

/// Starts the Lambda runtime with one handler: logs through
/// lambda_runtime's tracing (JSON when the function's log format is JSON),
/// the context built once, then every event passed to `handler`.
pub async fn serve<F, Fut>(function: Function, handler: F) -> Result<(), lambda_runtime::Error>
where
    F: Fn(std::sync::Arc<Context>, lambda_runtime::LambdaEvent<serde_json::Value>) -> Fut,
    Fut: std::future::Future<Output = Result<serde_json::Value, Failure>>,
{
    // Tokio's threads are already running here, but none has allocated
    // much yet: arenas made from now on are capped.
    tributary_pipeline::limit_malloc_arenas();
    init_logging();
    let sdk = tributary_aws::sdk_config().await;
    let context = match Context::from_env(function, &sdk).await {
        Ok(context) => std::sync::Arc::new(context),
        Err(failure) => {
            // An init error is reported by the runtime and retried by Lambda.
            tracing::error!(function = function.name(), error = %failure, "cannot start");
            return Err(failure.into());
        }
    };
    tracing::info!(function = function.name(), "ready");
    lambda_runtime::run(lambda_runtime::service_fn(move |event| {
        invoke(function, handler(context.clone(), event))
    }))
    .await
}
