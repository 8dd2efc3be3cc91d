//! `template.yaml` must describe the table the code expects (the same one the local stack
//! creates from `billing_aws::table`), and the resources the local stack creates.

use std::collections::BTreeSet;
use std::path::Path;

use billing_aws::table::{GLOBAL_INDEXES, KEY_ATTRIBUTES, PRIMARY_KEY, TTL_ATTRIBUTE};
use serde_yaml::Value;

fn template() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yaml");
    serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn key_schema(schema: &Value) -> (String, String) {
    let find = |kind: &str| {
        schema
            .as_sequence()
            .unwrap()
            .iter()
            .find(|k| k["KeyType"] == kind)
            .map(|k| k["AttributeName"].as_str().unwrap().to_owned())
            .unwrap()
    };
    (find("HASH"), find("RANGE"))
}

#[test]
fn the_cloud_table_matches_the_code() {
    let template = template();
    let table = &template["Resources"]["Table"]["Properties"];
    let attributes: BTreeSet<(String, String)> = table["AttributeDefinitions"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["AttributeName"].as_str().unwrap().to_owned(),
                a["AttributeType"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected: BTreeSet<(String, String)> = KEY_ATTRIBUTES
        .iter()
        .map(|a| (a.to_string(), "S".to_owned()))
        .collect();
    assert_eq!(attributes, expected);
    assert_eq!(
        key_schema(&table["KeySchema"]),
        (PRIMARY_KEY.0.to_owned(), PRIMARY_KEY.1.to_owned())
    );
    let indexes: BTreeSet<(String, String, String, String)> = table["GlobalSecondaryIndexes"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|i| {
            let (hash, range) = key_schema(&i["KeySchema"]);
            let projected = i["Projection"]["ProjectionType"]
                .as_str()
                .unwrap()
                .to_owned();
            (
                i["IndexName"].as_str().unwrap().to_owned(),
                hash,
                range,
                projected,
            )
        })
        .collect();
    let expected: BTreeSet<(String, String, String, String)> = GLOBAL_INDEXES
        .iter()
        .map(|(n, h, r, p)| {
            (
                n.to_string(),
                h.to_string(),
                r.to_string(),
                p.as_str().to_owned(),
            )
        })
        .collect();
    assert_eq!(indexes, expected);
    assert_eq!(
        table["TimeToLiveSpecification"]["AttributeName"],
        TTL_ATTRIBUTE
    );
    assert_eq!(table["BillingMode"], "PAY_PER_REQUEST");
    assert_eq!(
        table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"],
        true
    );
}

#[test]
fn every_local_queue_has_a_cloud_twin_with_a_dead_letter_queue() {
    let template = template();
    let resources = template["Resources"].as_mapping().unwrap();
    let queues: Vec<&Value> = resources
        .values()
        .filter(|r| r["Type"] == "AWS::SQS::Queue" && !r["Properties"]["RedrivePolicy"].is_null())
        .collect();
    assert_eq!(queues.len(), billing_infra::stack::QUEUES.len());
    for queue in &queues {
        assert_eq!(
            queue["Properties"]["RedrivePolicy"]["maxReceiveCount"],
            billing_infra::stack::MAX_RECEIVES
        );
        // A FIFO queue needs a FIFO dead-letter queue.
        let dlq = match &queue["Properties"]["RedrivePolicy"]["deadLetterTargetArn"] {
            Value::Tagged(get_att) => get_att.value.as_str().unwrap().strip_suffix(".Arn"),
            _ => None,
        }
        .unwrap();
        assert_eq!(
            resources[&Value::from(dlq)]["Properties"]["FifoQueue"],
            queue["Properties"]["FifoQueue"],
            "{dlq}"
        );
    }
    let fifo = |q: &&&Value| q["Properties"]["FifoQueue"] == true;
    assert_eq!(
        queues.iter().filter(fifo).count(),
        billing_infra::stack::QUEUES
            .iter()
            .filter(|q| q.ends_with(".fifo"))
            .count()
    );
    assert!(billing_infra::stack::BILLING_QUEUE.ends_with(".fifo"));
}

#[test]
fn functions_are_arm64_rust_built_with_cargo_lambda() {
    let template = template();
    assert_eq!(
        template["Globals"]["Function"]["Runtime"],
        "provided.al2023"
    );
    assert_eq!(template["Globals"]["Function"]["Architectures"][0], "arm64");
    for (name, resource) in template["Resources"].as_mapping().unwrap() {
        if resource["Type"] == "AWS::Serverless::Function" {
            assert_eq!(
                resource["Metadata"]["BuildMethod"], "rust-cargolambda",
                "{name:?}"
            );
        }
    }
}

#[test]
fn webhook_fanout_reports_partial_batch_failures_and_billing_run_is_scheduled() {
    let template = template();
    let fanout = &template["Resources"]["WebhookFanoutFunction"];
    assert_eq!(
        fanout["Metadata"]["BuildProperties"]["Binary"],
        "webhook-fanout"
    );
    let source = &fanout["Properties"]["Events"]["Webhooks"]["Properties"];
    assert_eq!(
        source["FunctionResponseTypes"][0],
        "ReportBatchItemFailures"
    );
    assert!(
        fanout["Properties"]["Timeout"].as_u64().unwrap()
            < template["Resources"]["WebhooksQueue"]["Properties"]["VisibilityTimeout"]
                .as_u64()
                .unwrap(),
        "a message must not become visible again while its handler still runs"
    );
    let run = &template["Resources"]["BillingRunFunction"];
    assert_eq!(run["Metadata"]["BuildProperties"]["Binary"], "billing-run");
    assert_eq!(run["Properties"]["Events"]["Sweep"]["Type"], "ScheduleV2");
    let env = &template["Globals"]["Function"]["Environment"]["Variables"];
    assert!(!env["EVENT_BUS_NAME"].is_null() && !env["WEBHOOK_QUEUE_URL"].is_null());
}

#[test]
fn payment_worker_consumes_the_payments_queue_with_partial_batch_failures() {
    let template = template();
    let tag_target = |v: &Value| match v {
        Value::Tagged(tagged) => tagged.value.as_str().map(str::to_owned),
        _ => None,
    };
    let worker = &template["Resources"]["PaymentWorkerFunction"];
    assert_eq!(
        worker["Metadata"]["BuildProperties"]["Binary"],
        "payment-worker"
    );
    let source = &worker["Properties"]["Events"]["Payments"]["Properties"];
    assert_eq!(
        tag_target(&source["Queue"]).as_deref(),
        Some("PaymentsQueue.Arn")
    );
    assert_eq!(
        source["FunctionResponseTypes"][0],
        "ReportBatchItemFailures"
    );
    assert!(
        worker["Properties"]["Timeout"].as_u64().unwrap()
            < template["Resources"]["PaymentsQueue"]["Properties"]["VisibilityTimeout"]
                .as_u64()
                .unwrap()
    );
    let env = &template["Globals"]["Function"]["Environment"]["Variables"];
    assert_eq!(
        tag_target(&env["PAYMENT_QUEUE_URL"]).as_deref(),
        Some("PaymentsQueue")
    );
    assert_eq!(billing_infra::stack::PAYMENT_QUEUE, "billing-payments");
}

#[test]
fn payment_worker_sends_dunning_notices_from_the_configured_address() {
    let template = template();
    assert_eq!(
        template["Parameters"]["NoticeFromAddress"]["Type"],
        "String"
    );
    let worker = &template["Resources"]["PaymentWorkerFunction"]["Properties"];
    let from = &worker["Environment"]["Variables"]["NOTICE_FROM_ADDRESS"];
    assert!(
        matches!(from, Value::Tagged(t) if t.value.as_str() == Some("NoticeFromAddress")),
        "{from:?}"
    );
    let statements = worker["Policies"][0]["Statement"].as_sequence().unwrap();
    let allows = |action: &str| {
        statements.iter().any(|s| match &s["Action"] {
            Value::String(a) => a == action,
            Value::Sequence(all) => all.iter().any(|a| a.as_str() == Some(action)),
            _ => false,
        })
    };
    assert!(allows("ses:SendEmail"));
    // A sent notice's pending item is deleted.
    assert!(allows("dynamodb:DeleteItem"));
}

#[test]
fn stripe_webhook_is_routed_without_a_key_and_every_collector_reads_the_stripe_secret() {
    let template = template();
    let is_ref = |value: &Value, target: &str| matches!(value, Value::Tagged(t) if t.tag == "!Ref" && t.value.as_str() == Some(target));
    let secret_var = &template["Globals"]["Function"]["Environment"]["Variables"]
        [billing_aws::payment_gateway::SECRET_ID_VAR];
    assert!(is_ref(secret_var, "StripeSecret"), "{secret_var:?}");

    let webhook = &template["Resources"]["StripeWebhookFunction"];
    assert_eq!(
        webhook["Metadata"]["BuildProperties"]["Binary"],
        "stripe-webhook"
    );
    let route = &webhook["Properties"]["Events"]["Stripe"];
    assert_eq!(route["Type"], "HttpApi");
    assert!(is_ref(&route["Properties"]["ApiId"], "HttpApi"));
    assert_eq!(
        route["Properties"]["Path"],
        billing_http::stripe_webhook::PATH
    );
    assert_eq!(route["Properties"]["Method"], "POST");
    // Stripe signs its requests; the HTTP API has no authorizer in front of the route.
    assert!(route["Properties"]["Auth"].is_null());
    assert!(template["Resources"]["HttpApi"]["Properties"]["Auth"].is_null());

    // The functions whose main calls billing_aws::payment_gateway may read the secret.
    for function in [
        "ApiFunction",
        "BillingWorkerFunction",
        "PaymentWorkerFunction",
        "StripeWebhookFunction",
    ] {
        let statements = template["Resources"][function]["Properties"]["Policies"][0]["Statement"]
            .as_sequence()
            .unwrap();
        assert!(
            statements
                .iter()
                .any(|s| s["Action"] == "secretsmanager:GetSecretValue"
                    && is_ref(&s["Resource"], "StripeSecret")),
            "{function} cannot read the Stripe secret"
        );
    }
}

/// An `Idempotency-Key`'s lease must outlast the `api` function: a retry may take a key over
/// only once Lambda has stopped the request that claimed it.
#[test]
fn the_idempotency_lease_outlasts_the_api_function() {
    let template = template();
    let timeout = template["Resources"]["ApiFunction"]["Properties"]["Timeout"]
        .as_u64()
        .or_else(|| template["Globals"]["Function"]["Timeout"].as_u64())
        .unwrap();
    let lease = billing_app::kernel::idempotency::DEFAULT_LEASE.as_secs();
    assert!(
        u64::try_from(lease).unwrap() >= timeout,
        "lease {lease} s, timeout {timeout} s"
    );
}

/// The logical id a `!GetAtt X.Attr` or `!Ref X` names.
fn referenced(value: &Value) -> Option<&str> {
    match value {
        Value::Tagged(tagged) => tagged
            .value
            .as_str()
            .map(|target| target.split('.').next().unwrap_or(target)),
        _ => None,
    }
}

#[test]
fn every_dead_letter_queue_has_an_alarm_and_every_alarm_notifies_the_topic() {
    let template = template();
    let resources = template["Resources"].as_mapping().unwrap();
    let dead_letter_queues: BTreeSet<&str> = resources
        .values()
        .filter(|r| r["Type"] == "AWS::SQS::Queue")
        .filter_map(|r| referenced(&r["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]))
        .collect();
    assert_eq!(dead_letter_queues.len(), billing_infra::stack::QUEUES.len());
    let alarms: Vec<(&str, &Value)> = resources
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::CloudWatch::Alarm")
        .map(|(name, r)| (name.as_str().unwrap(), &r["Properties"]))
        .collect();
    for dlq in &dead_letter_queues {
        let watching: Vec<&str> = alarms
            .iter()
            .filter(|(_, alarm)| {
                alarm["Namespace"] == "AWS/SQS"
                    && alarm["MetricName"] == "ApproximateNumberOfMessagesVisible"
                    && alarm["Threshold"].as_u64() == Some(1)
                    && referenced(&alarm["Dimensions"][0]["Value"]) == Some(*dlq)
            })
            .map(|(name, _)| *name)
            .collect();
        assert_eq!(watching.len(), 1, "{dlq} is watched by {watching:?}");
    }
    assert_eq!(
        resources[&Value::from("AlarmTopic")]["Type"],
        "AWS::SNS::Topic"
    );
    for (name, alarm) in &alarms {
        for actions in ["AlarmActions", "OKActions"] {
            assert_eq!(
                alarm[actions]
                    .as_sequence()
                    .map(|a| a.iter().filter_map(referenced).collect::<Vec<_>>()),
                Some(vec!["AlarmTopic"]),
                "{name} {actions}"
            );
        }
    }
    let subscription = &resources[&Value::from("AlarmEmailSubscription")]["Properties"];
    assert_eq!(subscription["Protocol"], "email");
    assert_eq!(referenced(&subscription["Endpoint"]), Some("AlarmEmail"));
}

#[test]
fn the_alarms_watch_rates_and_percentiles_not_counts_of_crashes() {
    let template = template();
    let resources = &template["Resources"];
    let expression = |alarm: &str| {
        resources[alarm]["Properties"]["Metrics"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|m| m["ReturnData"] == true)
            .map(|m| m["Expression"].clone())
            .unwrap()
    };
    let api = &resources["ApiErrorRateAlarm"]["Properties"];
    assert_eq!(
        expression("ApiErrorRateAlarm"),
        "IF(requests > 0, 100 * errors / requests, 0)"
    );
    assert_eq!(api["Threshold"].as_u64(), Some(1));
    assert_eq!(api["ComparisonOperator"], "GreaterThanThreshold");
    let latency = &resources["ApiLatencyAlarm"]["Properties"];
    assert_eq!(latency["ExtendedStatistic"], "p95");
    assert_eq!(latency["Threshold"].as_u64(), Some(500));
    assert_eq!(latency["Unit"], "Milliseconds");
    let gateway = &resources["PaymentGatewayFailureAlarm"]["Properties"];
    assert_eq!(
        expression("PaymentGatewayFailureAlarm"),
        "IF(requests > 0, 100 * failures / requests, 0)"
    );
    assert_eq!(gateway["Threshold"].as_u64(), Some(5));
    // The metrics the gateway alarm divides are the ones the Stripe adapter emits.
    let names: Vec<&str> = gateway["Metrics"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|m| m["MetricStat"]["Metric"]["MetricName"].as_str())
        .collect();
    assert_eq!(names, ["GatewayRequests", "GatewayFailures"]);
    for metric in gateway["Metrics"].as_sequence().unwrap().iter().take(2) {
        assert_eq!(
            metric["MetricStat"]["Metric"]["Namespace"],
            billing_aws::metrics::NAMESPACE
        );
    }
    for alarm in ["DynamoDbErrorsAlarm", "DynamoDbThrottlesAlarm"] {
        assert!(!resources[alarm].is_null(), "{alarm}");
    }
}

#[test]
fn a_missed_billing_run_alarms_after_twice_its_interval() {
    let template = template();
    let intervals = template["Mappings"]["BillingRunInterval"]
        .as_mapping()
        .unwrap();
    let allowed = template["Parameters"]["BillingRunIntervalMinutes"]["AllowedValues"]
        .as_sequence()
        .unwrap();
    assert_eq!(intervals.len(), allowed.len());
    for minutes in allowed {
        let row = &intervals[minutes];
        let minutes: u64 = minutes.as_str().unwrap().parse().unwrap();
        assert_eq!(row["AlarmPeriodSeconds"].as_u64(), Some(2 * 60 * minutes));
        let unit = if minutes == 1 { "minute" } else { "minutes" };
        assert_eq!(row["Schedule"], format!("rate({minutes} {unit})").as_str());
    }
    let alarm = &template["Resources"]["BillingRunMissedAlarm"]["Properties"];
    assert_eq!(alarm["TreatMissingData"], "breaching");
    assert_eq!(alarm["ComparisonOperator"], "LessThanThreshold");
    let watched: Vec<&str> = alarm["Metrics"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|m| referenced(&m["MetricStat"]["Metric"]["Dimensions"][0]["Value"]))
        .collect();
    assert_eq!(watched, ["BillingRunFunction", "BillingRunFunction"]);
}

#[test]
fn every_function_is_traced() {
    let template = template();
    assert_eq!(template["Globals"]["Function"]["Tracing"], "Active");
    for (name, resource) in template["Resources"].as_mapping().unwrap() {
        if resource["Type"] == "AWS::Serverless::Function" {
            assert!(
                resource["Properties"]["Tracing"].is_null(),
                "{name:?} overrides the global tracing"
            );
        }
    }
}

/// The default identity provider for staff sign-in: a Cognito user pool whose groups are
/// the four roles, whose users carry their tenant in the attribute the default tenant claim
/// names and cannot change it, and whose issuer, JWKS URL and audience are outputs.
#[test]
fn the_staff_user_pool_has_the_four_roles_as_groups_and_outputs_its_issuer() {
    use billing_domain::customers::access::Role;
    use billing_domain::customers::staff::{DEFAULT_ROLE_CLAIM, DEFAULT_TENANT_CLAIM};
    let template = template();
    let resources = template["Resources"].as_mapping().unwrap();
    let of_type = |kind: &str| -> Vec<&Value> {
        resources
            .values()
            .filter(|r| r["Type"] == kind)
            .map(|r| &r["Properties"])
            .collect()
    };
    let [pool] = of_type("AWS::Cognito::UserPool")[..] else {
        panic!("one staff user pool");
    };
    assert_eq!(
        pool["AdminCreateUserConfig"]["AllowAdminCreateUserOnly"],
        true
    );
    let pool_ref = |props: &Value| referenced(&props["UserPoolId"]) == Some("StaffUserPool");

    let groups: BTreeSet<String> = of_type("AWS::Cognito::UserPoolGroup")
        .into_iter()
        .inspect(|g| assert!(pool_ref(g), "{g:?}"))
        .map(|g| g["GroupName"].as_str().unwrap().to_owned())
        .collect();
    let roles: BTreeSet<String> = [
        Role::Admin,
        Role::BillingAdmin,
        Role::Support,
        Role::FinanceViewer,
    ]
    .iter()
    .map(|r| r.as_str().to_owned())
    .collect();
    assert_eq!(groups, roles);
    // Cognito puts the groups in `cognito:groups`, custom attributes under `custom:`.
    assert_eq!(DEFAULT_ROLE_CLAIM, "cognito:groups");
    let tenant_attribute = DEFAULT_TENANT_CLAIM.strip_prefix("custom:").unwrap();
    let attribute = pool["Schema"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|a| a["Name"] == tenant_attribute)
        .expect("the tenant attribute");
    assert_eq!(attribute["Mutable"], false);

    let [client] = of_type("AWS::Cognito::UserPoolClient")[..] else {
        panic!("one app client");
    };
    assert!(pool_ref(client));
    let writable: Vec<&str> = client["WriteAttributes"]
        .as_sequence()
        .expect("the attributes users may write, listed")
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(!writable.contains(&DEFAULT_TENANT_CLAIM), "{writable:?}");

    let outputs = &template["Outputs"];
    let sub = |name: &str| match &outputs[name]["Value"] {
        Value::Tagged(t) if t.tag == "Sub" => t.value.as_str().unwrap().to_owned(),
        other => panic!("{name} is not a !Sub: {other:?}"),
    };
    let issuer = sub("StaffIssuer");
    assert!(issuer.starts_with("https://cognito-idp.") && issuer.ends_with("/${StaffUserPool}"));
    assert_eq!(
        sub("StaffJwksUrl"),
        format!("{issuer}/.well-known/jwks.json")
    );
    assert_eq!(
        referenced(&outputs["StaffAudience"]["Value"]),
        Some("StaffAppClient")
    );
}
