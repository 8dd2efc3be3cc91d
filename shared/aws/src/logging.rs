//! Every function's log setup, called first in `main`.
//!
//! It replaces `lambda_runtime`'s `init_default_subscriber` and reads the same variables,
//! but filters with `tracing-subscriber`'s [`Targets`] instead of its `EnvFilter`: the
//! latter links `regex-automata` and its Unicode tables into every bootstrap (see the
//! README's bootstrap sizes) for span-field and regex directives nothing here uses.
//!
//! - `AWS_LAMBDA_LOG_LEVEL` (Lambda's advanced logging controls), when set, is the level.
//! - Else `RUST_LOG`: a level (`info`) or `level,target=level,…` directives
//!   (`info,billing_app=debug`); a value that does not parse is ignored.
//! - Else `info`.
//! - `AWS_LAMBDA_LOG_FORMAT=JSON` (the template's `LogFormat: JSON`) writes JSON lines,
//!   anything else plain text; without timestamps either way, since CloudWatch adds them.
//!
//! Every line carries the spans it was written in, among them `lambda_runtime`'s invocation
//! span with `requestId` and, under the template's active tracing, `xrayTraceId`; and with
//! tracing active the [`crate::xray`] layer sends the request's and calls' subsegments.

use std::str::FromStr;

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::{Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

/// Installs the global subscriber from the environment. Call once, first thing.
pub fn init() {
    let var = |name| std::env::var(name).ok();
    let filter = filter(
        var("AWS_LAMBDA_LOG_LEVEL").as_deref(),
        var("RUST_LOG").as_deref(),
    );
    let json = var("AWS_LAMBDA_LOG_FORMAT").is_some_and(|f| f.eq_ignore_ascii_case("json"));
    tracing_subscriber::registry()
        .with(filter)
        .with(crate::xray::XrayLayer::from_env())
        .with(lines(json, std::io::stdout))
        .init();
}

/// The log lines' layer: JSON or plain text, each with the spans it was written in.
fn lines<S, W>(json: bool, writer: W) -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let lines = tracing_subscriber::fmt::layer()
        .with_target(false)
        .with_ansi(false)
        .without_time()
        .with_writer(writer);
    if json {
        lines.json().boxed()
    } else {
        lines.boxed()
    }
}

/// What gets logged: Lambda's level when set, else `RUST_LOG`'s directives, else `info`.
pub fn filter(lambda_level: Option<&str>, rust_log: Option<&str>) -> Targets {
    if let Some(level) = lambda_level.and_then(lambda_level_filter) {
        return Targets::new().with_default(level);
    }
    // An empty value would parse as "everything from every target".
    let targets = rust_log
        .map(str::trim)
        .filter(|directives| !directives.is_empty())
        .and_then(|directives| Targets::from_str(directives).ok())
        .unwrap_or_default();
    // `billing_app=debug` alone still logs everything else at `info`, as before.
    match targets.default_level() {
        Some(_) => targets,
        None => targets.with_default(LevelFilter::INFO),
    }
}

/// Lambda's levels are TRACE, DEBUG, INFO, WARN, ERROR and FATAL; tracing has no FATAL.
fn lambda_level_filter(level: &str) -> Option<LevelFilter> {
    if level.eq_ignore_ascii_case("fatal") {
        return Some(LevelFilter::ERROR);
    }
    LevelFilter::from_str(level).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::filter::LevelFilter;

    /// Everything written through it, for reading back.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_names_the_invocation_and_its_trace() {
        for json in [true, false] {
            let captured = Captured::default();
            let writer = captured.clone();
            let subscriber =
                tracing_subscriber::registry().with(lines(json, move || writer.clone()));
            tracing::subscriber::with_default(subscriber, || {
                // The span lambda_runtime opens around each invocation under active tracing.
                let invocation = tracing::info_span!(
                    "Lambda runtime invoke",
                    requestId = "8476a536-e9f4-11e8-9739-2dfe598c3fcd",
                    xrayTraceId = "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1"
                );
                let _entered = invocation.enter();
                tracing::info_span!("request", request_id = "req_1").in_scope(|| {
                    tracing::info!(status = 200, "request");
                    tracing::warn!("retrying");
                });
            });
            let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
            let lines: Vec<&str> = text.lines().collect();
            assert_eq!(lines.len(), 2, "{text}");
            for line in lines {
                assert!(
                    line.contains("1-5759e988-bd862e3fe1be46a994272793"),
                    "{line}"
                );
                assert!(
                    line.contains("8476a536-e9f4-11e8-9739-2dfe598c3fcd"),
                    "{line}"
                );
                assert!(line.contains("req_1"), "{line}");
                if json {
                    let parsed: serde_json::Value = serde_json::from_str(line).unwrap();
                    assert_eq!(
                        parsed["spans"][0]["requestId"],
                        "8476a536-e9f4-11e8-9739-2dfe598c3fcd"
                    );
                }
            }
        }
    }

    fn enabled(filter: &Targets, target: &str, level: tracing::Level) -> bool {
        filter.would_enable(target, &level)
    }

    #[test]
    fn defaults_to_info() {
        let filter = filter(None, None);
        assert!(enabled(&filter, "billing_app", tracing::Level::INFO));
        assert!(!enabled(&filter, "billing_app", tracing::Level::DEBUG));
    }

    #[test]
    fn rust_log_takes_a_level_or_per_target_directives() {
        let level = filter(None, Some("warn"));
        assert!(enabled(&level, "api", tracing::Level::WARN));
        assert!(!enabled(&level, "api", tracing::Level::INFO));

        let directives = filter(None, Some("info,billing_app=debug"));
        assert!(enabled(
            &directives,
            "billing_app::usage",
            tracing::Level::DEBUG
        ));
        assert!(!enabled(&directives, "billing_aws", tracing::Level::DEBUG));
        assert!(enabled(&directives, "billing_aws", tracing::Level::INFO));
    }

    #[test]
    fn a_target_alone_keeps_info_for_the_rest() {
        let filter = filter(None, Some("billing_app=debug"));
        assert!(enabled(&filter, "billing_app", tracing::Level::DEBUG));
        assert!(enabled(&filter, "api", tracing::Level::INFO));
        assert!(!enabled(&filter, "api", tracing::Level::DEBUG));
    }

    #[test]
    fn lambda_level_wins_over_rust_log() {
        let filter = filter(Some("DEBUG"), Some("error"));
        assert!(enabled(&filter, "api", tracing::Level::DEBUG));
        assert!(!enabled(&filter, "api", tracing::Level::TRACE));
        assert_eq!(lambda_level_filter("FATAL"), Some(LevelFilter::ERROR));
    }

    #[test]
    fn unreadable_values_fall_back_to_info() {
        for (lambda, rust_log) in [
            (Some("loud"), None),
            (None, Some("a=b=c")),
            (None, Some("")),
        ] {
            let filter = filter(lambda, rust_log);
            assert!(
                enabled(&filter, "api", tracing::Level::INFO),
                "{lambda:?} {rust_log:?}"
            );
            assert!(
                !enabled(&filter, "api", tracing::Level::DEBUG),
                "{lambda:?} {rust_log:?}"
            );
        }
    }
}
