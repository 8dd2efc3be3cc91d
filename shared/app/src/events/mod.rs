//! Events: the event log and the audit log as the API reads them, webhook endpoints and
//! their deliveries, and what happens to an event after its commit (fan-out to endpoints
//! and signed delivery: [`Fanout`]). Every other capability writes its events through the
//! store, in the transaction of the change they describe; none calls this service.

mod audit;
mod relay;
mod webhooks;

use std::sync::Arc;

pub use relay::{Fanout, FanoutReport};
pub use webhooks::{delivery_id, EndpointWithSecret};

use crate::kernel::Clocks;
use crate::ports::{AuditStore, EventStore};
use billing_domain::kernel::deployment::Deployment;

/// What the events service reads and writes.
pub trait EventsPorts: EventStore + AuditStore {}

impl<T> EventsPorts for T where T: EventStore + AuditStore {}

/// The events use cases. Depends on the kernel only.
#[derive(Clone)]
pub struct EventsService {
    store: Arc<dyn EventsPorts>,
    clocks: Clocks,
    /// Decides whether webhook endpoints may target the loopback host.
    deployment: Deployment,
}

impl EventsService {
    pub(crate) fn new(store: Arc<dyn EventsPorts>, clocks: Clocks, deployment: Deployment) -> Self {
        Self {
            store,
            clocks,
            deployment,
        }
    }
}
