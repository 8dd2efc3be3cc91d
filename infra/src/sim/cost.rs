//! What a run costs at list prices ([`super::aws::price`]), exactly, in picodollars.

use super::aws::price;
use super::model::Counts;
use super::queues::MessagingCounts;
use super::LambdaCounts;

/// The requests and units a run used, by service.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub lambda_invocations: u64,
    pub lambda_billed_ms: u64,
    pub lambda_memory_mb: u64,
    pub write_units: u64,
    /// Read units in halves (an eventually consistent 4 KB read is one half).
    pub read_half_units: u64,
    pub sqs_standard: u64,
    pub sqs_fifo: u64,
    pub events: u64,
    pub http_api: u64,
}

impl Usage {
    pub fn of(dynamo: &Counts, messaging: &MessagingCounts, lambda: &LambdaCounts) -> Self {
        Self {
            lambda_invocations: lambda.invocations,
            lambda_billed_ms: lambda.billed_ms,
            lambda_memory_mb: super::LAMBDA_MEMORY_MB,
            write_units: dynamo.write_units,
            read_half_units: dynamo.read_half_units,
            sqs_standard: messaging.sqs_standard_requests,
            sqs_fifo: messaging.sqs_fifo_requests,
            events: messaging.events_published,
            // Renewals are made by the schedule, not through the API.
            http_api: 0,
        }
    }
}

/// Picodollars by service.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cost {
    pub lambda: u128,
    pub dynamodb: u128,
    pub sqs: u128,
    pub eventbridge: u128,
    pub api_gateway: u128,
}

impl Cost {
    pub fn of(usage: &Usage) -> Self {
        let gb_ms = u128::from(usage.lambda_billed_ms) * u128::from(usage.lambda_memory_mb);
        Self {
            lambda: u128::from(usage.lambda_invocations) * price::LAMBDA_REQUEST
                + gb_ms * price::LAMBDA_GB_SECOND / (1024 * 1000),
            dynamodb: u128::from(usage.write_units) * price::DYNAMODB_WRU
                + u128::from(usage.read_half_units) * price::DYNAMODB_RRU / 2,
            sqs: u128::from(usage.sqs_standard) * price::SQS_STANDARD
                + u128::from(usage.sqs_fifo) * price::SQS_FIFO,
            eventbridge: u128::from(usage.events) * price::EVENTBRIDGE_EVENT,
            api_gateway: u128::from(usage.http_api) * price::HTTP_API_REQUEST,
        }
    }

    pub fn total(&self) -> u128 {
        self.lambda + self.dynamodb + self.sqs + self.eventbridge + self.api_gateway
    }

    /// The same cost scaled to a million invoices, given it bought `invoices`.
    pub fn per_million(&self, invoices: u64) -> Self {
        let scale = |p: u128| p * 1_000_000 / u128::from(invoices.max(1));
        Self {
            lambda: scale(self.lambda),
            dynamodb: scale(self.dynamodb),
            sqs: scale(self.sqs),
            eventbridge: scale(self.eventbridge),
            api_gateway: scale(self.api_gateway),
        }
    }
}

/// Picodollars as dollars and cents, rounded half up to the cent.
pub fn dollars(pico: u128) -> String {
    let cents = (pico + 5_000_000_000) / 10_000_000_000;
    format!("${}.{:02}", cents / 100, cents % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Worked by hand from the list prices: 1,000 invoices that took 100 invocations of
    /// 1,000 billed ms at 256 MB, 20,000 write units, 4,000 read half-units, 300 standard
    /// and 200 FIFO SQS requests, 3,000 events.
    #[test]
    fn a_hand_computed_bill() {
        let usage = Usage {
            lambda_invocations: 100,
            lambda_billed_ms: 100_000,
            lambda_memory_mb: 256,
            write_units: 20_000,
            read_half_units: 4_000,
            sqs_standard: 300,
            sqs_fifo: 200,
            events: 3_000,
            http_api: 0,
        };
        let cost = Cost::of(&usage);
        // 100 × $0.0000002 = $0.00002; 100 s × 0.25 GB = 25 GB-s × $0.0000133334 = $0.000333335
        assert_eq!(cost.lambda, 20_000_000 + 333_335_000);
        // 20,000 × $0.000000625 = $0.0125; 2,000 RRU × $0.000000125 = $0.00025
        assert_eq!(cost.dynamodb, 12_500_000_000 + 250_000_000);
        // 300 × $0.0000004 + 200 × $0.0000005 = $0.00022
        assert_eq!(cost.sqs, 220_000_000);
        // 3,000 × $0.000001 = $0.003
        assert_eq!(cost.eventbridge, 3_000_000_000);
        assert_eq!(cost.api_gateway, 0);
        // $0.016323335 for 1,000 invoices: $16.323335 per million, $16.32 printed.
        let million = cost.per_million(1_000);
        assert_eq!(million.total(), 16_323_335_000_000);
        assert_eq!(dollars(million.total()), "$16.32");
        assert_eq!(dollars(5_000_000_000), "$0.01");
        assert_eq!(dollars(4_999_999_999), "$0.00");
    }
}
