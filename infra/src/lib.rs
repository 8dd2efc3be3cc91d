//! The local stack: the AWS stand-in (moto in server mode), the resources the functions
//! expect on it, the functions' environment on it, one function invoked through `cargo
//! lambda` (`make invoke`), and a table snapshot so `make dev` keeps its data between runs;
//! the simulation of AWS ([`sim`]) and the fault campaign over the billing flows ([`campaign`]).

pub mod campaign;
pub mod function_env;
pub mod invoke;
pub mod mailbox;
pub mod moto;
pub mod readme;
pub mod request_count;
pub mod sim;
pub mod snapshot;
pub mod stack;
pub mod workers;
