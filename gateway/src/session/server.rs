use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use portcullis_wire::Frame;
use portcullis_wire::backend::{RowDescription, TransactionStatus, tag};
use portcullis_wire::frontend::Target;

use super::pending::Pending;
use super::{PortalInfo, Relay, RelayError};
use crate::pipeline::ResultContext;

impl Relay {
    /// Consumes complete messages from `input` (bytes read from the server) and appends
    /// what must be sent to the client to `to_client`.
    pub fn server_input(
        &mut self,
        input: &mut BytesMut,
        to_client: &mut BytesMut,
        now: Instant,
    ) -> Result<(), RelayError> {
        while let Some(frame) = self.decoder.decode(input).map_err(RelayError::Server)? {
            self.server_message(frame, to_client, now)?;
        }
        Ok(())
    }

    fn server_message(
        &mut self,
        frame: Frame,
        out: &mut BytesMut,
        now: Instant,
    ) -> Result<(), RelayError> {
        match frame.tag() {
            tag::DATA_ROW => {
                if self.track_results && !self.result_started {
                    self.start_result(None);
                }
                match self.rewriter.as_mut() {
                    Some(rw) => rw.rewrite(frame.body(), out).map_err(RelayError::Filter)?,
                    None => out.extend_from_slice(frame.raw()),
                }
                return Ok(());
            }
            tag::ROW_DESCRIPTION => self.on_row_description(&frame)?,
            tag::NO_DATA => {
                if let Some(Pending::Describe { .. }) = self.pending.front() {
                    self.pending.pop_front();
                }
            }
            tag::COMMAND_COMPLETE | tag::EMPTY_QUERY | tag::PORTAL_SUSPENDED => {
                self.end_result();
                if frame.tag() != tag::EMPTY_QUERY {
                    let suspended = frame.tag() == tag::PORTAL_SUSPENDED;
                    self.audit_complete(&frame, suspended, out.len(), now);
                }
                match self.pending.front() {
                    Some(Pending::Execute { .. }) => {
                        self.pending.pop_front();
                    }
                    Some(Pending::Query { .. }) => self.query_statement += 1,
                    _ => {}
                }
            }
            tag::PARSE_COMPLETE => {
                if let Some(Pending::Parse {
                    name, statement, ..
                }) = self.pending.pop_front()
                {
                    self.statements.insert(name, statement);
                }
            }
            tag::BIND_COMPLETE => {
                if let Some(Pending::Bind {
                    portal,
                    statement,
                    params,
                }) = self.pending.pop_front()
                {
                    let statement = self.statements.get(&statement).cloned();
                    self.portals
                        .insert(portal, PortalInfo { statement, params });
                }
            }
            tag::CLOSE_COMPLETE => {
                if let Some(Pending::Close { target, name }) = self.pending.pop_front() {
                    match target {
                        Target::Statement => {
                            self.statements.remove(&name);
                        }
                        Target::Portal => {
                            self.portals.remove(&name);
                        }
                    }
                }
            }
            tag::ERROR_RESPONSE => {
                self.end_result();
                if let Some(denial) = self.pending.front().and_then(Pending::denial) {
                    denial.encode_error(out);
                    self.after_error();
                    return Ok(());
                }
                self.audit_error(&frame, now);
                self.after_error();
            }
            tag::READY_FOR_QUERY => {
                self.transaction =
                    TransactionStatus::decode(frame.body()).map_err(RelayError::Server)?;
                self.end_result();
                self.query_statement = 0;
                // Everything up to the request this answers is settled (requests the
                // server skipped after an error get no response of their own).
                while let Some(p) = self.pending.pop_front() {
                    if let Pending::FunctionCall {
                        denial: None,
                        sent_at,
                        function_oid,
                    } = &p
                    {
                        self.audit_function_call(*function_oid, None, *sent_at, now, out.len());
                    }
                    if p.ends_with_ready() {
                        let sent_at = match p {
                            Pending::Query { sent_at, .. }
                            | Pending::Sync { sent_at }
                            | Pending::FunctionCall { sent_at, .. } => sent_at,
                            _ => now,
                        };
                        let us = now.saturating_duration_since(sent_at).as_secs_f64() * 1e6;
                        self.deps.metrics.query_latency_us.observe(us);
                        break;
                    }
                }
            }
            _ => {}
        }
        out.extend_from_slice(frame.raw());
        Ok(())
    }

    /// After an ErrorResponse: in the extended protocol the server now skips everything
    /// up to Sync, so requests before the next Sync will get no response.
    fn after_error(&mut self) {
        match self.pending.front() {
            Some(Pending::Query { .. } | Pending::FunctionCall { .. }) | None => {}
            Some(_) => {
                while let Some(p) = self.pending.front() {
                    if p.ends_with_ready() {
                        break;
                    }
                    self.pending.pop_front();
                }
            }
        }
    }

    fn on_row_description(&mut self, frame: &Frame) -> Result<(), RelayError> {
        match self.pending.front_mut() {
            Some(Pending::Describe { target, name }) => {
                if self.track_results {
                    let cols =
                        Arc::new(RowDescription::decode(frame.body()).map_err(RelayError::Server)?);
                    match target {
                        Target::Statement => {
                            if let Some(s) = self.statements.get_mut(name.as_str()) {
                                s.columns = Some(cols);
                            }
                        }
                        Target::Portal => {
                            if let Some(s) = self
                                .portals
                                .get_mut(name.as_str())
                                .and_then(|p| p.statement.as_mut())
                            {
                                s.columns = Some(cols);
                            }
                        }
                    }
                }
                self.pending.pop_front();
            }
            _ if self.track_results => {
                let cols = RowDescription::decode(frame.body()).map_err(RelayError::Server)?;
                self.start_result(Some(cols));
            }
            _ => {}
        }
        Ok(())
    }

    /// Offers the result set that is starting to the filter.
    fn start_result(&mut self, columns: Option<RowDescription>) {
        self.result_started = true;
        let (statement, known) = match self.pending.front() {
            Some(Pending::Query { analysis, .. }) => {
                (analysis.statements.get(self.query_statement).cloned(), None)
            }
            Some(Pending::Execute { portal, .. }) => {
                let s = self.portals.get(portal).and_then(|p| p.statement.clone());
                let summary = s
                    .as_ref()
                    .and_then(|s| s.analysis.statements.first().cloned());
                (summary, s.and_then(|s| s.columns))
            }
            _ => (None, None),
        };
        let columns = match (columns, known) {
            (Some(c), _) => c,
            (None, Some(k)) => (*k).clone(),
            (None, None) => RowDescription::default(),
        };
        let ctx = ResultContext {
            session: &self.session,
            statement: statement.as_ref(),
            columns: &columns,
        };
        self.rewriter = self.deps.filter.begin(&ctx);
    }

    fn end_result(&mut self) {
        self.result_started = false;
        self.rewriter = None;
    }
}
