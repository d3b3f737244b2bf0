use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use portcullis_sql::Analysis;
use portcullis_wire::backend::{ErrorFields, Severity};
use portcullis_wire::frontend::{Bind, Close, Describe, Execute, FunctionCall, Parse, Query, tag};
use portcullis_wire::{Frame, WireError};

use super::pending::Pending;
use super::{Relay, RelayError, StatementInfo};
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
                let analysis = self.deps.analyzer.analyze(q.sql);
                let denial = self.decide_all(&analysis, q.sql, Protocol::Simple, now);
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
                });
            }
            tag::PARSE => {
                let p = Parse::decode(body).map_err(RelayError::Client)?;
                let analysis = self.deps.analyzer.analyze(p.sql);
                let denial = self.decide_all(&analysis, p.sql, Protocol::ExtendedParse, now);
                if denial.is_some() {
                    self.poison_extended(out);
                } else {
                    out.extend_from_slice(frame.raw());
                }
                let statement = StatementInfo {
                    analysis,
                    columns: None,
                };
                self.pending.push_back(Pending::Parse {
                    name: p.name.to_owned(),
                    statement,
                    denial,
                });
            }
            tag::BIND => {
                let b = Bind::decode(body).map_err(RelayError::Client)?;
                self.pending.push_back(Pending::Bind {
                    portal: b.portal.to_owned(),
                    statement: b.statement.to_owned(),
                    result_formats: b.result_formats,
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
                let denial = match self
                    .deps
                    .gate
                    .decide_function_call(&self.session, f.function_oid)
                {
                    Decision::Allow => None,
                    Decision::Deny(d) => Some(denial_fields(&d)),
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

    /// Decides every statement of a string. The first denial wins and none of the
    /// statements runs.
    fn decide_all(
        &mut self,
        analysis: &Arc<Analysis>,
        sql: &str,
        protocol: Protocol,
        now: Instant,
    ) -> Option<ErrorFields> {
        let mut denial = None;
        for statement in &analysis.statements {
            let ctx = StatementContext {
                session: &self.session,
                analysis,
                statement,
                sql,
                protocol,
                transaction: self.transaction,
            };
            if let Decision::Deny(d) = self.deps.gate.decide(&ctx) {
                denial = Some(denial_fields(&d));
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
