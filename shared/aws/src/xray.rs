//! AWS X-Ray subsegments for the spans worth seeing in a trace: the request or message being
//! handled, and each AWS and Stripe call made for it.
//!
//! With the template's `Tracing: Active`, Lambda records each invocation's segment and
//! hands its trace header to the process (`_X_AMZN_TRACE_ID`, set by `lambda_runtime` per
//! invocation) and the daemon's address (`AWS_XRAY_DAEMON_ADDRESS`). Spans opened with
//! [`work`], [`aws_call`] or [`remote_call`] become subsegments of that segment (nested as the
//! spans nest), sent over UDP to the daemon when they close, as the X-Ray SDKs do. Without a
//! daemon address, or for an unsampled trace, nothing is sent and the spans only frame logs.

use std::net::{SocketAddr, UdpSocket};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Span, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// The target of the spans that become subsegments.
pub const TARGET: &str = "billing::xray";
pub const DAEMON_ADDRESS_VAR: &str = "AWS_XRAY_DAEMON_ADDRESS";
pub const TRACE_HEADER_VAR: &str = "_X_AMZN_TRACE_ID";

/// The handling of one request or message (named by its route or queue).
pub fn work(name: &str) -> Span {
    tracing::info_span!(target: TARGET, "subsegment", name, namespace = tracing::field::Empty, operation = tracing::field::Empty, status = tracing::field::Empty)
}

/// One call to an AWS service; record its HTTP `status` on the span when it answers.
pub fn aws_call(service: &str, operation: &str) -> Span {
    tracing::info_span!(target: TARGET, "subsegment", name = service, namespace = "aws", operation, status = tracing::field::Empty)
}

/// One call to a service outside AWS (Stripe); record its HTTP `status` when it answers.
pub fn remote_call(name: &str, operation: &str) -> Span {
    tracing::info_span!(target: TARGET, "subsegment", name, namespace = "remote", operation, status = tracing::field::Empty)
}

/// The AWS service and operation an SDK request is for: JSON protocols name both in
/// `X-Amz-Target` (`DynamoDB_20120810.GetItem`, `AmazonSQS.SendMessage`); REST ones (SES v2)
/// are named by their host's service and the method and path.
pub fn aws_operation(
    headers: &http::HeaderMap,
    method: &http::Method,
    uri: &http::Uri,
) -> (String, String) {
    if let Some((service, operation)) = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|target| target.split_once('.'))
    {
        let service = service.split('_').next().unwrap_or(service);
        return (service.to_owned(), operation.to_owned());
    }
    let host = uri.host().unwrap_or_default();
    let service = host.split('.').next().unwrap_or(host);
    (service.to_owned(), format!("{method} {}", uri.path()))
}

/// The parts of an X-Ray trace header (`Root=…;Parent=…;Sampled=1`) a subsegment needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: String,
    pub parent_id: Option<String>,
    pub sampled: bool,
}

impl TraceContext {
    pub fn parse(header: &str) -> Option<Self> {
        let mut trace_id = None;
        let mut parent_id = None;
        let mut sampled = false;
        for part in header.split(';') {
            match part.trim().split_once('=') {
                Some(("Root", v)) => trace_id = Some(v.to_owned()),
                Some(("Parent", v)) => parent_id = Some(v.to_owned()),
                Some(("Sampled", v)) => sampled = v == "1",
                _ => {}
            }
        }
        Some(Self {
            trace_id: trace_id?,
            parent_id,
            sampled,
        })
    }
}

type HeaderSource = Box<dyn Fn() -> Option<String> + Send + Sync>;

/// Sends closed subsegment spans to the X-Ray daemon.
pub struct XrayLayer {
    socket: UdpSocket,
    daemon: SocketAddr,
    header: HeaderSource,
}

impl XrayLayer {
    /// The layer for this process when Lambda runs it with active tracing, else `None`.
    pub fn from_env() -> Option<Self> {
        let daemon = std::env::var(DAEMON_ADDRESS_VAR).ok()?;
        // The variable may list a UDP and a TCP address ("udp:… tcp:…"); UDP is the one.
        let udp = daemon
            .split_whitespace()
            .find_map(|a| a.strip_prefix("udp:"))
            .unwrap_or(&daemon);
        Self::new(
            udp.parse().ok()?,
            Box::new(|| std::env::var(TRACE_HEADER_VAR).ok()),
        )
        .ok()
    }

    pub fn new(daemon: SocketAddr, header: HeaderSource) -> std::io::Result<Self> {
        let socket = UdpSocket::bind(if daemon.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        })?;
        Ok(Self {
            socket,
            daemon,
            header,
        })
    }
}

#[derive(Default)]
struct Fields {
    name: Option<String>,
    namespace: Option<String>,
    operation: Option<String>,
    status: Option<u64>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "name" => self.name = Some(value.to_owned()),
            "namespace" => self.namespace = Some(value.to_owned()),
            "operation" => self.operation = Some(value.to_owned()),
            _ => {}
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "status" {
            self.status = Some(value);
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if let Ok(value) = u64::try_from(value) {
            self.record_u64(field, value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.record_str(field, format!("{value:?}").trim_matches('"'));
    }
}

/// A subsegment being timed, kept in its span's extensions.
struct Open {
    id: String,
    trace_id: String,
    parent_id: Option<String>,
    started: SystemTime,
    fields: Fields,
}

impl<S> Layer<S> for XrayLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().target() != TARGET {
            return;
        }
        let Some(span) = ctx.span(id) else { return };
        let enclosing = span.scope().skip(1).find_map(|ancestor| {
            ancestor
                .extensions()
                .get::<Open>()
                .map(|open| (open.trace_id.clone(), Some(open.id.clone())))
        });
        let (trace_id, parent_id) = match enclosing {
            Some(found) => found,
            None => match (self.header)().as_deref().and_then(TraceContext::parse) {
                Some(context) if context.sampled => (context.trace_id, context.parent_id),
                _ => return,
            },
        };
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        span.extensions_mut().insert(Open {
            id: format!("{:016x}", ulid::Ulid::new().random() as u64),
            trace_id,
            parent_id,
            started: SystemTime::now(),
            fields,
        });
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            if let Some(open) = span.extensions_mut().get_mut::<Open>() {
                values.record(&mut open.fields);
            }
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some(open) = span.extensions_mut().remove::<Open>() else {
            return;
        };
        let document = subsegment(&open, SystemTime::now());
        let datagram = format!("{{\"format\":\"json\",\"version\":1}}\n{document}");
        // Tracing is best effort: a lost datagram must never fail the work it describes.
        let _ = self.socket.send_to(datagram.as_bytes(), self.daemon);
    }
}

/// Seconds since the epoch with microseconds, the form X-Ray's documents take.
fn epoch_seconds(at: SystemTime) -> Value {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let text = format!("{}.{:06}", since.as_secs(), since.subsec_micros());
    text.parse::<serde_json::Number>()
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

fn subsegment(open: &Open, ended: SystemTime) -> Value {
    let fields = &open.fields;
    let mut document = json!({
        "type": "subsegment",
        "id": open.id,
        "trace_id": open.trace_id,
        "name": fields.name.as_deref().unwrap_or("work"),
        "start_time": epoch_seconds(open.started),
        "end_time": epoch_seconds(ended),
    });
    if let Some(parent) = &open.parent_id {
        document["parent_id"] = json!(parent);
    }
    if let Some(namespace) = &fields.namespace {
        document["namespace"] = json!(namespace);
    }
    if let Some(operation) = &fields.operation {
        document["aws"] = json!({ "operation": operation });
    }
    if let Some(status) = fields.status {
        document["http"] = json!({ "response": { "status": status } });
        match status {
            429 => document["throttle"] = json!(true),
            400..=499 => document["error"] = json!(true),
            500.. => document["fault"] = json!(true),
            _ => {}
        }
    }
    document
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tracing_subscriber::layer::SubscriberExt;

    const HEADER: &str =
        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";

    fn receive(socket: &UdpSocket) -> Value {
        let mut buffer = [0u8; 65_536];
        let (read, _) = socket.recv_from(&mut buffer).expect("a datagram");
        let text = std::str::from_utf8(&buffer[..read]).unwrap();
        let (header, body) = text.split_once('\n').expect("a header line");
        assert_eq!(header, r#"{"format":"json","version":1}"#);
        serde_json::from_str(body).unwrap()
    }

    fn daemon() -> UdpSocket {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        socket
    }

    /// Runs `spans` under a subscriber whose X-Ray layer sends to `daemon`, with `header` as
    /// the invocation's trace header.
    fn traced(daemon: &UdpSocket, header: Option<&'static str>, spans: impl FnOnce()) {
        let layer = XrayLayer::new(
            daemon.local_addr().unwrap(),
            Box::new(move || header.map(str::to_owned)),
        )
        .unwrap();
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), spans);
    }

    #[test]
    fn nested_spans_become_nested_subsegments_of_the_invocation() {
        let socket = daemon();
        traced(&socket, Some(HEADER), || {
            let request = work("POST /v1/subscriptions");
            let _entered = request.enter();
            let call = aws_call("DynamoDB", "TransactWriteItems");
            call.record("status", 400_u16);
            drop(call);
            remote_call("Stripe", "POST /v1/payment_intents").in_scope(|| {});
        });
        let dynamo = receive(&socket);
        let stripe = receive(&socket);
        let request = receive(&socket);
        assert_eq!(request["name"], "POST /v1/subscriptions");
        assert_eq!(request["parent_id"], "53995c3f42cd8ad8");
        assert_eq!(request["trace_id"], "1-5759e988-bd862e3fe1be46a994272793");
        assert_eq!(request["type"], "subsegment");
        assert!(request.get("namespace").is_none());
        assert_eq!(dynamo["name"], "DynamoDB");
        assert_eq!(dynamo["namespace"], "aws");
        assert_eq!(dynamo["aws"]["operation"], "TransactWriteItems");
        assert_eq!(dynamo["http"]["response"]["status"], 400);
        assert_eq!(dynamo["error"], true);
        assert_eq!(dynamo["parent_id"], request["id"]);
        assert_eq!(dynamo["trace_id"], request["trace_id"]);
        assert_eq!(stripe["namespace"], "remote");
        assert_eq!(stripe["parent_id"], request["id"]);
        assert_ne!(stripe["id"], dynamo["id"]);
        assert_eq!(request["id"].as_str().unwrap().len(), 16);
        let (start, end) = (
            request["start_time"].as_f64().unwrap(),
            request["end_time"].as_f64().unwrap(),
        );
        assert!(start > 1.6e9 && end >= start, "{start} {end}");
    }

    #[test]
    fn nothing_is_sent_for_an_unsampled_or_missing_trace_or_other_spans() {
        for header in [
            Some("Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=0"),
            Some("Parent=53995c3f42cd8ad8;Sampled=1"),
            None,
        ] {
            let socket = daemon();
            socket
                .set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            traced(&socket, header, || {
                work("billing job").in_scope(|| {});
            });
            let mut buffer = [0u8; 1024];
            assert!(socket.recv_from(&mut buffer).is_err(), "{header:?}");
        }
        let socket = daemon();
        traced(&socket, Some(HEADER), || {
            tracing::info_span!("not traced").in_scope(|| {});
            work("traced").in_scope(|| {});
        });
        assert_eq!(receive(&socket)["name"], "traced");
    }

    #[test]
    fn sdk_requests_are_named_by_service_and_operation() {
        let mut headers = http::HeaderMap::new();
        headers.insert("x-amz-target", "DynamoDB_20120810.GetItem".parse().unwrap());
        let uri: http::Uri = "https://dynamodb.us-east-1.amazonaws.com/".parse().unwrap();
        assert_eq!(
            aws_operation(&headers, &http::Method::POST, &uri),
            ("DynamoDB".into(), "GetItem".into())
        );
        headers.insert(
            "x-amz-target",
            "AmazonSQS.SendMessageBatch".parse().unwrap(),
        );
        assert_eq!(
            aws_operation(&headers, &http::Method::POST, &uri).1,
            "SendMessageBatch"
        );
        let ses: http::Uri = "https://email.eu-west-1.amazonaws.com/v2/email/outbound-emails"
            .parse()
            .unwrap();
        assert_eq!(
            aws_operation(&http::HeaderMap::new(), &http::Method::POST, &ses),
            ("email".into(), "POST /v2/email/outbound-emails".into())
        );
    }

    #[test]
    fn trace_headers_parse_with_or_without_a_parent() {
        assert_eq!(
            TraceContext::parse(HEADER),
            Some(TraceContext {
                trace_id: "1-5759e988-bd862e3fe1be46a994272793".into(),
                parent_id: Some("53995c3f42cd8ad8".into()),
                sampled: true,
            })
        );
        assert_eq!(
            TraceContext::parse("Root=1-a-b").map(|c| (c.parent_id, c.sampled)),
            Some((None, false))
        );
        assert_eq!(TraceContext::parse("Sampled=1"), None);
    }
}
