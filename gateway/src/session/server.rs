use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use portcullis_wire::Frame;
use portcullis_wire::backend::{ErrorFields, RowDescription, Severity, TransactionStatus, tag};
use portcullis_wire::frontend::Target;

use super::pending::Pending;
use super::{PortalInfo, Relay, RelayError};
use crate::pipeline::{Refusal, ResultContext};

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
        let t = frame.tag();
        if t == tag::DATA_ROW {
            if self.discarding {
                return Ok(());
            }
            if self.track_results && !self.result_started {
                self.start_result(None, out);
                if self.discarding {
                    return Ok(());
                }
            }
            match self.rewriter.as_mut() {
                Some(rw) => {
                    if let Err(e) = rw.rewrite(frame.body(), out) {
                        self.refuse(e, out);
                    }
                }
                None => out.extend_from_slice(frame.raw()),
            }
            return Ok(());
        }
        if matches!(
            t,
            tag::COMMAND_COMPLETE | tag::EMPTY_QUERY | tag::PORTAL_SUSPENDED
        ) && !self.discarding
            && let Some(rw) = self.rewriter.as_mut()
            && let Err(e) = rw.finish(out)
        {
            self.refuse(e, out);
        }
        let forward = self.bookkeep(&frame, out, now)?;
        if t == tag::READY_FOR_QUERY {
            self.discarding = false;
            out.extend_from_slice(frame.raw());
            return Ok(());
        }
        let asynchronous = matches!(
            t,
            tag::PARAMETER_STATUS | tag::NOTICE_RESPONSE | tag::NOTIFICATION
        );
        if forward && (!self.discarding || asynchronous) {
            out.extend_from_slice(frame.raw());
        }
        Ok(())
    }

    /// Refuses the result set streaming now: the client gets the error, and the
    /// server's responses up to ReadyForQuery are dropped (as PostgreSQL itself would
    /// send nothing after an error until then).
    fn refuse(&mut self, e: anyhow::Error, out: &mut BytesMut) {
        let r = match e.downcast_ref::<Refusal>() {
            Some(r) => r.clone(),
            None => Refusal {
                sqlstate: "42501".into(),
                message: format!("result refused: masking failed ({e})"),
                policy: "portcullis:masking".into(),
            },
        };
        tracing::debug!(policy = %r.policy, message = %r.message, "result refused");
        ErrorFields::new(Severity::Error, &r.sqlstate, r.message)
            .detail(format!(
                "Refused by policy \"{}\" at the Portcullis gateway.",
                r.policy
            ))
            .encode_error(out);
        self.deps
            .metrics
            .errors
            .with_label_values(&["result_refused"])
            .inc();
        self.rewriter = None;
        self.discarding = true;
    }

    /// Keeps the request/response bookkeeping in step with the server. Returns whether
    /// the message itself is to be forwarded (unless discarding).
    fn bookkeep(
        &mut self,
        frame: &Frame,
        out: &mut BytesMut,
        now: Instant,
    ) -> Result<bool, RelayError> {
        match frame.tag() {
            tag::ROW_DESCRIPTION => self.on_row_description(frame, out)?,
            tag::NO_DATA => {
                if let Some(Pending::Describe { .. }) = self.pending.front() {
                    self.pending.pop_front();
                }
            }
            tag::COMMAND_COMPLETE | tag::EMPTY_QUERY | tag::PORTAL_SUSPENDED => {
                self.end_result();
                if frame.tag() != tag::EMPTY_QUERY {
                    let suspended = frame.tag() == tag::PORTAL_SUSPENDED;
                    self.audit_complete(frame, suspended, out.len(), now);
                }
                if frame.tag() == tag::COMMAND_COMPLETE && self.track_results {
                    self.on_command_complete(frame);
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
                    result_formats,
                    params,
                    param_formats,
                    approval,
                    ..
                }) = self.pending.pop_front()
                {
                    let statement = self.statements.get(&statement).cloned();
                    if approval.is_none()
                        && let (Some(info), Some(values)) = (&statement, &params)
                    {
                        self.report_bound(info, values, &param_formats);
                    }
                    self.portals.insert(
                        portal,
                        PortalInfo {
                            statement,
                            result_formats,
                            params,
                            approval,
                        },
                    );
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
            tag::COPY_IN_RESPONSE => self.on_copy_in(),
            tag::ERROR_RESPONSE => {
                // An error ends a COPY IN: Syncs count again.
                self.copy_in_open = false;
                self.end_result();
                if let Some(denial) = self.pending.front().and_then(Pending::denial) {
                    if !self.discarding {
                        denial.encode_error(out);
                    }
                    self.after_error();
                    return Ok(false);
                }
                self.audit_error(frame, now);
                self.after_error();
                if self.track_results {
                    let fields = ErrorFields::decode(frame.tag(), frame.body())
                        .map_err(RelayError::Server)?;
                    if let Some(scrubbed) = self.deps.filter.scrub_error(&self.session, &fields) {
                        if !self.discarding {
                            scrubbed.encode_error(out);
                        }
                        return Ok(false);
                    }
                }
            }
            tag::NOTICE_RESPONSE if self.track_results => {
                let fields =
                    ErrorFields::decode(frame.tag(), frame.body()).map_err(RelayError::Server)?;
                if let Some(scrubbed) = self.deps.filter.scrub_notice(&self.session, &fields) {
                    // Asynchronous: forwarded even while the rest is discarded.
                    scrubbed.encode_notice(out);
                    return Ok(false);
                }
            }
            tag::READY_FOR_QUERY => {
                self.transaction =
                    TransactionStatus::decode(frame.body()).map_err(RelayError::Server)?;
                if self.transaction == TransactionStatus::Idle {
                    self.wrote_in_transaction = false;
                }
                self.block_may_have_ended = false;
                if self.track_results {
                    self.track_ready(self.transaction, out.len());
                }
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
                            | Pending::Sync { sent_at, .. }
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
        Ok(true)
    }

    /// Tells the gate about an executed Bind of a statement it allowed at Parse
    /// (held ones were recorded as held).
    fn report_bound(
        &self,
        info: &super::StatementInfo,
        values: &[Option<String>],
        formats: &[i16],
    ) {
        let Some(sql) = &info.bound_sql else {
            return;
        };
        let params = crate::pipeline::BoundParams { values, formats };
        for statement in &info.analysis.statements {
            let ctx = crate::pipeline::StatementContext {
                session: &self.session,
                analysis: &info.analysis,
                statement,
                sql,
                protocol: crate::pipeline::Protocol::ExtendedParse,
                transaction: self.transaction,
                verdicts: None,
            };
            self.deps.gate.bound(&ctx, &params);
        }
    }

    /// The server entered COPY IN for the request at the front. It ignores the Syncs
    /// the client sends until it ends the copy (CopyDone/CopyFail), so those get no
    /// ReadyForQuery and must not be waited for.
    fn on_copy_in(&mut self) {
        let start = match self.pending.front() {
            Some(Pending::Execute { seq, .. } | Pending::Query { seq, .. }) => *seq,
            _ => return,
        };
        while self.copy_ends.front().is_some_and(|&e| e < start) {
            self.copy_ends.pop_front();
        }
        let end = self.copy_ends.pop_front();
        if end.is_none() {
            self.copy_in_open = true;
        }
        self.pending.retain(|p| match p {
            Pending::Sync { seq, .. } => *seq < start || end.is_some_and(|e| *seq > e),
            _ => true,
        });
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

    fn on_row_description(&mut self, frame: &Frame, out: &mut BytesMut) -> Result<(), RelayError> {
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
            _ if self.track_results && !self.discarding => {
                let cols = RowDescription::decode(frame.body()).map_err(RelayError::Server)?;
                self.start_result(Some(cols), out);
            }
            _ => {}
        }
        Ok(())
    }

    /// Cursor and catalog bookkeeping for the statement a CommandComplete ends (before
    /// the pending request moves on).
    fn on_command_complete(&mut self, frame: &Frame) {
        let body = frame.body();
        let command = String::from_utf8_lossy(body.strip_suffix(&[0]).unwrap_or(body));
        // A simple Query's `i`-th result, or the statement of an executed portal.
        let (analysis, index) = match self.pending.front() {
            Some(Pending::Query { analysis, .. }) => {
                (Some(Arc::clone(analysis)), Some(self.query_statement))
            }
            Some(Pending::Execute { portal, .. }) => (
                self.portals
                    .get(portal)
                    .and_then(|p| p.statement.as_ref())
                    .map(|s| Arc::clone(&s.analysis)),
                None,
            ),
            _ => (None, None),
        };
        let statement = analysis.as_deref().and_then(|a| match index {
            Some(i) => a.result_statement(i),
            None => a.statements.first(),
        });
        self.track_completed(statement, &command);
    }

    /// Offers the result set that is starting to the filter.
    fn start_result(&mut self, columns: Option<RowDescription>, out: &mut BytesMut) {
        self.result_started = true;
        let (analysis, index, known) = match self.pending.front() {
            Some(Pending::Query { analysis, .. }) => {
                (Some(Arc::clone(analysis)), Some(self.query_statement), None)
            }
            Some(Pending::Execute { portal, .. }) => {
                let p = self.portals.get(portal);
                let s = p.and_then(|p| p.statement.clone());
                let formats = p.map(|p| p.result_formats.clone()).unwrap_or_default();
                let analysis = s.as_ref().map(|s| Arc::clone(&s.analysis));
                let columns = s.and_then(|s| s.columns).map(|c| {
                    // A statement's RowDescription says text for every column; the
                    // Bind chose the formats.
                    let mut c = (*c).clone();
                    for (i, f) in c.fields.iter_mut().enumerate() {
                        f.format = match formats.len() {
                            0 => 0,
                            1 => formats[0],
                            _ => formats.get(i).copied().unwrap_or(0),
                        };
                    }
                    Arc::new(c)
                });
                (analysis, None, columns)
            }
            _ => (None, None, None),
        };
        let columns = match (columns, known) {
            (Some(c), _) => c,
            (None, Some(k)) => (*k).clone(),
            (None, None) => RowDescription::default(),
        };
        let statement = analysis.as_deref().and_then(|a| match index {
            Some(i) => a.result_statement(i),
            None => a.statements.first(),
        });
        // FETCH from a cursor this session declared: the rows of its query.
        let declared = self.fetch_as_declared(statement);
        let ctx = match &declared {
            Some(d) => ResultContext {
                session: &self.session,
                statement: Some(d),
                analysis: None,
                columns: &columns,
            },
            None => ResultContext {
                session: &self.session,
                statement,
                analysis: analysis.as_ref(),
                columns: &columns,
            },
        };
        self.result_masks.clear();
        self.rewriter = if self.deps.audit.is_some() {
            self.deps.filter.begin_masked(&ctx, &mut self.result_masks)
        } else {
            self.deps.filter.begin(&ctx)
        };
        if let Some(r) = self.rewriter.as_ref().and_then(|rw| rw.refusal()) {
            self.refuse(anyhow::Error::new(r), out);
        }
    }

    fn end_result(&mut self) {
        self.result_started = false;
        self.rewriter = None;
    }
}
