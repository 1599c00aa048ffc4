//! Logging: structured lines on stderr, filtered by `RUST_LOG` (default `info`).
//! Request logs carry method, path and status, never headers or bodies.

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

pub fn init() {
    init_writing_to(std::io::stderr);
}

/// Logs as `init` does, into `writer` (tests read what the server logs).
pub fn init_writing_to<W>(writer: W)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // A request's span is written when it closes: method, route, target, status, latency.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .with_writer(writer)
        .try_init();
}

/// An error with its causes, `a: b: c`.
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
