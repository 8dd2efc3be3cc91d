//! The Lambda runtime loop of the HTTP functions (`api`, `stripe-webhook`): the Runtime API's
//! `next` / `response` / `error` calls over the workspace's `reqwest` client.
//!
//! Why not `lambda_runtime::run`: its API client is a second pooled hyper client (another
//! copy of hyper's client code for its own body type) beside reqwest's, with layers for
//! streaming, SnapStart and concurrent invocations these functions do not use: about 0.1 MB
//! of the `api` bootstrap (README, "Bootstrap size"). What it did that matters is kept: each
//! invocation runs in the span `Lambda runtime invoke` with `requestId` (and `xrayTraceId`
//! under active tracing), `_X_AMZN_TRACE_ID` holds the invocation's trace header, and a
//! handler that fails is reported as the invocation's error while the process goes on to
//! the next one. A panic: where panics unwind (tests, `make dev`), the invocation's error
//! too; the release bootstraps abort on panic (`Cargo.toml`), so a hook answers the
//! invocation in flight with the function's panic answer before the process ends, and
//! Lambda starts the function again for the next one.

use std::future::Future;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tracing::Instrument;

use crate::xray::TRACE_HEADER_VAR;

/// What a function's `main` and its handler fail with.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// One invocation as the Runtime API hands it over.
pub struct Invocation {
    pub request_id: String,
    /// The invocation's X-Ray trace header, under active tracing.
    pub xray_trace_id: Option<String>,
    /// The event, as JSON.
    pub event: Vec<u8>,
}

/// A handler: the invocation's answer as JSON, or the error to report.
pub type Handler = Box<
    dyn Fn(Invocation) -> Pin<Box<dyn Future<Output = Result<Vec<u8>, Error>> + Send>>
        + Send
        + Sync,
>;

/// The Runtime API's error document.
#[derive(Serialize)]
struct Diagnostic<'a> {
    #[serde(rename = "errorType")]
    error_type: &'a str,
    #[serde(rename = "errorMessage")]
    error_message: String,
}

/// The request id of the invocation being handled, for the panic hook.
#[derive(Clone, Default)]
struct InFlight(Arc<Mutex<Option<String>>>);

impl InFlight {
    fn set(&self, id: Option<String>) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = id;
        }
    }

    /// Posts `answer` as the response of the invocation in flight, if one is: what the
    /// panic hook does before a release build aborts. `try_lock`, as a hook must not wait.
    fn answer(&self, base: &str, answer: &[u8]) -> Result<(), String> {
        let id = match self.0.try_lock() {
            Ok(mut slot) => slot.take(),
            Err(_) => None,
        };
        match id {
            Some(id) => post_blocking(&format!("{base}/{id}/response"), answer),
            None => Ok(()),
        }
    }
}

/// Answers invocations with `handler` until the Runtime API fails (Lambda then starts the
/// function again). `AWS_LAMBDA_RUNTIME_API` names the API's host and port (Lambda) or a
/// whole base address (`cargo lambda`'s emulator: `http://127.0.0.1:9000/.rt`).
/// `on_panic` is the answer (JSON) to a handler that panics in a build that aborts.
pub async fn run(handler: Handler, on_panic: Vec<u8>) -> Result<(), Error> {
    let api = std::env::var("AWS_LAMBDA_RUNTIME_API")
        .map_err(|_| "AWS_LAMBDA_RUNTIME_API is not set: not running in Lambda")?;
    let base = format!("{}/2018-06-01/runtime/invocation", api_base(&api));
    // No timeout: `next` waits for the next event for as long as it takes.
    let http = reqwest::Client::builder().no_proxy().build()?;
    let in_flight = InFlight::default();
    if cfg!(panic = "abort") {
        answer_panics(in_flight.clone(), base.clone(), on_panic);
    }
    loop {
        let invocation = next(&http, &base).await?;
        let id = invocation.request_id.clone();
        in_flight.set(Some(id.clone()));
        match &invocation.xray_trace_id {
            Some(trace) => std::env::set_var(TRACE_HEADER_VAR, trace),
            None => std::env::remove_var(TRACE_HEADER_VAR),
        }
        let span = tracing::info_span!(
            "Lambda runtime invoke",
            requestId = %id,
            xrayTraceId = tracing::field::Empty
        );
        if let Some(trace) = &invocation.xray_trace_id {
            span.record("xrayTraceId", trace.as_str());
        }
        // On its own task, so that a panic that unwinds is the invocation's error, not the
        // process's end.
        let outcome = tokio::spawn(handler(invocation).instrument(span.clone())).await;
        in_flight.set(None);
        let (path, body) = match outcome {
            Ok(Ok(answer)) => ("response", answer),
            Ok(Err(e)) => ("error", diagnostic("Runtime.HandlerError", e.to_string())?),
            Err(e) => ("error", diagnostic("Runtime.Panic", e.to_string())?),
        };
        if path == "error" {
            span.in_scope(|| tracing::error!("the invocation failed"));
        }
        let mut request = http
            .post(format!("{base}/{id}/{path}"))
            .header("content-type", "application/json")
            .body(body);
        if path == "error" {
            request = request.header("lambda-runtime-function-error-type", "Unhandled");
        }
        let status = request.send().await?.status();
        if !status.is_success() {
            return Err(format!("the Runtime API refused the {path} of {id}: {status}").into());
        }
    }
}

/// Where panics abort, answers the invocation in flight before the process ends: the
/// client gets the function's answer to a bug instead of Lambda's bare error.
fn answer_panics(in_flight: InFlight, base: String, answer: Vec<u8>) {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        if let Err(e) = in_flight.answer(&base, &answer) {
            eprintln!("could not answer the invocation before aborting: {e}");
        }
    }));
}

/// One HTTP/1.1 POST over a plain socket, as a panic hook can make it (no runtime).
fn post_blocking(url: &str, body: &[u8]) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: not an http:// address"))?;
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut socket = TcpStream::connect(host).map_err(|e| format!("{host}: {e}"))?;
    let timeout = Some(Duration::from_secs(2));
    socket
        .set_read_timeout(timeout)
        .map_err(|e| e.to_string())?;
    socket
        .set_write_timeout(timeout)
        .map_err(|e| e.to_string())?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    socket
        .write_all(head.as_bytes())
        .and_then(|()| socket.write_all(body))
        .map_err(|e| e.to_string())?;
    let mut status = [0; 12];
    socket.read_exact(&mut status).map_err(|e| e.to_string())?;
    match &status[9..10] {
        b"2" => Ok(()),
        _ => Err(format!(
            "the Runtime API answered {}",
            String::from_utf8_lossy(&status)
        )),
    }
}

fn api_base(api: &str) -> String {
    let api = api.trim_end_matches('/');
    if api.starts_with("http://") || api.starts_with("https://") {
        api.to_owned()
    } else {
        format!("http://{api}")
    }
}

async fn next(http: &reqwest::Client, base: &str) -> Result<Invocation, Error> {
    let response = http.get(format!("{base}/next")).send().await?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("the Runtime API's next invocation: {status}").into());
    }
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let request_id =
        header("lambda-runtime-aws-request-id").ok_or("an invocation without a request id")?;
    let xray_trace_id = header("lambda-runtime-trace-id");
    let event = response.bytes().await?.to_vec();
    Ok(Invocation {
        request_id,
        xray_trace_id,
        event,
    })
}

fn diagnostic(error_type: &str, error_message: String) -> Result<Vec<u8>, Error> {
    Ok(serde_json::to_vec(&Diagnostic {
        error_type,
        error_message,
    })?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_api_is_a_host_and_port_or_a_whole_base_address() {
        assert_eq!(api_base("127.0.0.1:9001"), "http://127.0.0.1:9001");
        assert_eq!(
            api_base("http://127.0.0.1:9000/.rt/"),
            "http://127.0.0.1:9000/.rt"
        );
    }

    use super::*;
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A Runtime API handing out `events` events `{"n":1}`, …, then refusing `next`;
    /// it records every POST it is sent.
    async fn fake_runtime_api(events: u32) -> (std::net::SocketAddr, Arc<Mutex<Vec<String>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let posted = Arc::new(Mutex::new(Vec::new()));
        let seen = posted.clone();
        tokio::spawn(async move {
            let mut served = 0;
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut buffer = vec![0; 65536];
                let mut read = 0;
                // One request per connection is enough here: read until the body is in.
                loop {
                    let n = socket.read(&mut buffer[read..]).await.unwrap();
                    read += n;
                    let text = String::from_utf8_lossy(&buffer[..read]).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text[..end]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap())
                            })
                            .unwrap_or(0);
                        if read >= end + 4 + length || n == 0 {
                            break;
                        }
                    }
                }
                let text = String::from_utf8_lossy(&buffer[..read]).to_string();
                let answer = if text.starts_with("GET") {
                    served += 1;
                    match served {
                    n if n <= events => {
                        let event = format!("{{\"n\":{served}}}");
                        format!("HTTP/1.1 200 OK\r\nlambda-runtime-aws-request-id: req-{served}\r\nlambda-runtime-trace-id: Root=1-{served}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{event}", event.len())
                    }
                    _ => "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_owned(),
                }
                } else {
                    seen.lock().unwrap().push(text);
                    "HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                        .to_owned()
                };
                socket.write_all(answer.as_bytes()).await.unwrap();
            }
        });
        (address, posted)
    }

    /// A Runtime API with three events: one answered, one failing, one panicking; it
    /// records what the loop posts back, then ends the loop by refusing `next`.
    #[tokio::test]
    async fn answers_reports_failures_and_panics_and_goes_on() {
        let (address, posted) = fake_runtime_api(3).await;
        std::env::set_var("AWS_LAMBDA_RUNTIME_API", address.to_string());
        let ended = run(
            Box::new(|invocation: Invocation| {
                Box::pin(async move {
                    let trace = std::env::var(TRACE_HEADER_VAR).unwrap();
                    match invocation.event.as_slice() {
                        b"{\"n\":1}" => Ok(format!("{{\"trace\":\"{trace}\"}}").into_bytes()),
                        b"{\"n\":2}" => Err("no such account".into()),
                        _ => panic!("a bug"),
                    }
                })
            }),
            b"{}".to_vec(),
        )
        .await;
        assert!(ended.unwrap_err().to_string().contains("500"));
        let posted = posted.lock().unwrap();
        assert_eq!(posted.len(), 3, "{posted:?}");
        assert!(posted[0].starts_with("POST /2018-06-01/runtime/invocation/req-1/response"));
        assert!(
            posted[0].ends_with("{\"trace\":\"Root=1-1\"}"),
            "{}",
            posted[0]
        );
        assert!(posted[1].starts_with("POST /2018-06-01/runtime/invocation/req-2/error"));
        assert!(posted[1]
            .to_ascii_lowercase()
            .contains("lambda-runtime-function-error-type: unhandled"));
        assert!(posted[1].ends_with(
            "{\"errorType\":\"Runtime.HandlerError\",\"errorMessage\":\"no such account\"}"
        ));
        assert!(posted[2].starts_with("POST /2018-06-01/runtime/invocation/req-3/error"));
        assert!(posted[2].contains("Runtime.Panic"), "{}", posted[2]);
    }

    /// What the hook of a build that aborts on panic does: the invocation in flight gets
    /// the panic answer as its response, once; with none in flight, nothing is posted.
    #[tokio::test]
    async fn the_panic_answer_goes_to_the_invocation_in_flight_once() {
        let (address, posted) = fake_runtime_api(0).await;
        let base = format!("http://{address}/2018-06-01/runtime/invocation");
        let in_flight = InFlight::default();
        in_flight.set(Some("req-9".into()));
        let hook = in_flight.clone();
        tokio::task::spawn_blocking(move || {
            hook.answer(&base, b"{\"statusCode\":500}").unwrap();
            hook.answer(&base, b"{\"statusCode\":500}").unwrap();
        })
        .await
        .unwrap();
        let posted = posted.lock().unwrap();
        assert_eq!(posted.len(), 1, "{posted:?}");
        assert!(posted[0].starts_with("POST /2018-06-01/runtime/invocation/req-9/response"));
        assert!(posted[0].ends_with("{\"statusCode\":500}"), "{}", posted[0]);
    }
}
