use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use portcullis_sql::Analysis;
use portcullis_wire::backend::{ErrorFields, Severity};
use portcullis_wire::frontend::{
    Bind, Close, Describe, Execute, FunctionCall, Parse, Query, Target, tag,
};
use portcullis_wire::{Frame, WireError};

use super::hold::{Awaiting, HoldTicket, Parked, ParkedKind};
use super::pending::Pending;
use super::{Relay, RelayError, StatementInfo};
use crate::identity::introspect;
use crate::pipeline::{
    ApprovalNeed, Decision, Denial, PolicyVerdictRecord, Protocol, StatementContext, VerdictSink,
};

impl Relay {
    /// Consumes complete messages from `input` (bytes read from the client) and appends
    /// what must be sent upstream to `to_server`. Partial messages stay in `input`.
    pub fn client_input(
        &mut self,
        input: &mut BytesMut,
        to_server: &mut BytesMut,
        now: Instant,
    ) -> Result<(), RelayError> {
        while self.parked.is_none()
            && let Some(frame) = self.decoder.decode(input).map_err(RelayError::Client)?
        {
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
                        approval: None,
                        verdicts: None,
                    });
                    return Ok(());
                }
                let analysis = self.deps.analyzer.analyze(q.sql);
                let sql = self.audit_sql(q.sql);
                let denial = match self.decide_all(&analysis, q.sql, Protocol::Simple, now) {
                    Gated::Allow => None,
                    Gated::Deny(index, d) => {
                        self.audit_denied("simple", &analysis, index, sql.as_ref(), None, &d);
                        Some(denial_fields(&d))
                    }
                    Gated::Hold(index, need) => {
                        self.parked = Some(Parked {
                            raw: Bytes::copy_from_slice(frame.raw()),
                            seq,
                            taken: false,
                            ticket: HoldTicket {
                                session: Arc::clone(&self.session),
                                analysis,
                                index,
                                sql: Arc::from(q.sql),
                                protocol: Protocol::Simple,
                                transaction: self.transaction,
                                params: Vec::new(),
                                need,
                            },
                            kind: ParkedKind::Query { audit_sql: sql },
                        });
                        return Ok(());
                    }
                };
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
                    approval: None,
                    verdicts: self.last_verdicts.clone(),
                });
            }
            tag::PARSE => {
                let p = Parse::decode(body).map_err(RelayError::Client)?;
                self.awaiting.remove(p.name);
                if let Some(sql) = introspect::answer(p.sql, &self.session.identity) {
                    Parse::encode(p.name, &sql, &[], out);
                    let statement = StatementInfo {
                        analysis: self.deps.analyzer.analyze(&sql),
                        columns: None,
                        sql: None,
                        verdicts: None,
                        bound_sql: None,
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
                let mut bound_sql = None;
                let denial = match self.decide_all(&analysis, p.sql, Protocol::ExtendedParse, now) {
                    Gated::Allow => {
                        if self.deps.gate.observes_binds() {
                            bound_sql = Some(sql.clone().unwrap_or_else(|| Arc::from(p.sql)));
                        }
                        None
                    }
                    Gated::Deny(index, d) => {
                        self.audit_denied("extended", &analysis, index, sql.as_ref(), None, &d);
                        Some(denial_fields(&d))
                    }
                    Gated::Hold(_, need) => {
                        // Parsing runs nothing: the Bind (with the parameters) is held.
                        self.awaiting.insert(
                            p.name.to_owned(),
                            Awaiting {
                                need,
                                analysis: Arc::clone(&analysis),
                                sql: Arc::from(p.sql),
                                audit_sql: sql.clone(),
                            },
                        );
                        None
                    }
                };
                if denial.is_some() {
                    self.poison_extended(out);
                } else {
                    out.extend_from_slice(frame.raw());
                }
                let statement = StatementInfo {
                    analysis,
                    columns: None,
                    sql,
                    verdicts: self.last_verdicts.clone(),
                    bound_sql,
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
                let observed = self.deps.gate.observes_binds();
                let params = (observed
                    || self.deps.audit.as_ref().is_some_and(|a| a.wants_params()))
                .then(|| crate::audit::record::params_record(&b.param_formats, &b.params));
                if let Some(aw) = self.awaiting.get(b.statement) {
                    let values = params.clone().unwrap_or_else(|| {
                        crate::audit::record::params_record(&b.param_formats, &b.params)
                    });
                    self.parked = Some(Parked {
                        raw: Bytes::copy_from_slice(frame.raw()),
                        seq,
                        taken: false,
                        ticket: HoldTicket {
                            session: Arc::clone(&self.session),
                            analysis: Arc::clone(&aw.analysis),
                            index: 0,
                            sql: Arc::clone(&aw.sql),
                            protocol: Protocol::ExtendedParse,
                            transaction: self.transaction,
                            params: values.to_vec(),
                            need: aw.need.clone(),
                        },
                        kind: ParkedKind::Bind {
                            portal: b.portal.to_owned(),
                            statement: b.statement.to_owned(),
                            result_formats: b.result_formats,
                            audit_params: params,
                            audit_sql: aw.audit_sql.clone(),
                        },
                    });
                    return Ok(());
                }
                self.pending.push_back(Pending::Bind {
                    portal: b.portal.to_owned(),
                    statement: b.statement.to_owned(),
                    result_formats: b.result_formats,
                    params,
                    param_formats: if observed {
                        b.param_formats
                    } else {
                        Vec::new()
                    },
                    denial: None,
                    approval: None,
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
                if c.target == Target::Statement {
                    self.awaiting.remove(c.name);
                }
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
                    Decision::Hold(need) => {
                        let d = Denial {
                            sqlstate: "42501".into(),
                            message: format!(
                                "approval required ({}), but a fast-path function call cannot be held; call the function with SELECT",
                                need.reason
                            ),
                            policy: need.policy,
                        };
                        self.audit_function_call(f.function_oid, Some(&d), now, now, 0);
                        Some(denial_fields(&d))
                    }
                    Decision::Deny(d) => {
                        self.audit_function_call(f.function_oid, Some(&d), now, now, 0);
                        Some(denial_fields(&d))
                    }
                };
                self.count_decision(if denial.is_none() { "allow" } else { "deny" });
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
    /// the statement it denied) and none of the statements runs; otherwise the first
    /// hold holds the whole string. While the audit trail cannot be written,
    /// statements are denied before any policy sees them (fail closed). Without
    /// `[approvals]`, a hold is a denial.
    fn decide_all(
        &mut self,
        analysis: &Arc<Analysis>,
        sql: &str,
        protocol: Protocol,
        now: Instant,
    ) -> Gated {
        let mut gated = Gated::Allow;
        let auditing = self.deps.audit.is_some();
        let mut verdicts: Vec<Vec<PolicyVerdictRecord>> = Vec::new();
        for (i, statement) in analysis.statements.iter().enumerate() {
            if let Some(d) = self
                .deps
                .audit
                .as_ref()
                .and_then(|a| a.sink_denial(statement))
            {
                gated = Gated::Deny(i, d);
                break;
            }
            let sink = VerdictSink::default();
            let ctx = StatementContext {
                session: &self.session,
                analysis,
                statement,
                sql,
                protocol,
                transaction: self.transaction,
                verdicts: auditing.then_some(&sink),
            };
            let decision = self.deps.gate.decide(&ctx);
            let called = sink.take();
            if !called.is_empty() {
                // Statements before `i` without verdicts get empty lists; none at all
                // (no policy called) is recorded as no verdicts, without allocating.
                verdicts.resize_with(i, Vec::new);
                verdicts.push(called);
            }
            match decision {
                Decision::Allow => {}
                Decision::Deny(d) => {
                    gated = Gated::Deny(i, d);
                    break;
                }
                Decision::Hold(need) if !self.deps.approvals => {
                    gated = Gated::Deny(
                        i,
                        Denial {
                            sqlstate: "42501".to_owned(),
                            message: format!(
                                "approval required: {} (approvals are not enabled on this gateway)",
                                need.reason
                            ),
                            policy: need.policy,
                        },
                    );
                    break;
                }
                Decision::Hold(need) => {
                    if !matches!(gated, Gated::Hold(..)) {
                        gated = Gated::Hold(i, need);
                    }
                }
            }
        }
        self.last_verdicts = (auditing && !verdicts.is_empty()).then(|| Arc::from(verdicts));
        self.count_decision(match gated {
            Gated::Allow => "allow",
            Gated::Deny(..) => "deny",
            Gated::Hold(..) => "hold",
        });
        self.deps
            .metrics
            .decision_latency_us
            .observe(now.elapsed().as_secs_f64() * 1e6);
        gated
    }

    fn count_decision(&self, label: &str) {
        self.deps
            .metrics
            .statements
            .with_label_values(&[label])
            .inc();
    }

    /// Sends upstream a Bind of a statement that cannot exist, so the server fails at
    /// this point of the pipeline and discards until Sync.
    pub(super) fn poison_extended(&self, out: &mut BytesMut) {
        Bind::encode("", &self.poison_name, &[], out);
    }
}

/// What the gate decided for a whole string.
enum Gated {
    Allow,
    /// Denied at statement `.0`.
    Deny(usize, Denial),
    /// Held at statement `.0` (no statement was denied).
    Hold(usize, ApprovalNeed),
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
