//! Prepaid wallets (Lago's wallets): credits an account is granted or buys ahead, which
//! its invoices consume when they are finalized.

pub mod wallet;
