//! # Portcullis policy SDK
//!
//! Write a Portcullis governance policy as plain Rust: implement [`Policy`] for a type,
//! export it with [`export_policy!`], build for `wasm32-wasip2`, and the result is a
//! WebAssembly component implementing the `portcullis:policy` contract
//! (`wit/policy.wit`). The component-model bindings stay inside this crate: a policy
//! sees ordinary Rust types ([`Request`], [`Decision`], [`MaskPlan`], ...), which also
//! work natively, so the policy's logic is unit-tested with `cargo test` and the
//! [`testing`] harness, without Wasm.
//!
//! ## A complete policy
//!
//! `Cargo.toml`:
//!
//! ```toml
//! [package]
//! name = "no-schema-changes"
//! version = "0.1.0"
//! edition = "2024"
//!
//! [lib]
//! crate-type = ["cdylib", "rlib"]   # cdylib: the component; rlib: native tests
//!
//! [dependencies]
//! portcullis-sdk = { path = "../../sdk" }
//! serde = { version = "1", features = ["derive"] }
//! ```
//!
//! `src/lib.rs`:
//!
//! ```
//! use portcullis_sdk::{log, Decision, Policy, Request, StatementKind};
//! use serde::Deserialize;
//!
//! /// Settings arrive as JSON from the policy's manifest entry.
//! #[derive(Deserialize, Default)]
//! #[serde(default, deny_unknown_fields)]
//! pub struct Settings {
//!     /// Groups that may change table definitions.
//!     ddl_groups: Vec<String>,
//!     /// Require approval instead of denying.
//!     approval: bool,
//! }
//!
//! pub struct NoSchemaChanges {
//!     settings: Settings,
//! }
//!
//! impl Policy for NoSchemaChanges {
//!     type Settings = Settings;
//!
//!     fn configure(settings: Settings) -> Result<Self, String> {
//!         if settings.approval && settings.ddl_groups.is_empty() {
//!             return Err("approval needs at least one group in ddl_groups".into());
//!         }
//!         log::info!("{} groups may change schemas", settings.ddl_groups.len());
//!         Ok(NoSchemaChanges { settings })
//!     }
//!
//!     fn authorize(&self, req: &Request) -> Decision {
//!         let ddl = matches!(
//!             req.statement.kind,
//!             StatementKind::CreateTable | StatementKind::Alter | StatementKind::Drop
//!         );
//!         if !ddl || req.identity.in_any_group(&self.settings.ddl_groups) {
//!             return Decision::Allow;
//!         }
//!         if self.settings.approval {
//!             let approvers = self.settings.ddl_groups.iter().map(|g| format!("group:{g}"));
//!             Decision::require_approval("schema change", approvers)
//!         } else {
//!             Decision::deny(format!("{} is reserved to the DBAs", req.statement.kind.sql_words()))
//!         }
//!     }
//! }
//!
//! // The component's exports (only in a wasm32 build) and its metadata: name and version
//! // from Cargo.toml, hooks as listed.
//! portcullis_sdk::export_policy!(NoSchemaChanges, hooks: [authorize]);
//!
//! // Native unit tests (normally in a `#[cfg(test)]` module): same code, no Wasm.
//! # fn main() -> Result<(), String> {
//! use portcullis_sdk::testing::{RequestBuilder, TestHost};
//!
//! let host = TestHost::<NoSchemaChanges>::with_json(r#"{"ddl_groups": ["dba"]}"#)?;
//! let drop = RequestBuilder::new("alice")
//!     .groups(["analysts"])
//!     .sql("DROP TABLE customers")
//!     .kind(StatementKind::Drop)
//!     .table("customers", portcullis_sdk::Access::Ddl);
//! assert_eq!(
//!     host.authorize(&drop.clone().build()),
//!     Decision::deny("DROP is reserved to the DBAs")
//! );
//! assert!(host.authorize(&drop.user("bob").groups(["dba"]).build()).is_allow());
//! assert_eq!(host.metadata().hooks, [portcullis_sdk::Hook::Authorize]);
//! # Ok(())
//! # }
//! ```
//!
//! To run the *built* component through the real host (same engine, sandbox and
//! limits as the gateway, and the gateway's own SQL analysis), use
//! `portcullis::policy::harness::Harness` from a test in a crate that depends on
//! `portcullis`: `Harness::load(&[path], &[settings_json])?.decide(&who, "db", sql)`.
//!
//! Build the component (the workspace's `policy` profile: size-optimised, LTO):
//!
//! ```sh
//! cargo build --profile policy --target wasm32-wasip2 -p no-schema-changes
//! # -> target/wasm32-wasip2/policy/no_schema_changes.wasm
//! ```
//!
//! ## How the pieces fit
//!
//! - [`Policy::configure`] runs once per component instance with the settings from the
//!   manifest (JSON). The SDK parses them with serde (empty text or `null` give
//!   `Settings::default()`), calls `configure`, and keeps the returned value for the
//!   hooks. A failed `configure` rejects the policy at load time; a later configure
//!   replaces the value.
//! - Each hook (`authorize`, `plan_masks` + `mask_cells` / `mask_rows`, `approve`) has
//!   a default; list
//!   the hooks you implement in [`export_policy!`] — the gateway calls only those.
//! - A hook that runs before a successful `configure` fails closed (deny / refuse /
//!   error / auto-reject).
//! - A panic traps the component; the gateway then denies the statement. Prefer
//!   returning a [`Decision`].
//! - Inside the component there is no filesystem, network, clock or environment;
//!   logging goes through [`log`].

#![warn(missing_docs)]

mod cells;
mod convert;
pub mod log;
mod runtime;
pub mod testing;
mod types;

/// serde, re-exported for `#[derive(Deserialize)]` on settings without a direct
/// dependency: `#[derive(portcullis_sdk::serde::Deserialize)]
/// #[serde(crate = "portcullis_sdk::serde")]`.
pub use cells::{CellBatch, CellMask, CellWriter, Cells};
pub use serde;
pub use types::*;

/// The generated component-model bindings. Not part of the API: the SDK's types and
/// [`export_policy!`] are.
#[doc(hidden)]
#[allow(missing_docs, clippy::all)]
pub mod __bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "policy",
        pub_export_macro: true,
        export_macro_name: "export_inner",
        default_bindings_module: "portcullis_sdk::__bindings",
    });
}

/// Used by [`export_policy!`]; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use crate::runtime::*;
}

/// A governance policy.
///
/// Implement this for the type holding your policy's configured state, then export it
/// with [`export_policy!`]. Every hook has a default, so implement only what the policy
/// does, and list those hooks in the macro.
///
/// Inside the component a policy value lives for the life of its instance; the gateway
/// may run several instances at once, each configured with the same settings, so keep
/// no state that must be shared between statements.
pub trait Policy: Sized + 'static {
    /// The policy's settings, deserialized from the manifest's JSON. Use
    /// `#[serde(default, deny_unknown_fields)]` so that a misspelt key is an error at
    /// load time rather than a rule that silently never applies.
    type Settings: serde::de::DeserializeOwned + Default;

    /// Validates the settings and builds the policy. An `Err` rejects the policy at load
    /// time, with the message shown to the operator.
    fn configure(settings: Self::Settings) -> Result<Self, String>;

    /// What the policy says about itself. `defaults` holds the crate's name and version
    /// and the hooks listed in [`export_policy!`]; override to rename the policy.
    fn metadata(defaults: Metadata) -> Metadata {
        defaults
    }

    /// Decides one statement (hook `authorize`). Default: allow.
    ///
    /// Called once per statement; a multi-statement string arrives as several calls
    /// ([`Statement::index`], [`Statement::multi_statement`]).
    fn authorize(&self, req: &Request) -> Decision {
        let _ = req;
        Decision::Allow
    }

    /// Plans masking for one result set (hook `mask`). Default: mask nothing.
    fn plan_masks(&self, ctx: &ResultContext) -> MaskPlan {
        let _ = ctx;
        MaskPlan::none()
    }

    /// Masks a batch of rows holding only the [`MaskFunction::Custom`] columns of the
    /// plan, in plan order (hook `mask`). Return as many rows as given, each as long as
    /// given. Default: an error (the gateway then fails the result), because a plan
    /// with `custom` columns and no `mask_rows` would otherwise leak them.
    fn mask_rows(&self, ctx: &ResultContext, rows: Vec<Row>) -> Result<Vec<Row>, String> {
        let _ = (ctx, rows);
        Err("mask_rows is not implemented by this policy".to_string())
    }

    /// Masks a packed batch of the [`MaskFunction::Custom`] cells of the plan (hook
    /// `mask`; the contract's `mask-cells`, since 0.3.0, which the gateway calls
    /// instead of `mask-rows`): write one value per cell of `cells` into `out`, in
    /// order. The batch is one string and one list of lengths, so nothing is
    /// allocated per cell; [`Cells::mask_each`] is the usual way to write it:
    ///
    /// ```
    /// # use portcullis_sdk::*;
    /// # struct Initials;
    /// # impl Policy for Initials {
    /// #     type Settings = NoSettings;
    /// #     fn configure(_: NoSettings) -> Result<Self, String> { Ok(Initials) }
    /// fn mask_cells(&self, _ctx: &ResultContext, cells: &Cells, out: &mut CellWriter) -> Result<(), String> {
    ///     cells.mask_each(out, |_column, value, buf| {
    ///         for word in value.split_whitespace() {
    ///             if !buf.is_empty() {
    ///                 buf.push(' ');
    ///             }
    ///             buf.extend(word.chars().next());
    ///             buf.push('.');
    ///         }
    ///         Ok(CellMask::Value)
    ///     })
    /// }
    /// # }
    /// ```
    ///
    /// Default: unpacks the batch into rows, calls [`Policy::mask_rows`] and packs its
    /// answer, so a policy that implements only `mask_rows` keeps working unchanged
    /// (at the cost of a string per cell inside the component). Computing what the
    /// columns need once per call (from `ctx`), not once per cell, keeps it fast.
    fn mask_cells(
        &self,
        ctx: &ResultContext,
        cells: &Cells,
        out: &mut CellWriter,
    ) -> Result<(), String> {
        let rows = self.mask_rows(ctx, cells.to_rows())?;
        out.push_rows(&rows);
        Ok(())
    }

    /// The `mask-cells` export as it crosses the boundary: the gateway's batch,
    /// unchecked, and the answer, which the gateway checks strictly (same `columns`,
    /// one length per cell, lengths in bounds adding up to the data, UTF-8 cells) and
    /// refuses the result otherwise. Default: checks the batch, runs
    /// [`Policy::mask_cells`] and packs its answer. Override only to work on the raw
    /// buffers (or, in tests, to send the gateway a malformed answer).
    fn mask_batch(&self, ctx: &ResultContext, batch: CellBatch) -> Result<CellBatch, String> {
        let cells = batch.into_cells()?;
        Ok(cells::mask_checked(self, ctx, &cells)?.into())
    }

    /// Routes an approval request (hook `approve`). Default: wait for the approvers
    /// `authorize` suggested (one approval, valid for an hour), or reject at once when it
    /// suggested none.
    fn approve(&self, req: &ApprovalRequest) -> ApprovalRoute {
        if req.approvers.is_empty() {
            ApprovalRoute::auto_reject("no approvers were named for this request")
        } else {
            ApprovalRoute::route(req.approvers.iter().cloned())
        }
    }
}

/// Exports a [`Policy`] as the component's `policy` world.
///
/// ```
/// # use portcullis_sdk::Policy;
/// # struct Audit;
/// # impl Policy for Audit {
/// #     type Settings = portcullis_sdk::NoSettings;
/// #     fn configure(_: portcullis_sdk::NoSettings) -> Result<Self, String> { Ok(Audit) }
/// # }
/// portcullis_sdk::export_policy!(Audit, hooks: [authorize, mask]);
/// ```
///
/// `hooks` lists what the policy implements and becomes [`Metadata::hooks`]; the
/// gateway calls only those: `authorize`, `mask` (for `plan_masks` and `mask_rows`;
/// those two names are accepted too) and `approve`. The name and version in
/// [`Metadata`] come from the calling crate's `Cargo.toml`.
///
/// Use it once per component crate, at the crate root or in any module. In a `wasm32`
/// build it emits the component's exports; in a native build it emits only what the
/// [`testing::TestHost`] needs (so `cargo test` links no Wasm exports).
#[macro_export]
macro_rules! export_policy {
    ($policy:ty, hooks: [$($hook:ident),* $(,)?] $(,)?) => {
        const _: () = {
            impl $crate::__private::Exported for $policy {
                const NAME: &'static str = ::core::env!("CARGO_PKG_NAME");
                const VERSION: &'static str = ::core::env!("CARGO_PKG_VERSION");
                const HOOKS: &'static [$crate::Hook] = &[$($crate::__portcullis_hook!($hook)),*];
            }

            $crate::__portcullis_wasm_exports!($policy);
        };
    };
}
