use std::sync::Mutex;

use async_trait::async_trait;

use billing_app::ports::{Notification, Notifier, NotifyError};

/// A notifier that keeps what it is given, for tests; it can be made to fail.
#[derive(Default)]
pub struct MemoryNotifier {
    sent: Mutex<Vec<Notification>>,
    failure: Mutex<Option<NotifyError>>,
}

impl MemoryNotifier {
    /// Everything sent so far, in order.
    pub fn sent(&self) -> Vec<Notification> {
        self.sent.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Makes every send fail with `failure` (or succeed again with `None`).
    pub fn fail_with(&self, failure: Option<NotifyError>) {
        *self.failure.lock().unwrap_or_else(|e| e.into_inner()) = failure;
    }
}

#[async_trait]
impl Notifier for MemoryNotifier {
    async fn send(&self, notification: &Notification) -> Result<(), NotifyError> {
        if let Some(failure) = self
            .failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            return Err(failure);
        }
        self.sent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(notification.clone());
        Ok(())
    }
}
