//! The glue between the contract's exports and a [`Policy`]: settings parsing, the
//! configured-instance slot, fail-closed behaviour when a hook runs unconfigured.
//! Shared by the Wasm exports ([`crate::export_policy!`]) and the native
//! [`crate::testing::TestHost`], so unit tests exercise the same code path.

use std::cell::RefCell;

use crate::{
    ApprovalRequest, ApprovalRoute, CellBatch, Cells, Decision, Hook, MaskPlan, Metadata, Policy,
    Request, ResultContext, Row,
};

/// What every hook answers when `configure` has not succeeded on this instance.
pub const NOT_CONFIGURED: &str = "policy is not configured (configure was not called or failed)";

/// Implemented by [`crate::export_policy!`]: what the macro knows about the policy.
pub trait Exported: Policy {
    /// The policy crate's package name.
    const NAME: &'static str;
    /// The policy crate's version.
    const VERSION: &'static str;
    /// The hooks listed in the macro.
    const HOOKS: &'static [Hook];
}

/// Name and version of the crate, hooks from the macro (deduplicated, in contract
/// order), before [`Policy::metadata`] adjusts them.
pub fn default_metadata<P: Exported>() -> Metadata {
    Metadata {
        name: P::NAME.to_string(),
        version: P::VERSION.to_string(),
        hooks: Hook::ALL
            .iter()
            .copied()
            .filter(|h| P::HOOKS.contains(h))
            .collect(),
    }
}

/// The `metadata` export.
pub fn metadata<P: Exported>() -> Metadata {
    P::metadata(default_metadata::<P>())
}

/// Parses settings JSON. Empty text and `null` give `S::default()`; anything else must
/// deserialize, or the error reads `invalid settings: <what> at line L column C`.
pub fn parse_settings<S: serde::de::DeserializeOwned + Default>(json: &str) -> Result<S, String> {
    let trimmed = json.trim();
    if trimmed.is_empty() || trimmed == "null" {
        return Ok(S::default());
    }
    serde_json::from_str(json).map_err(|e| format!("invalid settings: {e}"))
}

/// The `configure` export: parse, construct, store. On failure the slot is left empty,
/// so every later hook fails closed.
pub fn configure<P: Policy>(slot: &RefCell<Option<P>>, settings_json: &str) -> Result<(), String> {
    route_panics_to_log();
    // Drop the previous value first: a failed re-configure must not keep old rules.
    *slot.borrow_mut() = None;
    let settings = parse_settings::<P::Settings>(settings_json)?;
    let policy = P::configure(settings)?;
    *slot.borrow_mut() = Some(policy);
    Ok(())
}

/// Sends panic messages to the gateway's log instead of stderr. Policies have no
/// stdio, and the log names the policy, so the author sees why it trapped.
fn route_panics_to_log() {
    #[cfg(target_arch = "wasm32")]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            std::panic::set_hook(Box::new(|info| {
                crate::log::error(format!("policy panicked: {info}"));
            }));
        });
    }
}

/// The `authorize` export; denies when unconfigured.
pub fn authorize<P: Policy>(slot: &RefCell<Option<P>>, req: &Request) -> Decision {
    match &*slot.borrow() {
        Some(p) => p.authorize(req),
        None => Decision::deny(NOT_CONFIGURED),
    }
}

/// The `plan-masks` export; refuses the result when unconfigured.
pub fn plan_masks<P: Policy>(slot: &RefCell<Option<P>>, ctx: &ResultContext) -> MaskPlan {
    match &*slot.borrow() {
        Some(p) => p.plan_masks(ctx),
        None => MaskPlan::refuse(NOT_CONFIGURED),
    }
}

/// The `mask-rows` export; fails when unconfigured.
pub fn mask_rows<P: Policy>(
    slot: &RefCell<Option<P>>,
    ctx: &ResultContext,
    rows: Vec<Row>,
) -> Result<Vec<Row>, String> {
    match &*slot.borrow() {
        Some(p) => p.mask_rows(ctx, rows),
        None => Err(NOT_CONFIGURED.to_string()),
    }
}

/// The `mask-cells` hook on a checked batch; fails when unconfigured.
pub fn mask_cells<P: Policy>(
    slot: &RefCell<Option<P>>,
    ctx: &ResultContext,
    cells: &Cells,
) -> Result<Cells, String> {
    match &*slot.borrow() {
        Some(p) => crate::cells::mask_checked(p, ctx, cells),
        None => Err(NOT_CONFIGURED.to_string()),
    }
}

/// The `mask-cells` hook on a batch as it crosses the boundary ([`Policy::mask_batch`]);
/// fails when unconfigured.
pub fn mask_batch<P: Policy>(
    slot: &RefCell<Option<P>>,
    ctx: &ResultContext,
    batch: CellBatch,
) -> Result<CellBatch, String> {
    match &*slot.borrow() {
        Some(p) => p.mask_batch(ctx, batch),
        None => Err(NOT_CONFIGURED.to_string()),
    }
}

/// The `mask-cells` export.
pub fn mask_cells_export<P: Policy>(
    slot: &RefCell<Option<P>>,
    ctx: &ResultContext,
    batch: crate::__bindings::CellBatch,
) -> Result<crate::__bindings::CellBatch, String> {
    let batch = CellBatch {
        columns: batch.columns,
        data: batch.data,
        lengths: batch.lengths,
    };
    let b = mask_batch(slot, ctx, batch)?;
    Ok(crate::__bindings::CellBatch {
        columns: b.columns,
        data: b.data,
        lengths: b.lengths,
    })
}

/// The `approve-hook` export; rejects when unconfigured.
pub fn approve<P: Policy>(slot: &RefCell<Option<P>>, req: &ApprovalRequest) -> ApprovalRoute {
    match &*slot.borrow() {
        Some(p) => p.approve(req),
        None => ApprovalRoute::auto_reject(NOT_CONFIGURED),
    }
}

/// Maps a hook name in [`crate::export_policy!`] to a [`Hook`]; anything else is a
/// compile error naming the accepted names.
#[doc(hidden)]
#[macro_export]
macro_rules! __portcullis_hook {
    (authorize) => {
        $crate::Hook::Authorize
    };
    (mask) => {
        $crate::Hook::Mask
    };
    (plan_masks) => {
        $crate::Hook::Mask
    };
    (mask_rows) => {
        $crate::Hook::Mask
    };
    (approve) => {
        $crate::Hook::Approve
    };
    ($other:ident) => {
        ::core::compile_error!(::core::concat!(
            "unknown hook `",
            ::core::stringify!($other),
            "`: expected `authorize`, `mask` or `approve`"
        ))
    };
}

/// The component exports for a policy type (Wasm builds only).
#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
#[macro_export]
macro_rules! __portcullis_wasm_exports {
    ($policy:ty) => {
        ::std::thread_local! {
            static __PORTCULLIS_INSTANCE: ::core::cell::RefCell<::core::option::Option<$policy>> =
                const { ::core::cell::RefCell::new(::core::option::Option::None) };
        }

        struct __PortcullisExports;

        impl $crate::__bindings::Guest for __PortcullisExports {
            fn metadata() -> $crate::__bindings::Metadata {
                $crate::__private::metadata::<$policy>().into()
            }

            fn configure(
                settings: ::std::string::String,
            ) -> ::core::result::Result<(), ::std::string::String> {
                __PORTCULLIS_INSTANCE.with(|s| $crate::__private::configure::<$policy>(s, &settings))
            }

            fn authorize(req: $crate::__bindings::Request) -> $crate::__bindings::Decision {
                let req: $crate::Request = req.into();
                __PORTCULLIS_INSTANCE
                    .with(|s| $crate::__private::authorize::<$policy>(s, &req))
                    .into()
            }

            fn plan_masks(ctx: $crate::__bindings::ResultContext) -> $crate::__bindings::MaskPlan {
                let ctx: $crate::ResultContext = ctx.into();
                __PORTCULLIS_INSTANCE
                    .with(|s| $crate::__private::plan_masks::<$policy>(s, &ctx))
                    .into()
            }

            fn mask_rows(
                ctx: $crate::__bindings::ResultContext,
                rows: ::std::vec::Vec<$crate::Row>,
            ) -> ::core::result::Result<::std::vec::Vec<$crate::Row>, ::std::string::String> {
                let ctx: $crate::ResultContext = ctx.into();
                __PORTCULLIS_INSTANCE.with(|s| $crate::__private::mask_rows::<$policy>(s, &ctx, rows))
            }

            fn mask_cells(
                ctx: $crate::__bindings::ResultContext,
                batch: $crate::__bindings::CellBatch,
            ) -> ::core::result::Result<$crate::__bindings::CellBatch, ::std::string::String> {
                let ctx: $crate::ResultContext = ctx.into();
                __PORTCULLIS_INSTANCE
                    .with(|s| $crate::__private::mask_cells_export::<$policy>(s, &ctx, batch))
            }

            fn approve_hook(
                req: $crate::__bindings::ApprovalRequest,
            ) -> $crate::__bindings::ApprovalRoute {
                let req: $crate::ApprovalRequest = req.into();
                __PORTCULLIS_INSTANCE
                    .with(|s| $crate::__private::approve::<$policy>(s, &req))
                    .into()
            }
        }

        $crate::__bindings::export_inner!(__PortcullisExports with_types_in $crate::__bindings);
    };
}

/// Native builds export nothing: the policy is exercised through
/// [`crate::testing::TestHost`].
#[cfg(not(target_arch = "wasm32"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __portcullis_wasm_exports {
    ($policy:ty) => {};
}

// Native only: the tests read the captured logs.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use serde::Deserialize;

    use super::NOT_CONFIGURED;
    use crate::testing::{
        ApprovalRequestBuilder, RequestBuilder, ResultContextBuilder, TestHost, take_logs,
    };
    use crate::*;

    #[derive(Deserialize, Default)]
    #[serde(default, deny_unknown_fields)]
    struct Settings {
        greeting: String,
        fail: bool,
    }

    struct Minimal {
        greeting: String,
    }

    impl Policy for Minimal {
        type Settings = Settings;

        fn configure(s: Settings) -> Result<Self, String> {
            if s.fail {
                return Err("asked to fail".into());
            }
            log::info!("greeting is {:?}", s.greeting);
            Ok(Minimal {
                greeting: s.greeting,
            })
        }

        fn metadata(defaults: Metadata) -> Metadata {
            Metadata {
                name: "minimal".into(),
                ..defaults
            }
        }
    }

    crate::export_policy!(Minimal, hooks: [approve, mask_rows, authorize, plan_masks,]);

    struct Silent;

    impl Policy for Silent {
        type Settings = NoSettings;

        fn configure(_: NoSettings) -> Result<Self, String> {
            Ok(Silent)
        }
    }

    #[test]
    fn settings_parse_defaults_and_errors() {
        for empty in ["", "  ", "null", "{}"] {
            let h = TestHost::<Minimal>::with_json(empty).unwrap();
            h.with_policy(|p| assert_eq!(p.unwrap().greeting, ""));
        }
        let h = TestHost::<Minimal>::with_json(r#"{"greeting": "hi"}"#).unwrap();
        h.with_policy(|p| assert_eq!(p.unwrap().greeting, "hi"));
        assert_eq!(
            take_logs(),
            vec![
                (LogLevel::Info, r#"greeting is """#.to_string()),
                (LogLevel::Info, r#"greeting is """#.to_string()),
                (LogLevel::Info, r#"greeting is """#.to_string()),
                (LogLevel::Info, r#"greeting is """#.to_string()),
                (LogLevel::Info, r#"greeting is "hi""#.to_string()),
            ]
        );
        let e = TestHost::<Minimal>::with_json("{\n  \"greting\": 1\n}")
            .err()
            .unwrap();
        assert_eq!(
            e,
            "invalid settings: unknown field `greting`, expected `greeting` or `fail` at line 2 column 11"
        );
        let e = TestHost::<Minimal>::with_json(r#"{"fail": true}"#)
            .err()
            .unwrap();
        assert_eq!(e, "asked to fail");
        assert!(TestHost::<Silent>::with_json("{}").is_ok());
        assert!(TestHost::<Silent>::with_json("null").is_ok());
        let e = TestHost::<Silent>::with_json(r#"{"x": 1}"#).err().unwrap();
        assert_eq!(
            e,
            "invalid settings: unknown setting `x`: this policy takes no settings at line 1 column 4"
        );
        assert!(TestHost::<Silent>::with_json("[]").is_err());
    }

    #[test]
    fn unconfigured_hooks_fail_closed() {
        let h = TestHost::<Minimal>::new();
        let req = RequestBuilder::new("alice").build();
        let ctx = ResultContextBuilder::new("alice").build();
        assert_eq!(h.authorize(&req), Decision::deny(NOT_CONFIGURED));
        assert_eq!(h.plan_masks(&ctx), MaskPlan::refuse(NOT_CONFIGURED));
        assert_eq!(h.mask_rows(&ctx, vec![]), Err(NOT_CONFIGURED.to_string()));
        let areq = ApprovalRequestBuilder::new(req.clone(), "why").build();
        assert_eq!(h.approve(&areq), ApprovalRoute::auto_reject(NOT_CONFIGURED));
        // A failed configure empties a configured host again.
        h.configure_json("{}").unwrap();
        assert!(h.authorize(&req).is_allow());
        assert!(h.configure_json(r#"{"fail": true}"#).is_err());
        assert!(h.authorize(&req).is_deny());
    }

    #[test]
    fn default_hooks() {
        let h = TestHost::<Minimal>::with_json("{}").unwrap();
        let req = RequestBuilder::new("alice").build();
        assert_eq!(h.authorize(&req), Decision::Allow);
        let ctx = ResultContextBuilder::new("alice")
            .direct_column("public", "customers", "email")
            .build();
        assert_eq!(ctx.columns[0].index, 0);
        assert!(h.plan_masks(&ctx).is_empty());
        assert!(h.mask_rows(&ctx, vec![vec![Some("x".into())]]).is_err());
        let routed = ApprovalRequestBuilder::new(req.clone(), "drop")
            .approvers(["group:dba"])
            .build();
        assert_eq!(
            h.approve(&routed),
            ApprovalRoute::Route(ApprovalRouting {
                approvers: vec!["group:dba".into()],
                required_approvals: 1,
                ttl_seconds: 3600,
                channel: None,
            })
        );
        let nobody = ApprovalRequestBuilder::new(req, "drop").build();
        assert!(matches!(h.approve(&nobody), ApprovalRoute::AutoReject(_)));
    }

    #[test]
    fn metadata_from_the_macro_and_the_override() {
        let m = TestHost::<Minimal>::new().metadata();
        assert_eq!(m.name, "minimal");
        assert_eq!(m.version, env!("CARGO_PKG_VERSION"));
        // Deduplicated, in contract order.
        assert_eq!(m.hooks, vec![Hook::Authorize, Hook::Mask, Hook::Approve]);
        assert_eq!(super::default_metadata::<Minimal>().name, "portcullis-sdk");
    }

    #[test]
    fn helpers() {
        let plan = MaskPlan::none()
            .mask(0, MaskFunction::Email)
            .mask(2, MaskFunction::partial(1, 2, "*"));
        assert_eq!(plan.columns.len(), 2);
        assert_eq!(
            MaskPlan::refuse_with("42501", "no")
                .refuse
                .unwrap()
                .sqlstate(),
            "42501"
        );
        let d = Decision::require_approval("risky", ["group:dba", "user:bob"]);
        assert!(!d.is_allow() && !d.is_deny() && d.denial().is_none());
        let r = ApprovalRouting::new(["group:dba"])
            .approvals(2)
            .ttl_seconds(60)
            .channel("slack");
        assert_eq!((r.required_approvals, r.ttl_seconds), (2, 60));
        let s = RequestBuilder::new("a")
            .function("pg_catalog.pg_read_file")
            .table("public.secrets", Access::Read)
            .build()
            .statement;
        assert!(s.calls_function("pg_read_file") && !s.calls_function("pg_read"));
        let p = TablePattern::parse("secrets").unwrap();
        assert_eq!(s.tables_matching(&p).count(), 1);
        assert_eq!(
            Provenance::Derived(vec![ColumnSource::new("public", "t", "a")])
                .sources()
                .len(),
            1
        );
    }
}
