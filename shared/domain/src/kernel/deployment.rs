//! Where the platform runs. Some allowances exist only on a developer's machine: they are
//! decided by the deployment, never by a tenant's mode, so a sandbox tenant of a deployed
//! platform gets none of them.

/// Set explicitly by the local runner (`make dev`) and the tests; everything else, the
/// deployed functions included, is [`Deployment::Deployed`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Deployment {
    #[default]
    Deployed,
    Local,
}

impl Deployment {
    /// Webhooks may target the loopback host (127.0.0.0/8, ::1, `localhost`): a receiver
    /// on the developer's machine. In a deployed function the loopback is the function's
    /// own host (the Lambda Runtime API), so never there.
    pub fn allows_loopback(self) -> bool {
        self == Deployment::Local
    }
}
