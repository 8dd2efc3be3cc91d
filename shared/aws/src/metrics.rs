//! CloudWatch metrics as Embedded Metric Format lines on stdout: CloudWatch Logs turns each
//! line into datapoints, with no API call on the request's path. The template's alarms and
//! dashboard read them from the `Billing` namespace.

use std::io::Write;

use serde_json::{json, Map, Value};

pub const NAMESPACE: &str = "Billing";

/// Whether this process is a Lambda function: elsewhere (tests, tools) the lines would be
/// noise on stdout, except where the local runner asks for them.
pub fn in_lambda() -> bool {
    std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some()
}

/// One datapoint: its name, CloudWatch unit and value.
pub struct Metric<'a> {
    pub name: &'a str,
    pub unit: &'a str,
    pub value: u64,
}

impl<'a> Metric<'a> {
    pub fn count(name: &'a str, value: u64) -> Self {
        Self {
            name,
            unit: "Count",
            value,
        }
    }
}

/// The EMF document for `metrics` under one set of `dimensions`, with `properties` (searchable
/// in Logs Insights, not metrics) beside them.
pub fn document(dimensions: &[(&str, &str)], metrics: &[Metric<'_>], properties: Value) -> Value {
    let mut root = match properties {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    for (name, value) in dimensions {
        root.insert((*name).to_owned(), json!(value));
    }
    for metric in metrics {
        root.insert(metric.name.to_owned(), json!(metric.value));
    }
    let names: Vec<&str> = dimensions.iter().map(|(name, _)| *name).collect();
    let definitions: Vec<Value> = metrics
        .iter()
        .map(|m| json!({"Name": m.name, "Unit": m.unit}))
        .collect();
    root.insert(
        "_aws".into(),
        json!({
            "Timestamp": jiff::Timestamp::now().as_millisecond(),
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [names],
                "Metrics": definitions,
            }]
        }),
    );
    Value::Object(root)
}

/// Writes one EMF line.
pub fn emit(document: &Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{document}");
}

/// A payment-gateway request's outcome: the alarm on gateway failures divides `Failures` by
/// `Requests`. A decline is the gateway working; a failure is no usable answer (transport
/// error, 5xx, 429).
pub fn gateway_request(gateway: &str, failed: bool) {
    if in_lambda() {
        emit(&document(
            &[("Gateway", gateway)],
            &[
                Metric::count("GatewayRequests", 1),
                Metric::count("GatewayFailures", u64::from(failed)),
            ],
            Value::Null,
        ));
    }
}

/// Events put on the bus, by type (the dashboard's invoices and payments).
pub fn events_published<'a>(types: impl IntoIterator<Item = &'a str>) {
    if !in_lambda() {
        return;
    }
    let mut counts = std::collections::BTreeMap::<&str, u64>::new();
    for event_type in types {
        *counts.entry(event_type).or_default() += 1;
    }
    for (event_type, count) in counts {
        emit(&document(
            &[("EventType", event_type)],
            &[Metric::count("EventsPublished", count)],
            Value::Null,
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_declares_its_dimensions_and_metrics_beside_their_values() {
        let line = document(
            &[("Route", "/v1/accounts"), ("Method", "GET")],
            &[
                Metric::count("Requests", 1),
                Metric {
                    name: "Latency",
                    unit: "Microseconds",
                    value: 1234,
                },
            ],
            json!({"request_id": "req_1"}),
        );
        let definition = &line["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(definition["Namespace"], "Billing");
        assert_eq!(definition["Dimensions"], json!([["Route", "Method"]]));
        assert_eq!(
            definition["Metrics"],
            json!([{"Name": "Requests", "Unit": "Count"}, {"Name": "Latency", "Unit": "Microseconds"}])
        );
        assert_eq!(line["Route"], "/v1/accounts");
        assert_eq!(line["Method"], "GET");
        assert_eq!(line["Requests"], 1);
        assert_eq!(line["Latency"], 1234);
        assert_eq!(line["request_id"], "req_1");
        assert!(line["_aws"]["Timestamp"].as_i64().unwrap() > 1_600_000_000_000);
    }
}
