//! Credits: an account's balance per currency, the lots of credit it is made of (grants,
//! adjustments, what an invoice left over) and the append-only ledger of every movement.

pub mod balance;
