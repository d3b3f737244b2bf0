//! What a session remembers between statements for masking: the queries of the
//! cursors it declared, and whether its DDL changed the masking catalog.
//!
//! Cursors: a `DECLARE name CURSOR FOR query` that completed is remembered with its
//! query's lineage and tables, so the rows of a later `FETCH ... FROM name` get the
//! provenance the query itself would (computed columns are `derived` from their
//! sources, constants are `constant`) instead of `unknown`. `CLOSE`, `CLOSE ALL`,
//! `COMMIT`, `ROLLBACK` (to a savepoint too) and the end of the transaction forget
//! them; a
//! cursor the session did not declare itself (one a function opened, one declared
//! `WITH HOLD` and fetched after its transaction, one rolled back and reopened) has
//! no lineage, so its computed columns stay `unknown` (masked by the standard
//! policy). Direct column references keep the provenance of the RowDescription's
//! table OID either way. Not covered: a function that itself closes a cursor the
//! session declared and reopens one under the same name for another query of the
//! same shape; its computed columns would get the declared query's lineage. That is
//! the known limit of function bodies (see `portcullis_sql`): whoever may create
//! functions can hide reads in them anyway.
//!
//! Catalog: once a statement that may change relations or columns (see
//! [`crate::masking::changes_catalog`]) has completed and its transaction ended, the
//! relay asks the I/O layer to reload the catalog before the client gets anything
//! more ([`Relay::take_catalog_refresh`]): the next result over a new view is masked
//! by its lineage at once, whether the DDL ran at once or after an approval.

use portcullis_sql::{CursorOp, OutputItem, StatementSummary, TableRef};
use portcullis_wire::backend::TransactionStatus;

use super::Relay;

/// The query of a declared cursor.
#[derive(Debug, Clone)]
pub(super) struct CursorQuery {
    output: Option<Vec<OutputItem>>,
    tables: Vec<TableRef>,
    /// The functions the query calls (an opaque one makes its rows unknown).
    functions: Vec<String>,
}

impl Relay {
    /// A statement completed (CommandComplete `command_tag`).
    pub(super) fn track_completed(
        &mut self,
        statement: Option<&StatementSummary>,
        command_tag: &str,
    ) {
        // The end of a transaction (also inside a multi-statement string, which gets
        // one ReadyForQuery at its end) or a rollback to a savepoint.
        if matches!(command_tag, "COMMIT" | "ROLLBACK" | "PREPARE TRANSACTION") {
            self.cursors.clear();
        }
        let Some(s) = statement else { return };
        if crate::masking::changes_catalog(s.kind) {
            self.catalog_changed = true;
        }
        match &s.lineage.cursor {
            Some(CursorOp::Declare { name, output }) if command_tag == "DECLARE CURSOR" => {
                self.cursors.insert(
                    name.clone(),
                    CursorQuery {
                        output: output.clone(),
                        tables: s.tables.clone(),
                        functions: s.functions.clone(),
                    },
                );
            }
            Some(CursorOp::Close(name)) => {
                self.cursors.remove(name);
            }
            Some(CursorOp::CloseAll) => self.cursors.clear(),
            _ => {}
        }
    }

    /// ReadyForQuery with `status`; `offset` is where it goes in the client output.
    pub(super) fn track_ready(&mut self, status: TransactionStatus, offset: usize) {
        if status != TransactionStatus::Idle {
            return;
        }
        self.cursors.clear();
        if std::mem::take(&mut self.catalog_changed) && self.catalog_refresh.is_none() {
            self.catalog_refresh = Some(offset);
        }
    }

    /// For the rows of `FETCH ... FROM c` where this session declared `c`: the FETCH
    /// with the lineage and tables of `c`'s query. `None` for any other statement.
    pub(super) fn fetch_as_declared(
        &self,
        statement: Option<&StatementSummary>,
    ) -> Option<StatementSummary> {
        let s = statement?;
        let Some(CursorOp::Fetch(name)) = &s.lineage.cursor else {
            return None;
        };
        let q = self.cursors.get(name)?;
        let mut out = s.clone();
        out.lineage.output = q.output.clone();
        out.tables = q.tables.clone();
        out.functions = q.functions.clone();
        Some(out)
    }

    /// Once, after DDL committed: the offset in the client output (as passed to the
    /// [`Relay::server_input`] call just made) from which bytes must wait until the
    /// masking catalog of the session's database is reloaded. The I/O layer holds
    /// them back, reloads, then releases them.
    pub fn take_catalog_refresh(&mut self) -> Option<usize> {
        self.catalog_refresh.take()
    }
}
