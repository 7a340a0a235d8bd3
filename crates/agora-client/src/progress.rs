//! One-line renderings of order events and bills, for terminals and logs (pure).

use agora_core::{AccountId, Amount};
use agora_proto::api::VerificationView;
use agora_proto::{OrderEvent, OrderState};

use crate::buyer::JobSummary;

/// A short form of an account id for progress lines.
pub fn short_account(account: &AccountId) -> String {
    let text = account.to_string();
    match text.char_indices().nth(12) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text,
    }
}

/// `+   12 ms  matched    by ag1234…  price 0.02 AGR/CU`: an event, `started_ms` being
/// when the buyer submitted.
pub fn event_line(event: &OrderEvent, started_ms: u64) -> String {
    let elapsed = event.at_ms.saturating_sub(started_ms);
    let mut line = format!("+{elapsed:>6} ms  {:<9}", event.state.name());
    if let Some(provider) = &event.provider {
        line.push_str(&format!("  by {}", short_account(provider)));
    }
    if !event.detail.is_empty() {
        line.push_str("  ");
        line.push_str(&event.detail);
    }
    line
}

/// The bill of a finished order, a few lines.
pub fn bill_lines(summary: &JobSummary) -> Vec<String> {
    let mut lines = vec![format!("order     {}", summary.order_id)];
    if let Some(task) = &summary.task {
        lines.push(format!(
            "task      {} {}/{}",
            task.job,
            task.index + 1,
            task.of
        ));
    }
    lines.push(format!("outcome   {}", summary.state));
    if let Some(provider) = &summary.provider {
        lines.push(format!("provider  {provider}"));
    }
    if let (Some(price), Some(cu)) = (summary.price, summary.compute_units) {
        lines.push(format!("price     {} per CU × {cu:.6} CU", Amount(price.0)));
    }
    lines.push(format!(
        "cost      {}   refunded {}",
        summary.cost, summary.refunded
    ));
    if let Some(latency) = summary.latency_ms {
        lines.push(format!(
            "latency   {latency} ms ({} attempt{})",
            summary.attempts,
            if summary.attempts == 1 { "" } else { "s" }
        ));
    }
    if let Some(code) = summary.exit_code {
        lines.push(format!("exit code {code}"));
    }
    if let Some(reason) = &summary.refund_reason {
        lines.push(format!("reason    {reason}"));
    }
    if let Some(line) = verification_line(&summary.verification, summary.state) {
        lines.push(line);
    }
    for output in &summary.outputs {
        lines.push(format!("output    {}", output.display()));
    }
    lines
}

/// How the result of an order now in `state` was checked, one line: policy, status, runs
/// and agreement, slashes. A refunded order's check is over: with no run delivered it
/// never ran (older markets left such a check `pending`).
pub fn verification_line(v: &VerificationView, state: OrderState) -> Option<String> {
    if v.policy.is_empty() {
        return None;
    }
    let status = match v.status.as_str() {
        "pending" | "failed" if state == OrderState::Refunded && v.runs.is_empty() => {
            "not run (refunded)"
        }
        "pending" if state == OrderState::Refunded => "failed",
        status => status,
    };
    let agreed = v.runs.iter().filter(|r| r.agreed == Some(true)).count();
    let mut line = format!("verify    {} — {status}", v.policy);
    if v.runs.len() > 1 {
        line.push_str(&format!(", {agreed} of {} runs agreed", v.runs.len()));
    }
    if v.audited == Some(false) {
        line.push_str(", not drawn for audit");
    }
    if !v.slashes.is_empty() {
        line.push_str(&format!(", {} provider(s) slashed", v.slashes.len()));
    }
    Some(line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_core::{Hash, Keypair, Price};
    use agora_proto::OrderState;

    #[test]
    fn event_lines_show_elapsed_state_provider_and_detail() {
        let provider = Keypair::from_seed("p").account();
        let event = OrderEvent {
            order_id: Hash::of(b"o"),
            state: OrderState::Matched,
            at_ms: 1_042,
            provider: Some(provider),
            detail: "price 20000000".into(),
        };
        let line = event_line(&event, 1_000);
        assert!(line.starts_with("+    42 ms  matched"), "{line}");
        assert!(line.contains(&short_account(&provider)), "{line}");
        assert!(line.ends_with("price 20000000"), "{line}");
        let early = OrderEvent {
            at_ms: 5,
            provider: None,
            detail: String::new(),
            ..event
        };
        assert_eq!(event_line(&early, 1_000), "+     0 ms  matched  ");
    }

    #[test]
    fn bills_name_the_reason_of_a_refund() {
        let summary = JobSummary {
            order_id: Hash::of(b"o"),
            task: None,
            state: OrderState::Refunded,
            provider: None,
            price: Some(Price(5)),
            compute_units: None,
            cost: Amount::ZERO,
            refunded: Amount(1_000),
            latency_ms: Some(3),
            attempts: 0,
            exit_code: None,
            stdout: None,
            stderr: None,
            refund_reason: Some("no provider offers region=mars".into()),
            outputs: Vec::new(),
            digest: None,
            verification: VerificationView::default(),
        };
        let lines = bill_lines(&summary);
        assert!(lines.iter().any(|l| l == "outcome   refunded"));
        assert!(lines.iter().any(|l| l.contains("region=mars")));
        assert!(lines.iter().any(|l| l.contains("0 attempts")));
        assert!(!lines.iter().any(|l| l.starts_with("exit code")));
    }

    #[test]
    fn a_refunded_orders_check_is_not_pending() {
        let mut v = VerificationView {
            policy: "adaptive".into(),
            status: "failed".into(),
            ..VerificationView::default()
        };
        let line = |v: &VerificationView, state| verification_line(v, state).unwrap();
        assert_eq!(
            line(&v, OrderState::Refunded),
            "verify    adaptive — not run (refunded)"
        );
        // What a market that left the check open reports reads the same.
        v.status = "pending".into();
        assert_eq!(
            line(&v, OrderState::Refunded),
            "verify    adaptive — not run (refunded)"
        );
        // Still open while the order is.
        assert_eq!(
            line(&v, OrderState::Running),
            "verify    adaptive — pending"
        );
        // Runs delivered but none accepted: the check failed.
        v.runs.push(agora_proto::api::RunView {
            provider: Keypair::from_seed("p").account(),
            digest: Hash::of(b"r"),
            fuel: agora_core::Fuel(1),
            price: Price(1),
            agreed: None,
            paid: Amount::ZERO,
        });
        assert_eq!(
            line(&v, OrderState::Refunded),
            "verify    adaptive — failed"
        );
        v.status = "verified".into();
        assert_eq!(
            line(&v, OrderState::Settled),
            "verify    adaptive — verified"
        );
    }
}
