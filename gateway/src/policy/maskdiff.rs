//! Mask plans compared: a candidate set's plan for one result set against the plan
//! that was applied to it (recorded, for replay; live, for shadow mode).
//!
//! A plan is compared column by column (the masks of every policy on a column, in
//! order) and by refusal, with the kinds `docs/recording.md` names: `mask_changed`,
//! `result_refused`, `result_unrefused` and `error`.

use std::time::{Duration, Instant};

use super::CallContext;
use super::bindings::portcullis::policy::types as wit;
use super::chain::PolicyChain;
use crate::recording::format::mask_name;

/// `(column, policy, mask name)` in plan order.
pub type Mask = (u32, String, String);

/// What a set's masking policies planned for one result set.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// The masks, in plan order.
    pub masks: Vec<Mask>,
    /// `(policy, message)` when a plan refused the result.
    pub refused: Option<(String, String)>,
    /// `(policy, failure)` when a policy failed (twice).
    pub error: Option<(String, String)>,
}

/// Plans `ctx` with the chain's masking policies in order, as the live filter does: a
/// refusal or a failure stops the plan. A failed call is tried once more before it
/// counts (a CPU deadline is measured in wall-clock ticks). `timed` gets each first
/// call's policy position in the chain, id and duration.
pub fn plan(
    chain: &PolicyChain,
    ctx: &wit::ResultContext,
    call: &CallContext,
    mut timed: impl FnMut(usize, &str, Duration),
) -> Plan {
    let mut out = Plan::default();
    for p in chain.mask_policies().iter() {
        let i = chain
            .policies()
            .iter()
            .position(|q| q.id() == p.id())
            .unwrap_or(0);
        let started = Instant::now();
        let mut planned = p.plan_masks(ctx, call);
        timed(i, p.id(), started.elapsed());
        if planned.is_err() {
            planned = p.plan_masks(ctx, call);
        }
        match planned {
            Err(f) => {
                out.error = Some((p.id().to_owned(), f.to_string()));
                break;
            }
            Ok(wit::MaskPlan {
                refuse: Some(d), ..
            }) => {
                out.refused = Some((p.id().to_owned(), d.message));
                break;
            }
            Ok(plan) => out.masks.extend(
                plan.columns
                    .iter()
                    .map(|c| (c.index, p.id().to_owned(), mask_name(&c.mask))),
            ),
        }
    }
    out
}

/// One difference between the applied plan and the candidate's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaskDiff {
    /// `mask_changed`, `result_refused`, `result_unrefused` or `error`.
    pub kind: &'static str,
    /// The result column (position), for `mask_changed`.
    pub column: Option<usize>,
    /// Before: the column's masks joined by `+` (or `none`), `served`, `refused`,
    /// `planned`.
    pub before: String,
    /// After, likewise (`failed` for an error).
    pub after: String,
    /// The policy responsible.
    pub policy: Option<String>,
    /// The candidate's refusal message or failure.
    pub detail: Option<String>,
}

/// The differences of `after` from the applied plan (`masks`, and the policy that
/// refused the result, if one did) over `n` columns. A failing candidate gives one
/// `error`; a result refused by both gives none.
pub fn compare(n: usize, masks: &[Mask], refused_by: Option<&str>, after: &Plan) -> Vec<MaskDiff> {
    let diff = |kind, before: &str, after: &str, policy: Option<&str>| MaskDiff {
        kind,
        column: None,
        before: before.to_owned(),
        after: after.to_owned(),
        policy: policy.map(str::to_owned),
        detail: None,
    };
    if let Some((policy, message)) = &after.error {
        let mut d = diff("error", "planned", "failed", Some(policy));
        d.detail = Some(message.clone());
        return vec![d];
    }
    let mut out = Vec::new();
    match (refused_by, &after.refused) {
        (None, Some((policy, message))) => {
            let mut d = diff("result_refused", "served", "refused", Some(policy));
            d.detail = Some(message.clone());
            return vec![d];
        }
        (Some(old), None) => out.push(diff("result_unrefused", "refused", "served", Some(old))),
        (Some(_), Some(_)) => return out,
        (None, None) => {}
    }
    let before = masks_by_column(n, masks);
    let planned = masks_by_column(n, &after.masks);
    for (i, (b, a)) in before.iter().zip(&planned).enumerate() {
        if b != a {
            let policy = after
                .masks
                .iter()
                .chain(masks.iter())
                .find(|(c, _, _)| *c as usize == i)
                .map(|(_, p, _)| p.as_str());
            let none = |s: &str| if s.is_empty() { "none" } else { s }.to_owned();
            let mut d = diff("mask_changed", &none(b), &none(a), policy);
            d.column = Some(i);
            out.push(d);
        }
    }
    out
}

/// The masks of a plan per column, joined by `+`.
fn masks_by_column(n: usize, masks: &[Mask]) -> Vec<String> {
    let mut v = vec![String::new(); n];
    for (c, _, m) in masks {
        if let Some(slot) = v.get_mut(*c as usize) {
            if !slot.is_empty() {
                slot.push('+');
            }
            slot.push_str(m);
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(c: u32, p: &str, m: &str) -> Mask {
        (c, p.into(), m.into())
    }

    #[test]
    fn masks_are_compared_per_column() {
        let v = masks_by_column(
            3,
            &[
                mask(1, "a", "email"),
                mask(1, "b", "null"),
                mask(7, "a", "null"),
            ],
        );
        assert_eq!(v, ["", "email+null", ""]);
    }

    #[test]
    fn plans_differ_by_column_and_refusal() {
        let live = [mask(1, "pii", "email"), mask(2, "pii", "digits:4")];
        let same = Plan {
            masks: live.to_vec(),
            ..Plan::default()
        };
        assert!(compare(3, &live, None, &same).is_empty());
        let stricter = Plan {
            masks: vec![mask(1, "pii", "email"), mask(2, "pii", "redact:***")],
            ..Plan::default()
        };
        let d = compare(3, &live, None, &stricter);
        assert_eq!(d.len(), 1);
        assert_eq!(
            (
                d[0].kind,
                d[0].column,
                d[0].before.as_str(),
                d[0].after.as_str()
            ),
            ("mask_changed", Some(2), "digits:4", "redact:***")
        );
        let unmasked = compare(3, &live, None, &Plan::default());
        assert_eq!(unmasked.len(), 2);
        assert!(unmasked.iter().all(|d| d.after == "none"));
        let refusing = Plan {
            refused: Some(("pii".into(), "no".into())),
            ..Plan::default()
        };
        let d = compare(3, &live, None, &refusing);
        assert_eq!((d.len(), d[0].kind), (1, "result_refused"));
        assert!(compare(3, &[], Some("pii"), &refusing).is_empty());
        let d = compare(3, &[], Some("pii"), &Plan::default());
        assert_eq!((d.len(), d[0].kind), (1, "result_unrefused"));
        let failing = Plan {
            error: Some(("pii".into(), "trap".into())),
            ..Plan::default()
        };
        assert_eq!(compare(3, &live, None, &failing)[0].kind, "error");
    }
}
