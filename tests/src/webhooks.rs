//! Webhook test helpers: a receiver that checks signatures, and a dispatcher that records
//! instead of sending, so a test can play the queue itself.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use billing_app::ports::{DeliveryJob, Dispatch, StoreError};
use billing_domain::events::record::DomainEvent;
use billing_domain::events::webhook;
use billing_domain::kernel::ids::TenantId;
use jiff::{SignedDuration, Timestamp};
use serde_json::Value;

/// A webhook receiver: answers with the scripted statuses (then 200), records every
/// request, and checks each signature against the secrets it is told about.
#[derive(Clone, Default)]
pub struct Receiver {
    pub script: Arc<Mutex<Vec<u16>>>,
    pub received: Arc<Mutex<Vec<(HeaderMap, String)>>>,
}

impl Receiver {
    pub async fn start(script: Vec<u16>) -> (Self, String) {
        let receiver = Receiver {
            script: Arc::new(Mutex::new(script)),
            ..Default::default()
        };
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (receiver, url)
    }

    pub fn bodies(&self) -> Vec<Value> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .map(|(_, b)| serde_json::from_str(b).unwrap())
            .collect()
    }

    /// Every request carried a valid, fresh signature made with `secret`.
    pub fn assert_signed_with(&self, secret: &str) {
        for (headers, body) in self.received.lock().unwrap().iter() {
            let header = headers[webhook::SIGNATURE_HEADER].to_str().unwrap();
            assert!(header.starts_with("t="), "{header}");
            webhook::verify(
                header,
                body.as_bytes(),
                secret,
                Timestamp::now().as_second(),
                300,
            )
            .unwrap_or_else(|e| panic!("{e}: {header}"));
        }
    }

    pub async fn wait_for(&self, count: usize) {
        for _ in 0..200 {
            if self.received.lock().unwrap().len() >= count {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "expected {count} deliveries, got {}",
            self.received.lock().unwrap().len()
        );
    }
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: String) -> StatusCode {
    r.received.lock().unwrap().push((headers, body));
    let mut script = r.script.lock().unwrap();
    let status = if script.is_empty() {
        200
    } else {
        script.remove(0)
    };
    StatusCode::from_u16(status).unwrap()
}

/// Records what would go to the bus and queue, so a test can play the queue itself.
#[derive(Default)]
pub struct RecordingDispatch {
    pub published: Mutex<Vec<(TenantId, DomainEvent)>>,
    pub scheduled: Mutex<Vec<(DeliveryJob, SignedDuration)>>,
}

#[async_trait]
impl Dispatch for RecordingDispatch {
    async fn publish(&self, tenant: TenantId, events: &[DomainEvent]) -> Result<(), StoreError> {
        let mut published = self.published.lock().unwrap();
        published.extend(events.iter().map(|e| (tenant, e.clone())));
        Ok(())
    }

    async fn schedule_delivery(
        &self,
        job: &DeliveryJob,
        delay: SignedDuration,
    ) -> Result<(), StoreError> {
        self.scheduled.lock().unwrap().push((job.clone(), delay));
        Ok(())
    }
}
