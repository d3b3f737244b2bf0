//! # hostile — a misbehaving policy, FOR TESTS ONLY
//!
//! **Never deploy this component.** It exists so the gateway's tests can prove that the
//! policy sandbox contains a broken or malicious policy: each behaviour below must end
//! in a denied statement (or a rejected policy), never a hung, crashed or exhausted
//! gateway.
//!
//! Settings: `{"behaviour": "<name>"}`, one of
//!
//! | behaviour | what it does | in |
//! |---|---|---|
//! | `allow` | allows everything (a well-behaved baseline) | `authorize` |
//! | `deny` | denies everything with SQLSTATE `42501` and the message `denied by the hostile test policy` | `authorize` |
//! | `loop` | spins forever (CPU deadline / fuel) | `authorize` |
//! | `alloc` | allocates 1 MiB blocks and touches them until memory runs out (memory cap) | `authorize` |
//! | `recursion` | recurses without bound: a trap when the shadow stack leaves linear memory or the host's wasm stack limit hits, whichever comes first | `authorize` |
//! | `huge-return` | denies with a 16 MiB message (result size limits) | `authorize` |
//! | `panic` | panics (a trap) | `authorize` |
//! | `print` | writes to stdout and stderr, which policies do not have (closed WASI stdio) | `authorize` |
//! | `log-flood` | logs 100 messages of 1 MiB each, then allows (log caps) | `authorize` |
//! | `trap-on-configure` | panics inside `configure` (load-time trap) | `configure` |
//! | `reject-settings` | returns an error from `configure` (a rejected policy) | `configure` |
//! | `slow-configure` | spins forever inside `configure` (load-time deadline) | `configure` |
//! | `cells-echo` | plans `custom` for every column and answers `mask-cells` with the batch unchanged (a well-behaved baseline) | `mask` |
//! | `cells-wrong-count` | like `cells-echo`, but the answer has one cell fewer | `mask` |
//! | `cells-wrong-columns` | like `cells-echo`, but the answer claims one column more | `mask` |
//! | `cells-out-of-bounds` | like `cells-echo`, but the first cell's length runs past the data | `mask` |
//! | `cells-bad-utf8` | answers one byte `0xff` (not UTF-8) per cell | `mask` |
//!
//! With `"trigger": "<text>"` the component misbehaves (in every hook) only for statements
//! whose SQL contains that text and allows every other statement, so an end-to-end test
//! can break one statement and check that the same connection keeps working.
//!
//! With `"mask_only": true`, `authorize` allows and only the `mask` hooks misbehave.
//! Without settings (or `{}`) the behaviour is `allow`. The `mask` and `approve` hooks
//! misbehave the same way for `loop`, `alloc`, `recursion`, `huge-return`, `panic` and
//! `log-flood`, so the host can test those hooks' limits too; otherwise they mask
//! nothing and route to the suggested approvers (`deny` refuses and rejects). An unknown
//! behaviour is an `invalid settings` error from `configure`.
//!
//! Build: `bash policies-rs/build.sh` → `target/policies/hostile.wasm`.

#![warn(missing_docs)]

use std::hint::black_box;

use portcullis_sdk::{
    ApprovalRequest, ApprovalRoute, CellBatch, CellWriter, Decision, MaskFunction, MaskPlan,
    Policy, Request, ResultContext, Row,
};
use serde::Deserialize;

/// What the component does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Behaviour {
    /// Allow everything.
    #[default]
    Allow,
    /// Deny everything.
    Deny,
    /// Infinite loop in the hooks.
    Loop,
    /// Unbounded allocation in the hooks.
    Alloc,
    /// Unbounded recursion in the hooks.
    Recursion,
    /// A multi-megabyte result from the hooks.
    HugeReturn,
    /// A panic in the hooks.
    Panic,
    /// Floods the log, then allows.
    LogFlood,
    /// Writes to stdout and stderr, then allows.
    Print,
    /// A panic in `configure`.
    TrapOnConfigure,
    /// An error from `configure`.
    RejectSettings,
    /// An infinite loop in `configure`.
    SlowConfigure,
    /// `custom` on every column; `mask-cells` answers the batch unchanged.
    CellsEcho,
    /// `custom` on every column; `mask-cells` answers one cell fewer.
    CellsWrongCount,
    /// `custom` on every column; `mask-cells` answers one column more.
    CellsWrongColumns,
    /// `custom` on every column; `mask-cells` answers a length past the data.
    CellsOutOfBounds,
    /// `custom` on every column; `mask-cells` answers cells that are not UTF-8.
    CellsBadUtf8,
}

impl Behaviour {
    /// The `mask-cells` behaviours (they plan `custom` for every column).
    fn packed(self) -> bool {
        matches!(
            self,
            Behaviour::CellsEcho
                | Behaviour::CellsWrongCount
                | Behaviour::CellsWrongColumns
                | Behaviour::CellsOutOfBounds
                | Behaviour::CellsBadUtf8
        )
    }
}

/// The settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// The behaviour.
    pub behaviour: Behaviour,
    /// Misbehave in `authorize` only for statements whose SQL contains this text.
    pub trigger: Option<String>,
    /// Misbehave only in the `mask` hooks (`plan-masks`, `mask-rows`); `authorize`
    /// allows. For testing masking's fail-closed paths.
    pub mask_only: bool,
}

/// The test policy.
#[derive(Debug)]
pub struct Hostile {
    behaviour: Behaviour,
    trigger: Option<String>,
    mask_only: bool,
}

/// Size of the `huge-return` message.
pub const HUGE_BYTES: usize = 16 * 1024 * 1024;

impl Hostile {
    /// Whether a statement with this SQL triggers misbehaviour (always without a
    /// `trigger`; never for an unknown statement with one).
    fn triggered(&self, sql: Option<&str>) -> bool {
        match (&self.trigger, sql) {
            (None, _) => true,
            (Some(t), Some(sql)) => sql.contains(t.as_str()),
            (Some(_), None) => false,
        }
    }

    /// Misbehaves as configured, for the behaviours that do so in every hook. Returns
    /// only for the others.
    fn misbehave(&self, hook: &str) {
        match self.behaviour {
            Behaviour::Loop => spin(),
            Behaviour::Alloc => exhaust_memory(),
            Behaviour::Recursion => {
                black_box(recurse(black_box(1)));
            }
            Behaviour::Panic => panic!("hostile test policy panics in {hook}"),
            Behaviour::Print => {
                println!("hostile test policy writes to stdout in {hook}");
                eprintln!("hostile test policy writes to stderr in {hook}");
            }
            Behaviour::LogFlood => {
                let message = "x".repeat(1 << 20);
                for _ in 0..100 {
                    portcullis_sdk::log::warn(&message);
                }
            }
            _ => {}
        }
    }
}

impl Policy for Hostile {
    type Settings = Settings;

    fn configure(settings: Settings) -> Result<Self, String> {
        match settings.behaviour {
            Behaviour::TrapOnConfigure => panic!("hostile test policy traps in configure"),
            Behaviour::RejectSettings => {
                Err("hostile test policy rejects its settings".to_string())
            }
            Behaviour::SlowConfigure => spin(),
            behaviour => Ok(Hostile {
                behaviour,
                trigger: settings.trigger,
                mask_only: settings.mask_only,
            }),
        }
    }

    fn authorize(&self, req: &Request) -> Decision {
        if self.mask_only || !self.triggered(Some(&req.statement.sql)) {
            return Decision::Allow;
        }
        self.misbehave("authorize");
        match self.behaviour {
            Behaviour::Deny => Decision::deny("denied by the hostile test policy"),
            Behaviour::HugeReturn => Decision::deny("x".repeat(HUGE_BYTES)),
            _ => Decision::Allow,
        }
    }

    fn plan_masks(&self, ctx: &ResultContext) -> MaskPlan {
        if !self.triggered(ctx.statement.as_ref().map(|s| s.sql.as_str())) {
            return MaskPlan::none();
        }
        self.misbehave("plan_masks");
        if self.behaviour.packed() {
            return ctx.columns.iter().fold(MaskPlan::none(), |p, c| {
                p.mask(c.index, MaskFunction::Custom)
            });
        }
        match self.behaviour {
            Behaviour::HugeReturn => MaskPlan::refuse("x".repeat(HUGE_BYTES)),
            Behaviour::Deny => MaskPlan::refuse("refused by the hostile test policy"),
            _ => MaskPlan::none(),
        }
    }

    fn mask_rows(&self, _ctx: &ResultContext, rows: Vec<Row>) -> Result<Vec<Row>, String> {
        self.misbehave("mask_rows");
        match self.behaviour {
            Behaviour::HugeReturn => Err("x".repeat(HUGE_BYTES)),
            _ => Ok(rows),
        }
    }

    fn mask_batch(&self, ctx: &ResultContext, batch: CellBatch) -> Result<CellBatch, String> {
        if !self.behaviour.packed() {
            let cells = batch.into_cells()?;
            let mut out = CellWriter::new(cells.columns());
            self.mask_cells(ctx, &cells, &mut out)?;
            return Ok(out.into_cells().into());
        }
        let mut b = batch;
        match self.behaviour {
            Behaviour::CellsWrongCount => {
                if let Some(len) = b.lengths.pop() {
                    b.data.truncate(b.data.len() - len.max(0) as usize);
                }
            }
            Behaviour::CellsWrongColumns => b.columns += 1,
            Behaviour::CellsOutOfBounds => {
                if let Some(first) = b.lengths.first_mut() {
                    *first = b.data.len() as i32 + 1;
                }
            }
            Behaviour::CellsBadUtf8 => {
                b.data = vec![0xff; b.lengths.len()];
                b.lengths.fill(1);
            }
            _ => {}
        }
        Ok(b)
    }

    fn approve(&self, req: &ApprovalRequest) -> ApprovalRoute {
        self.misbehave("approve");
        match self.behaviour {
            Behaviour::HugeReturn => ApprovalRoute::auto_reject("x".repeat(HUGE_BYTES)),
            Behaviour::Deny => ApprovalRoute::auto_reject("rejected by the hostile test policy"),
            _ => ApprovalRoute::route(req.approvers.iter().cloned()),
        }
    }
}

/// Never returns; the loop has a side effect the optimiser must keep.
fn spin() -> ! {
    let mut x: u64 = 0;
    loop {
        x = black_box(x.wrapping_add(1));
    }
}

/// Allocates and touches 1 MiB blocks, keeping them all, until allocation fails (which
/// aborts: a trap).
fn exhaust_memory() -> ! {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut block = vec![0u8; 1 << 20];
        // Touch every page so the memory is really committed.
        for i in (0..block.len()).step_by(4096) {
            block[i] = 1;
        }
        blocks.push(black_box(block));
    }
}

/// Recurses without bound; the frame holds a buffer so the stack fills quickly.
#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    let frame = black_box([depth; 64]);
    recurse(black_box(depth + 1)).wrapping_add(frame[(depth % 64) as usize])
}

portcullis_sdk::export_policy!(Hostile, hooks: [authorize, mask, approve]);

#[cfg(test)]
mod tests {
    //! Only the behaviours that return are exercised natively.
    use portcullis_sdk::testing::{RequestBuilder, TestHost};

    use super::*;

    #[test]
    fn well_behaved_modes() {
        let req = RequestBuilder::new("alice").build();
        assert!(
            TestHost::<Hostile>::with_json("{}")
                .unwrap()
                .authorize(&req)
                .is_allow()
        );
        let deny = TestHost::<Hostile>::with_json(r#"{"behaviour": "deny"}"#).unwrap();
        assert_eq!(
            deny.authorize(&req),
            Decision::deny("denied by the hostile test policy")
        );
        let huge = TestHost::<Hostile>::with_json(r#"{"behaviour": "huge-return"}"#).unwrap();
        assert_eq!(
            huge.authorize(&req).denial().unwrap().message.len(),
            HUGE_BYTES
        );
        assert_eq!(
            TestHost::<Hostile>::with_json(r#"{"behaviour": "reject-settings"}"#).err(),
            Some("hostile test policy rejects its settings".to_string())
        );
        let err = TestHost::<Hostile>::with_json(r#"{"behaviour": "explode"}"#)
            .err()
            .unwrap();
        assert!(
            err.starts_with("invalid settings: unknown variant `explode`"),
            "{err}"
        );
    }

    #[test]
    #[should_panic(expected = "hostile test policy panics in authorize")]
    fn panic_mode_panics() {
        let host = TestHost::<Hostile>::with_json(r#"{"behaviour": "panic"}"#).unwrap();
        host.authorize(&RequestBuilder::new("alice").build());
    }

    #[test]
    fn packed_answers_break_the_contract_as_asked() {
        use portcullis_sdk::testing::ResultContextBuilder;
        let ctx = ResultContextBuilder::new("alice").build();
        let batch = || CellBatch {
            columns: 2,
            data: b"abcd".to_vec(),
            lengths: vec![1, -1, 3, 0],
        };
        let answer = |b: &str| {
            TestHost::<Hostile>::with_json(&format!(r#"{{"behaviour": "{b}"}}"#))
                .unwrap()
                .mask_batch(&ctx, batch())
                .unwrap()
        };
        assert_eq!(answer("cells-echo"), batch());
        assert_eq!(answer("cells-wrong-count").lengths, [1, -1, 3]);
        assert_eq!(answer("cells-wrong-columns").columns, 3);
        assert_eq!(answer("cells-out-of-bounds").lengths[0], 5);
        assert!(answer("cells-bad-utf8").into_cells().is_err());
        // Other behaviours go through the checked path.
        let allow = TestHost::<Hostile>::with_json("{}").unwrap();
        assert_eq!(allow.mask_batch(&ctx, batch()).unwrap(), batch());
        let mut bad = batch();
        bad.lengths[0] = 9;
        assert!(allow.mask_batch(&ctx, bad).is_err());
    }

    #[test]
    fn metadata_lists_every_hook() {
        let m = TestHost::<Hostile>::new().metadata();
        assert_eq!(m.name, "portcullis-hostile");
        assert_eq!(m.hooks.len(), 3);
    }
}
