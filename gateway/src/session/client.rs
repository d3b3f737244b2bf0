use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use portcullis_sql::Analysis;
use portcullis_wire::backend::{ErrorFields, Severity};
use portcullis_wire::frontend::{Bind, Close, Describe, Execute, FunctionCall, Parse, Query, tag};
use portcullis_wire::{Frame, WireError};

use super::pending::Pending;
use super::{Relay, RelayError, StatementInfo};
use crate::identity::introspect;
use crate::pipeline::{Decision, Denial, Protocol, StatementContext};

impl Relay {
    /// Consumes complete messages from `input` (bytes read from the client) and appends
    /// what must be sent upstream to `to_server`. Partial messages stay in `input`.
    pub fn client_input(
        &mut self,
        input: &mut BytesMut,
        to_server: &mut BytesMut,
        now: Instant,
    ) -> Result<(), RelayError> {
        while let Some(frame) = self.decoder.decode(input).map_err(RelayError::Client)? {
            self.client_message(frame, to_server, now)?;
            if self.terminated {
                break;
            }
        }
        Ok(())
    }

    fn client_message(
        &mut self,
        frame: Frame,
        out: &mut BytesMut,
        now: Instant,
    ) -> Result<(), RelayError> {
        let body = frame.body();
        self.client_seq += 1;
        let seq = self.client_seq;
        match frame.tag() {
            tag::QUERY => {
                let q = Query::decode(body).map_err(RelayError::Client)?;
                if let Some(sql) = introspect::answer(q.sql, &self.session.identity) {
                    // Answered by the gateway (see identity::introspect); no policy.
                    Query::encode(&sql, out);
                    let analysis = self.deps.analyzer.analyze(&sql);
                    self.pending.push_back(Pending::Query {
                        seq,
                        analysis,
                        denial: None,
                        sent_at: now,
                        sql: None,
                    });
                    return Ok(());
                }
                let analysis = self.deps.analyzer.analyze(q.sql);
                let sql = self.audit_sql(q.sql);
                let denial = self.decide_all(&analysis, q.sql, Protocol::Simple, now);
                let denial = denial.map(|(index, d)| {
                    self.audit_denied("simple", &analysis, index, sql.as_deref(), None, &d);
                    denial_fields(&d)
                });
                if denial.is_some() {
                    Query::encode(&self.poison_name, out);
                } else {
                    out.extend_from_slice(frame.raw());
                }
                self.pending.push_back(Pending::Query {
                    seq,
                    analysis,
                    denial,
                    sent_at: now,
                    sql,
                });
            }
            tag::PARSE => {
                let p = Parse::decode(body).map_err(RelayError::Client)?;
                if let Some(sql) = introspect::answer(p.sql, &self.session.identity) {
                    Parse::encode(p.name, &sql, &[], out);
                    let statement = StatementInfo {
                        analysis: self.deps.analyzer.analyze(&sql),
                        columns: None,
                        sql: None,
                    };
                    self.pending.push_back(Pending::Parse {
                        name: p.name.to_owned(),
                        statement,
                        denial: None,
                        sent_at: now,
                    });
                    return Ok(());
                }
                let analysis = self.deps.analyzer.analyze(p.sql);
                let sql = self.audit_sql(p.sql);
                let denial = self.decide_all(&analysis, p.sql, Protocol::ExtendedParse, now);
                let denial = denial.map(|(index, d)| {
                    self.audit_denied("extended", &analysis, index, sql.as_deref(), None, &d);
                    denial_fields(&d)
                });
                if denial.is_some() {
                    self.poison_extended(out);
                } else {
                    out.extend_from_slice(frame.raw());
                }
                let statement = StatementInfo {
                    analysis,
                    columns: None,
                    sql,
                };
                self.pending.push_back(Pending::Parse {
                    name: p.name.to_owned(),
                    statement,
                    denial,
                    sent_at: now,
                });
            }
            tag::BIND => {
                let b = Bind::decode(body).map_err(RelayError::Client)?;
                let params = self
                    .deps
                    .audit
                    .as_ref()
                    .filter(|a| a.wants_params())
                    .map(|_| crate::audit::record::params_record(&b.param_formats, &b.params));
                self.pending.push_back(Pending::Bind {
                    portal: b.portal.to_owned(),
                    statement: b.statement.to_owned(),
                    result_formats: b.result_formats,
                    params,
                });
                out.extend_from_slice(frame.raw());
            }
            tag::DESCRIBE => {
                let d = Describe::decode(body).map_err(RelayError::Client)?;
                self.pending.push_back(Pending::Describe {
                    target: d.target,
                    name: d.name.to_owned(),
                });
                out.extend_from_slice(frame.raw());
            }
            tag::EXECUTE => {
                let e = Execute::decode(body).map_err(RelayError::Client)?;
                self.pending.push_back(Pending::Execute {
                    seq,
                    portal: e.portal.to_owned(),
                    sent_at: now,
                });
                out.extend_from_slice(frame.raw());
            }
            tag::CLOSE => {
                let c = Close::decode(body).map_err(RelayError::Client)?;
                self.pending.push_back(Pending::Close {
                    target: c.target,
                    name: c.name.to_owned(),
                });
                out.extend_from_slice(frame.raw());
            }
            tag::SYNC => {
                // During COPY IN the server ignores Sync: no ReadyForQuery will come.
                if !self.copy_in_open {
                    self.pending.push_back(Pending::Sync { seq, sent_at: now });
                }
                out.extend_from_slice(frame.raw());
            }
            tag::COPY_DONE | tag::COPY_FAIL => {
                if self.copy_in_open {
                    self.copy_in_open = false;
                } else {
                    if self.copy_ends.len() >= MAX_COPY_ENDS {
                        // Only the newest can still end a COPY the server has not
                        // started; older ones were ignored by the server.
                        self.copy_ends.pop_front();
                    }
                    self.copy_ends.push_back(seq);
                }
                out.extend_from_slice(frame.raw());
            }
            tag::FUNCTION_CALL => {
                let f = FunctionCall::decode(body).map_err(RelayError::Client)?;
                let sink = self.deps.audit.as_ref().and_then(|a| a.sink_denial_any());
                let decision = match sink {
                    Some(d) => Decision::Deny(d),
                    None => self
                        .deps
                        .gate
                        .decide_function_call(&self.session, f.function_oid),
                };
                let denial = match decision {
                    Decision::Allow => None,
                    Decision::Deny(d) => {
                        self.audit_function_call(f.function_oid, Some(&d), now, now, 0);
                        Some(denial_fields(&d))
                    }
                };
                self.count_decision(denial.is_none());
                if denial.is_some() {
                    Query::encode(&self.poison_name, out);
                } else {
                    out.extend_from_slice(frame.raw());
                }
                self.pending.push_back(Pending::FunctionCall {
                    denial,
                    sent_at: now,
                    function_oid: f.function_oid,
                });
            }
            tag::FLUSH | tag::COPY_DATA => {
                out.extend_from_slice(frame.raw());
            }
            tag::TERMINATE => {
                self.terminated = true;
                out.extend_from_slice(frame.raw());
            }
            other => return Err(RelayError::Client(WireError::UnexpectedTag(other as char))),
        }
        Ok(())
    }

    /// Decides every statement of a string. The first denial wins (with the index of
    /// the statement it denied) and none of the statements runs. While the audit trail
    /// cannot be written, statements are denied before any policy sees them (fail
    /// closed).
    fn decide_all(
        &mut self,
        analysis: &Arc<Analysis>,
        sql: &str,
        protocol: Protocol,
        now: Instant,
    ) -> Option<(usize, Denial)> {
        let mut denial = None;
        for (i, statement) in analysis.statements.iter().enumerate() {
            if let Some(d) = self
                .deps
                .audit
                .as_ref()
                .and_then(|a| a.sink_denial(statement))
            {
                denial = Some((i, d));
                break;
            }
            let ctx = StatementContext {
                session: &self.session,
                analysis,
                statement,
                sql,
                protocol,
                transaction: self.transaction,
            };
            if let Decision::Deny(d) = self.deps.gate.decide(&ctx) {
                denial = Some((i, d));
                break;
            }
        }
        self.count_decision(denial.is_none());
        self.deps
            .metrics
            .decision_latency_us
            .observe(now.elapsed().as_secs_f64() * 1e6);
        denial
    }

    fn count_decision(&self, allowed: bool) {
        let label = if allowed { "allow" } else { "deny" };
        self.deps
            .metrics
            .statements
            .with_label_values(&[label])
            .inc();
    }

    /// Sends upstream a Bind of a statement that cannot exist, so the server fails at
    /// this point of the pipeline and discards until Sync.
    fn poison_extended(&self, out: &mut BytesMut) {
        Bind::encode("", &self.poison_name, &[], out);
    }
}

/// CopyDone/CopyFail numbers remembered while no COPY IN is known to be running.
const MAX_COPY_ENDS: usize = 64;

/// The ErrorResponse a client sees for a denial.
pub(super) fn denial_fields(d: &Denial) -> ErrorFields {
    ErrorFields::new(Severity::Error, &d.sqlstate, d.message.clone()).detail(format!(
        "Denied by policy \"{}\" at the Portcullis gateway.",
        d.policy
    ))
}
