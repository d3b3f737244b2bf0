//! The policy runtime: WebAssembly policy components behind the [`Gate`] seam.
//!
//! A policy is a component implementing the `portcullis:policy` world (`wit/policy.wit`).
//! The gateway compiles each one once (cached on disk, keyed by the artifact's digest
//! and the engine's compatibility hash), keeps a small pool of warm instances per
//! policy and calls `authorize` for every statement through a [`PolicyChain`].
//!
//! Policies run sandboxed and fail closed:
//! - no filesystem, network, environment, arguments or stdio; clocks read zero and
//!   cannot be waited on (see [`engine`]);
//! - a CPU deadline per call (epoch interruption, 1 ms ticks) and a linear-memory cap
//!   per instance;
//! - a trap, timeout, exhausted memory or oversized result denies the statement, and
//!   the instance is discarded (a trapped instance can never be entered again); the
//!   next call gets a fresh, freshly configured instance;
//! - a policy that fails to load stops the gateway from starting.
//!
//! [`Gate`]: crate::pipeline::Gate

pub mod bench;
pub mod cache;
pub mod candidate;
pub mod chain;
pub mod context;
pub mod decision_cache;
pub mod engine;
pub mod evaluate;
pub mod harness;
pub mod instance;
pub mod load;
pub mod maskdiff;
pub mod memo;
pub mod metrics;
pub mod packed;
pub mod reload;
pub mod replay;
pub mod request;
pub mod request_json;
pub mod scaffold;
pub mod shadow;

use std::path::PathBuf;

pub use cache::{CacheOutcome, CacheStats, CompileCache};
pub use chain::{LoadedPolicy, PolicyChain, PolicyMetadata};
pub use context::CallContext;
pub use engine::PolicyRuntime;
pub use instance::{CallFailure, FailureKind, InstancePool, PolicyLimits};
pub use load::{load_chain, load_chain_with, load_policy};
pub use metrics::PolicyMetrics;

/// Generated bindings for the `policy` world, without the exports a minor added
/// later than 0.1.0: bindgen's `PolicyPre::new` requires every export of the world it
/// binds, so the host binds this world (the 0.1.0 exports, with the newest types and
/// imports) and looks up later exports by name (see [`packed`] for `mask-cells`, 0.3.0,
/// and [`request_json`] for `authorize-json`, 0.4.0).
pub mod bindings {
    #![allow(missing_docs)]
    wasmtime::component::bindgen!({
        path: "../wit",
        inline: "
            package portcullis:host;

            /// `portcullis:policy/policy@0.4.0` without `mask-cells`.
            world policy {
                use portcullis:policy/types@0.4.0.{metadata, request, decision, result-context, mask-plan, row, approval-request, approval-route, log-level};
                import log: func(level: log-level, message: string);
                import portcullis:policy/context@0.4.0;
                export metadata: func() -> metadata;
                export configure: func(settings: string) -> result<_, string>;
                export authorize: func(req: request) -> decision;
                export plan-masks: func(ctx: result-context) -> mask-plan;
                export mask-rows: func(ctx: result-context, rows: list<row>) -> result<list<row>, string>;
                export approve-hook: func(req: approval-request) -> approval-route;
            }
        ",
        world: "portcullis:host/policy",
    });
}

/// The `context` interface of contract 0.2.0, which components built against 0.2.0
/// import under its own version (`portcullis:policy/context@0.2.0`; semver does not
/// match 0.2 with 0.3). The linker gives it the same answers as the newest one.
pub mod bindings_v0_2 {
    #![allow(missing_docs)]
    wasmtime::component::bindgen!({
        path: "../wit/archive/0.2.0",
        inline: "
            package portcullis:host-compat;

            /// The imports of contract 0.2.0 that later minors renamed by version.
            world imports {
                import portcullis:policy/context@0.2.0;
            }
        ",
        world: "portcullis:host-compat/imports",
    });
}

/// The `context` interface of contract 0.3.0, which components built against 0.3.0
/// import under its own version (`portcullis:policy/context@0.3.0`; semver does not
/// match 0.3 with 0.4). The linker gives it the same answers as the newest one.
pub mod bindings_v0_3 {
    #![allow(missing_docs)]
    wasmtime::component::bindgen!({
        path: "../wit/archive/0.3.0",
        inline: "
            package portcullis:host-compat-v0-3;

            /// The imports of contract 0.3.0 that later minors renamed by version.
            world imports {
                import portcullis:policy/context@0.3.0;
            }
        ",
        world: "portcullis:host-compat-v0-3/imports",
    });
}

/// Why a policy could not be loaded (each one stops the gateway from starting).
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The component file could not be read.
    #[error("policy \"{id}\" ({key}): cannot read {path}: {source}")]
    Read {
        /// The policy id.
        id: String,
        /// The config key (`policies[0].path`).
        key: String,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file's SHA-256 is not the pinned one.
    #[error(
        "policy \"{id}\" ({key}): {path} has sha256 {actual}, but the configuration pins {expected}; refusing to load it"
    )]
    DigestMismatch {
        /// The policy id.
        id: String,
        /// The config key (`policies[0].sha256`).
        key: String,
        /// The file.
        path: PathBuf,
        /// The pinned digest.
        expected: String,
        /// The file's digest.
        actual: String,
    },
    /// The file is not a component the engine can compile.
    #[error("policy \"{id}\" ({key}): {path} is not a loadable policy component: {message}")]
    Compile {
        /// The policy id.
        id: String,
        /// The config key (`policies[0].path`).
        key: String,
        /// The file.
        path: PathBuf,
        /// The compiler's message.
        message: String,
    },
    /// The component imports something the gateway does not provide, or its exports do
    /// not match the `portcullis:policy` world.
    #[error("policy \"{id}\" ({key}): cannot link the component: {message}")]
    Link {
        /// The policy id.
        id: String,
        /// The config key (`policies[0].path`).
        key: String,
        /// The linker's message.
        message: String,
    },
    /// Starting the first instance, or its `metadata`, failed.
    #[error("policy \"{id}\" ({key}): {message}")]
    Start {
        /// The policy id.
        id: String,
        /// The config key.
        key: String,
        /// What failed.
        message: String,
    },
    /// The policy's `configure` rejected its settings.
    #[error("policy \"{id}\" rejected its settings ({key}): {message}")]
    Settings {
        /// The policy id.
        id: String,
        /// The config key (`policies[0].settings`).
        key: String,
        /// The policy's message.
        message: String,
    },
    /// The engine could not be created.
    #[error("policy runtime: {0}")]
    Engine(String),
}

/// Caps on what a policy may return, so a hostile policy cannot make the gateway
/// carry (or send to clients) unbounded data.
pub mod caps {
    /// Longest deny message or approval reason, in bytes.
    pub const MAX_MESSAGE_BYTES: usize = 8 * 1024;
    /// Most approvers in one approval requirement.
    pub const MAX_APPROVERS: usize = 64;
    /// Longest approver name, in bytes.
    pub const MAX_APPROVER_BYTES: usize = 256;
    /// Longest policy name or version in `metadata`, in bytes.
    pub const MAX_NAME_BYTES: usize = 256;
    /// Most hooks listed in `metadata`.
    pub const MAX_HOOKS: usize = 16;
    /// Longest log message kept, in bytes (longer ones are cut).
    pub const MAX_LOG_BYTES: usize = 1024;
    /// Most bytes of values one `mask-rows` call may return.
    pub const MAX_MASK_BATCH_BYTES: usize = 64 * 1024 * 1024;
    /// Log messages kept per call (more are counted and dropped).
    pub const MAX_LOGS_PER_CALL: u32 = 16;
}
