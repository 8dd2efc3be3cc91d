//! Documents over HTTP on both stores: the tenant's branding (defaults, partial updates,
//! clearing, validation answers, concurrent updates that both land); the document pipeline
//! (render once, record once, download through the API and the hosted page); and, on the
//! local stack, the whole way from a finalized invoice through the bus's rule, the renderer
//! and S3 to the download.

use std::sync::Arc;
use std::time::{Duration, Instant};

use billing_app::documents::render::{DocumentJob, Rendered};
use billing_app::App;
use billing_domain::kernel::ids::{InvoiceId, TenantId};
use billing_memory::MemoryObjects;
use billing_tests::api::{problem, Api};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const CUSTOMER: &str = "Ada Lovelace Analytics";

/// An open `send_invoice` invoice of two lines (120.00 and 34.50 USD): `(draft, finalized)`.
async fn two_line_invoice(api: &Api) -> (Value, Value) {
    let account = api
        .created(
            "/v1/accounts",
            json!({"email": "ada@example.com", "name": CUSTOMER, "currency": "usd"}),
        )
        .await;
    let draft = api
        .created(
            "/v1/invoices",
            json!({"account": account["id"], "collection_method": "send_invoice",
                   "lines": [{"description": "Platform fee", "amount": 12_000},
                             {"description": "Support hours", "amount": 3_450}]}),
        )
        .await;
    let id = draft["id"].as_str().unwrap();
    let finalized = api
        .post(
            &format!("/v1/invoices/{id}/finalize"),
            json!({"days_until_due": 14}),
        )
        .await;
    (draft, finalized)
}

/// The message the bus's documents rule puts on the queue for `event_type` of `resource`.
fn job(tenant: TenantId, event_type: &str, resource: &str) -> DocumentJob {
    serde_json::from_value(json!({
        "version": "0", "detail-type": event_type, "source": "billing",
        "detail": {"tenant_id": tenant, "type": event_type, "livemode": false,
                   "resource_id": resource, "id": "evt_x", "data": {}}
    }))
    .unwrap()
}

async fn get_pdf(api: &Api, path: &str) -> reqwest::Response {
    api.send(Method::GET, path, None).await
}

/// What `pdftotext` must find on an invoice of [`two_line_invoice`].
fn assert_invoice_text(text: &str, number: &str) {
    for expected in [number, CUSTOMER, "$120.00", "$34.50", "$154.50"] {
        assert!(text.contains(expected), "{expected} missing from:\n{text}");
    }
}

async fn pdfs_are_rendered_once_and_downloaded(app: App) {
    let objects = Arc::new(MemoryObjects::default());
    let app = app.with_objects(objects.clone());
    let pipeline = app
        .documents
        .pipeline(objects.clone(), Arc::new(document_renderer::Pdfs));
    let (api, tenant) = Api::start(app.clone(), "Nimbus Docs").await;

    let account = api
        .created(
            "/v1/accounts",
            json!({"email": "d@example.com", "currency": "usd"}),
        )
        .await;
    let draft = api
        .created(
            "/v1/invoices",
            json!({"account": account["id"], "lines": [{"description": "x", "amount": 100}]}),
        )
        .await;
    let draft_pdf = format!("/v1/invoices/{}/pdf", draft["id"].as_str().unwrap());
    problem(
        get_pdf(&api, &draft_pdf).await,
        StatusCode::CONFLICT,
        "invoice_not_finalized",
    )
    .await;
    let unknown = format!(
        "/v1/invoices/{}/pdf",
        InvoiceId::from_ulid(ulid::Ulid::new())
    );
    assert_eq!(
        get_pdf(&api, &unknown).await.status(),
        StatusCode::NOT_FOUND
    );

    let (_, invoice) = two_line_invoice(&api).await;
    let id = invoice["id"].as_str().unwrap();
    let number = invoice["number"].as_str().unwrap();
    let path = format!("/v1/invoices/{id}/pdf");
    let not_ready = problem(
        get_pdf(&api, &path).await,
        StatusCode::CONFLICT,
        "document_not_ready",
    )
    .await;
    assert!(
        not_ready["hint"].as_str().unwrap().contains("shortly"),
        "{not_ready}"
    );

    let event = job(tenant.id, "invoice.finalized", id);
    let Rendered::New(document) = pipeline.handle(&event).await.unwrap() else {
        panic!("the first render records the document");
    };
    // Redelivered: nothing is rendered or written again.
    assert_eq!(
        pipeline.handle(&event).await.unwrap(),
        Rendered::Existing(document.clone())
    );
    assert_eq!(objects.keys(), vec![document.key.clone()]);
    assert!(document
        .key
        .starts_with(&format!("{}/test/invoices/{id}/", tenant.id)));

    let response = get_pdf(&api, &path).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/pdf");
    let disposition = response.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(disposition.contains(".pdf"), "{disposition}");
    let pdf = response.bytes().await.unwrap().to_vec();
    assert_eq!(hex::encode(Sha256::digest(&pdf)), document.sha256);
    assert_eq!(u64::try_from(pdf.len()).unwrap(), document.size);
    assert_invoice_text(&billing_tests::pdf_text(&pdf), number);

    // Rendering the same invoice again gives the same bytes: the same object.
    let stored = app
        .store
        .get_invoice(tenant.id, InvoiceId::parse(id, "id").unwrap())
        .await
        .unwrap()
        .unwrap();
    let branding = app
        .store
        .branding(tenant.id)
        .await
        .unwrap()
        .unwrap_or_default();
    use billing_app::ports::DocumentRenderer;
    assert_eq!(
        document_renderer::Pdfs
            .invoice(&stored, &branding, None)
            .unwrap()
            .bytes,
        pdf
    );

    // The customer's page serves the same file under its token.
    let url = api
        .created(&format!("/v1/invoices/{id}/hosted-link"), json!({}))
        .await["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let page = reqwest::get(&url).await.unwrap().text().await.unwrap();
    assert!(page.contains("/pdf\">Download PDF</a>"), "{page}");
    let hosted = reqwest::get(format!("{url}/pdf")).await.unwrap();
    assert_eq!(hosted.status(), StatusCode::OK);
    assert_eq!(hosted.headers()["cache-control"], "no-store");
    assert_eq!(hosted.bytes().await.unwrap().to_vec(), pdf);

    // A credit note: paid outside, then voided into the balance.
    api.post(
        &format!("/v1/invoices/{id}/mark-paid"),
        json!({"reference": "wire 7"}),
    )
    .await;
    api.post(
        &format!("/v1/invoices/{id}/void"),
        json!({"credit_to_balance": true}),
    )
    .await;
    let notes = api.list(&format!("/v1/credit-notes?invoice={id}")).await;
    let note = notes[0]["id"].as_str().unwrap();
    let note_path = format!("/v1/credit-notes/{note}/pdf");
    problem(
        get_pdf(&api, &note_path).await,
        StatusCode::CONFLICT,
        "document_not_ready",
    )
    .await;
    let rendered = pipeline
        .handle(&job(tenant.id, "credit_note.created", note))
        .await
        .unwrap();
    assert!(matches!(rendered, Rendered::New(_)), "{rendered:?}");
    let response = get_pdf(&api, &note_path).await;
    assert_eq!(response.status(), StatusCode::OK);
    let text = billing_tests::pdf_text(&response.bytes().await.unwrap());
    assert!(
        text.contains("CREDIT NOTE") && text.contains(number) && text.contains("$154.50"),
        "{text}"
    );
    assert_eq!(objects.keys().len(), 2);
}

/// A logo file of `shared/documents/tests/fixtures` (made with poppler's `pdftoppm`).
fn logo_fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/documents/tests/fixtures")
            .join(name),
    )
    .unwrap()
}

async fn put_logo(api: &Api, content_type: &str, bytes: Vec<u8>) {
    let answered = api
        .request(Method::PUT, "/v1/settings/branding/logo")
        .header("content-type", content_type)
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(answered.status(), StatusCode::OK, "{content_type} logo");
}

/// Renders the finalized invoice's PDF through `pipeline` and reads it from `objects`.
async fn rendered_pdf(
    pipeline: &billing_app::documents::render::DocumentPipeline,
    objects: &MemoryObjects,
    tenant: TenantId,
    invoice: &Value,
) -> Vec<u8> {
    let id = invoice["id"].as_str().unwrap();
    let Rendered::New(document) = pipeline
        .handle(&job(tenant, "invoice.finalized", id))
        .await
        .unwrap()
    else {
        panic!("the invoice's PDF is rendered");
    };
    use billing_app::ports::ObjectStore;
    objects.get(&document.key).await.unwrap().unwrap()
}

/// The branding's logo, read by the pipeline through the object store, is drawn on the
/// PDF; one that does not decode, or that the bucket does not have, leaves a complete
/// invoice without it and a warning in the log.
async fn the_logo_is_drawn_or_left_out_with_a_warning(app: App) {
    use tracing_subscriber::filter::LevelFilter;
    let objects = Arc::new(MemoryObjects::default());
    let app = app.with_objects(objects.clone());
    let pipeline = app
        .documents
        .pipeline(objects.clone(), Arc::new(document_renderer::Pdfs));
    let (api, tenant) = Api::start(app.clone(), "Nimbus Logo").await;

    put_logo(&api, "image/jpeg", logo_fixture("logo.jpg")).await;
    let (_, invoice) = two_line_invoice(&api).await;
    let pdf = rendered_pdf(&pipeline, &objects, tenant.id, &invoice).await;
    assert_eq!(billing_tests::pdf_images(&pdf), vec![(1, 240, 120)]);
    put_logo(&api, "image/png", logo_fixture("logo.png")).await;
    let (_, invoice) = two_line_invoice(&api).await;
    let pdf = rendered_pdf(&pipeline, &objects, tenant.id, &invoice).await;
    assert_eq!(billing_tests::pdf_images(&pdf), vec![(1, 320, 80)]);

    // Its signature and IHDR chunk pass the upload's checks; its image data is cut.
    let png = logo_fixture("logo.png");
    put_logo(&api, "image/png", png[..png.len() - 40].to_vec()).await;
    let (_, invoice) = two_line_invoice(&api).await;
    let (log, guard) = billing_tests::CapturedLog::start(LevelFilter::WARN);
    let pdf = rendered_pdf(&pipeline, &objects, tenant.id, &invoice).await;
    drop(guard);
    assert_eq!(billing_tests::pdf_images(&pdf), vec![]);
    assert_invoice_text(
        &billing_tests::pdf_text(&pdf),
        invoice["number"].as_str().unwrap(),
    );
    let log = log.text();
    assert!(
        log.contains("the logo is not drawn on the document") && log.contains("does not decode"),
        "{log}"
    );

    // A bucket without the logo's object (the pipeline's own, empty).
    let empty = Arc::new(MemoryObjects::default());
    let without = app
        .documents
        .pipeline(empty.clone(), Arc::new(document_renderer::Pdfs));
    let (_, invoice) = two_line_invoice(&api).await;
    let (log, guard) = billing_tests::CapturedLog::start(LevelFilter::WARN);
    let pdf = rendered_pdf(&without, &empty, tenant.id, &invoice).await;
    drop(guard);
    assert_eq!(billing_tests::pdf_images(&pdf), vec![]);
    assert!(log.text().contains("not in the bucket"), "{}", log.text());
}

async fn branding_is_patched_field_by_field(app: App) {
    let (api, _) = Api::start(app, "Branding").await;
    let defaults = api.ok(Method::GET, "/v1/settings/branding", None).await;
    assert_eq!(defaults["version"], 0);
    assert_eq!(defaults["locale"], "en-US");
    assert_eq!(defaults["primary_color"], "#1f2937");

    let set = api
        .ok(
            Method::PATCH,
            "/v1/settings/branding",
            Some(&json!({
                "legal_name": "Nimbus Cloud GmbH", "accent_color": "#0E7490",
                "address": {"line1": "Torstraße 12", "city": "Berlin", "country": "de"},
                "tax_ids": ["DE136695976"], "support_email": "billing@nimbus.test",
                "footer": "HRB 123456 B", "locale": "de-DE"
            })),
        )
        .await;
    assert_eq!(set["version"], 1);
    assert_eq!(set["accent_color"], "#0e7490");
    assert_eq!(set["address"]["country"], "DE");
    assert_eq!(
        set,
        api.ok(Method::GET, "/v1/settings/branding", None).await
    );

    let cleared = api
        .ok(
            Method::PATCH,
            "/v1/settings/branding",
            Some(&json!({"footer": null, "primary_color": "#000000"})),
        )
        .await;
    assert_eq!(cleared["version"], 2);
    assert!(cleared["footer"].is_null());
    assert_eq!(cleared["legal_name"], "Nimbus Cloud GmbH");
    assert_eq!(cleared["primary_color"], "#000000");
}

async fn bad_branding_is_refused_with_the_field_named(app: App) {
    let (api, _) = Api::start(app, "Branding errors").await;
    for (body, code, param) in [
        (
            json!({"primary_color": "red"}),
            "invalid_color",
            "primary_color",
        ),
        (
            json!({"accent_color": "#12345g"}),
            "invalid_color",
            "accent_color",
        ),
        (
            json!({"support_email": "no-at-sign"}),
            "invalid_email",
            "support_email",
        ),
        (
            json!({"address": {"country": "Deutschland"}}),
            "invalid_country",
            "address.country",
        ),
        (
            json!({"tax_ids": ["A", "B", "C", "D", "E", "F"]}),
            "too_long",
            "tax_ids",
        ),
        (json!({"footer": "x".repeat(501)}), "too_long", "footer"),
        (json!({"locale": "xx-XX"}), "invalid_value", "locale"),
        (
            json!({"logo_colour": "#000000"}),
            "unknown_field",
            "logo_colour",
        ),
    ] {
        let answer = api
            .send(Method::PATCH, "/v1/settings/branding", Some(&body))
            .await;
        let doc = problem(answer, StatusCode::BAD_REQUEST, code).await;
        assert_eq!(doc["param"], param, "{body}: {doc}");
    }
    // Nothing was written.
    let branding = api.ok(Method::GET, "/v1/settings/branding", None).await;
    assert_eq!(branding["version"], 0);
}

async fn concurrent_updates_both_land(app: App) {
    let (api, _) = Api::start(app, "Branding race").await;
    let name = json!({"legal_name": "Racing Ltd"});
    let colour = json!({"accent_color": "#abcdef"});
    let (a, b) = tokio::join!(
        api.ok(Method::PATCH, "/v1/settings/branding", Some(&name)),
        api.ok(Method::PATCH, "/v1/settings/branding", Some(&colour)),
    );
    let mut versions = [a["version"].as_u64(), b["version"].as_u64()];
    versions.sort();
    assert_eq!(versions, [Some(1), Some(2)]);
    let after = api.ok(Method::GET, "/v1/settings/branding", None).await;
    assert_eq!(
        (
            &after["legal_name"],
            &after["accent_color"],
            &after["version"]
        ),
        (&json!("Racing Ltd"), &json!("#abcdef"), &json!(2))
    );
}

/// Asks for `path` until it is no longer `document_not_ready` (the renderer runs off the
/// request path); the minute is a guard against a hang, not a timing assertion.
async fn wait_for_pdf(api: &Api, path: &str) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let response = get_pdf(api, path).await;
        if response.status() != StatusCode::CONFLICT {
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            assert_eq!(response.headers()["content-type"], "application/pdf");
            return response.bytes().await.unwrap().to_vec();
        }
        let body = response.text().await.unwrap();
        assert!(body.contains("document_not_ready"), "{body}");
        assert!(
            Instant::now() < deadline,
            "no PDF at {path} within a minute"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The keys the local stand-in's documents bucket holds under `prefix` (moto answers
/// ListObjectsV2 without a signature).
async fn keys_under(prefix: &str) -> usize {
    let listing = reqwest::get(format!(
        "{}/{}?list-type=2&prefix={prefix}",
        billing_tests::aws_endpoint(),
        billing_infra::stack::DOCUMENTS_BUCKET
    ))
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    listing.matches("<Key>").count()
}

/// Issue 17's "done means": an invoice finalized on the local stack gets its PDF by way of
/// the bus's documents rule, the documents queue, the renderer and S3; the API and the
/// hosted page serve it; a redelivered event writes nothing; one object per document.
#[tokio::test]
async fn a_finalized_invoice_gets_its_pdf_through_the_local_stack() {
    use billing_app::ports::{DocumentRenderer, SystemClock};
    let store = billing_tests::dynamo_store().await;
    let table = store.table().to_owned();
    let sdk = billing_aws::Config::local(&table, billing_tests::aws_endpoint())
        .sdk_config()
        .await;
    billing_infra::stack::ensure(&sdk, &table).await.unwrap();
    // A webhook queue of its own; the documents queue is the stack's.
    let queue = format!("wh-{}", ulid::Ulid::new().to_string().to_lowercase());
    aws_sdk_sqs::Client::new(&sdk)
        .create_queue()
        .queue_name(&queue)
        .send()
        .await
        .unwrap();
    let local =
        billing_infra::workers::Local::with_queue(&sdk, &table, &queue, Arc::new(SystemClock))
            .await
            .unwrap();
    let _workers = local.spawn(1, Duration::from_millis(500));
    let (api, tenant) = Api::start(local.app.clone(), "Nimbus Local").await;
    // The logo goes to S3 with the upload; the renderer reads it back from there.
    put_logo(&api, "image/png", logo_fixture("logo.png")).await;

    let (draft, _) = two_line_invoice(&api).await;
    let id = draft["id"].as_str().unwrap();
    let pdf = wait_for_pdf(&api, &format!("/v1/invoices/{id}/pdf")).await;
    let invoice = api.get(&format!("/v1/invoices/{id}")).await;
    let number = invoice["number"].as_str().unwrap();
    assert_invoice_text(&billing_tests::pdf_text(&pdf), number);
    assert_eq!(billing_tests::pdf_images(&pdf), vec![(1, 320, 80)]);

    let url = api
        .created(&format!("/v1/invoices/{id}/hosted-link"), json!({}))
        .await["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let hosted = reqwest::get(format!("{url}/pdf")).await.unwrap();
    assert_eq!(hosted.status(), StatusCode::OK);
    assert_eq!(hosted.bytes().await.unwrap().to_vec(), pdf);

    // The event again (a redelivery): the record is found, nothing is written.
    let pipeline = local
        .app
        .documents
        .pipeline(local.objects.clone(), Arc::new(document_renderer::Pdfs));
    let again = pipeline
        .handle(&job(tenant.id, "invoice.finalized", id))
        .await
        .unwrap();
    let Rendered::Existing(document) = again else {
        panic!("a redelivery renders nothing: {again:?}");
    };
    assert_eq!(document.sha256, hex::encode(Sha256::digest(&pdf)));
    let prefix = format!("{}/test/invoices/{id}/", tenant.id);
    assert_eq!(keys_under(&prefix).await, 1);
    // Rendering it again in process gives the very same bytes (so the same key).
    let stored = local
        .app
        .store
        .get_invoice(tenant.id, InvoiceId::parse(id, "id").unwrap())
        .await
        .unwrap()
        .unwrap();
    let branding = local
        .app
        .store
        .branding(tenant.id)
        .await
        .unwrap()
        .unwrap_or_default();
    use billing_app::ports::ObjectStore;
    let logo = local
        .objects
        .get(&branding.logo.as_ref().unwrap().key)
        .await
        .unwrap();
    assert_eq!(
        document_renderer::Pdfs
            .invoice(&stored, &branding, logo.as_deref())
            .unwrap()
            .bytes,
        pdf
    );

    // A credit note takes the same way.
    api.post(
        &format!("/v1/invoices/{id}/mark-paid"),
        json!({"reference": "wire 7"}),
    )
    .await;
    api.post(
        &format!("/v1/invoices/{id}/void"),
        json!({"credit_to_balance": true}),
    )
    .await;
    let notes = api.list(&format!("/v1/credit-notes?invoice={id}")).await;
    let note = notes[0]["id"].as_str().unwrap();
    let note_pdf = wait_for_pdf(&api, &format!("/v1/credit-notes/{note}/pdf")).await;
    let text = billing_tests::pdf_text(&note_pdf);
    assert!(
        text.contains("CREDIT NOTE") && text.contains(number),
        "{text}"
    );
    assert_eq!(
        keys_under(&format!("{}/test/credit-notes/{note}/", tenant.id)).await,
        1
    );
}

billing_tests::on_both_stores!(
    pdfs_are_rendered_once_and_downloaded,
    the_logo_is_drawn_or_left_out_with_a_warning,
    branding_is_patched_field_by_field,
    bad_branding_is_refused_with_the_field_named,
    concurrent_updates_both_land,
);
