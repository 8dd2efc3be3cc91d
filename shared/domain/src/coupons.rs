//! Coupons and the discounts they make: a coupon holds the terms (percent or amount off, for
//! how many billing periods, how often it may be redeemed, until when, on which plans); each
//! redemption puts a [`discount::AppliedDiscount`] on a subscription, where it feeds the
//! invoice builder's discounts and counts down one billing period per period invoice. A
//! redemption on an account ([`account::AccountDiscounts`]) serves the period invoices of all
//! its subscriptions that carry no discount of their own.

pub mod account;
pub mod coupon;
pub mod discount;
