#!/usr/bin/env bash
# Portcullis gateway benchmark: direct PostgreSQL vs the gateway vs pgbouncer (session
# mode), pgbench -S over simple and extended protocol at 1/8/32 clients, plus the
# gateway's memory per idle client connection.
#
#   bash bench/gateway.sh                      # 10 s per run, 3 rounds (about 12 minutes)
#   BENCH_SECONDS=5 BENCH_ROUNDS=5 bash bench/gateway.sh
#
# Environment:
#   BENCH_SECONDS      seconds per pgbench run                   (default 10)
#   BENCH_ROUNDS       interleaved rounds per configuration      (default 3)
#   BENCH_CLIENTS      comma-separated client counts             (default 1,8,32)
#   BENCH_PROTOCOLS    comma-separated pgbench -M modes          (default simple,extended)
#   BENCH_IDLE_CONNS   idle logins held for the RSS measurement  (default 1000)
#   BENCH_IDLE_BATCHES batches of those, one after the other      (default 2)
#   BENCH_PROFILE=1    instead of the matrix: perf stat, strace -c and perf record of the
#                      gateway and pgbouncer under load (BENCH_PROFILE_CLIENTS, default 8);
#                      perf's samples also by thread (session tasks vs the audit writer)
#   BENCH_PROFILE_TARGETS  comma-separated targets to profile (default: every gateway and
#                      pgbouncer), e.g. gateway,audit
#   BENCH_PROFILE_CALLGRAPH=1  perf record with DWARF call graphs, report with callees
#   BENCH_POLICIES=1   a second gateway with the demo policy set (guardrails, approvals,
#                      pii-mask; BENCH_DECISION_CACHE=0: without their decision cache) runs
#                      as target "policies" in the same rounds; the report gives
#                      policies/gateway TPS per round and CPU per transaction of both
#   BENCH_AUDIT=1      likewise a gateway with `[audit]` at its defaults (file sink in the
#                      work dir, fsync = "batch") as target "audit"; its trail is verified
#                      at the end (`portcullis audit verify --sealed`)
#                      With either, the gateways swap order every other round.
#   TOKIO_WORKER_THREADS  passed through to the gateway (tokio reads it)
#   BENCH_SCALE        pgbench -i scale                          (default 10)
#   BENCH_SKIP_BUILD=1 use target/release/portcullis as it is
#   BENCH_PG_DURABLE=1 PostgreSQL with fsync and synchronous_commit on (default off)
#   BENCH_BUILTIN      pgbench built-in script: select-only (= -S) or simple-update
#                      (default select-only)
#   BENCH_SESSION_THREADS  server.session_threads of the gateway (default 0: shared runtime)
#   BENCH_GATEWAY_EXTRA_TOML  text appended to the generated gateway config
#                             (e.g. [[policies]] tables, to measure a policy's cost)
#
# Everything runs as throwaway processes on random free ports in a temp directory; the
# PostgreSQL on 127.0.0.1:5432 (if any) is never touched. Everything started is stopped
# and removed on exit, including on failure or Ctrl-C (handled in gateway_bench.py:
# try/finally plus SIGTERM/SIGHUP handlers; children run in their own sessions).
# The markdown report goes to stdout and bench/results/<timestamp>.md (raw per-run data
# in bench/results/<timestamp>.json); progress goes to stderr.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec python3 "$here/gateway_bench.py" "$@"
