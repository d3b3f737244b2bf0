#!/usr/bin/env python3
"""Portcullis gateway benchmark (run through bench/gateway.sh; see its header).

One run: build the gateway, start a throwaway PostgreSQL (SCRAM, random port), the
gateway and pgbouncer (session mode) in front of it, then run `pgbench -n -S` against
direct / gateway / pgbouncer, interleaved, for every protocol x client count x round.
Per run it records TPS, p50/p99 latency from the per-transaction log, and the CPU time
each process spent (from /proc), so the report can give CPU microseconds per
transaction for the gateway, pgbouncer, PostgreSQL and pgbench, and how much CPU other
tenants of the machine used meanwhile. Finally it holds BENCH_IDLE_CONNS logged-in idle
connections through the gateway (and through pgbouncer, for reference) and reports the
RSS growth per connection.
"""

import datetime
import glob
import json
import os
import platform
import pwd
import re
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.dont_write_bytecode = True  # no __pycache__ in bench/
sys.path.insert(0, HERE)
import pgwire_idle  # noqa: E402

SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
CLIENTS = [int(c) for c in os.environ.get("BENCH_CLIENTS", "1,8,32").split(",") if c.strip()]
PROTOCOLS = [p.strip() for p in os.environ.get("BENCH_PROTOCOLS", "simple,extended").split(",") if p.strip()]
IDLE_CONNS = int(os.environ.get("BENCH_IDLE_CONNS", "1000"))
IDLE_BATCHES = max(1, int(os.environ.get("BENCH_IDLE_BATCHES", "2")))
SCALE = int(os.environ.get("BENCH_SCALE", "10"))
SKIP_BUILD = os.environ.get("BENCH_SKIP_BUILD", "") not in ("", "0")
EXTRA_TOML = os.environ.get("BENCH_GATEWAY_EXTRA_TOML", "")
# server.session_threads of the gateway (0: the shared multi-threaded runtime).
SESSION_THREADS = int(os.environ.get("BENCH_SESSION_THREADS", "0"))
# pgbench built-in script: select-only (= -S, the default) or simple-update (writes).
BUILTIN = os.environ.get("BENCH_BUILTIN", "select-only")
# BENCH_PG_DURABLE=1: PostgreSQL syncs its WAL at every commit, as in production
# (default: fsync and synchronous_commit off, so only the CPU path is measured).
PG_DURABLE = os.environ.get("BENCH_PG_DURABLE") == "1"
# BENCH_PROFILE=1: instead of the matrix, look inside the gateway and pgbouncer under
# load (perf stat, strace -c, perf record) at BENCH_PROFILE_CLIENTS clients.
PROFILE = os.environ.get("BENCH_PROFILE", "") not in ("", "0")
PROFILE_CLIENTS = int(os.environ.get("BENCH_PROFILE_CLIENTS", "8"))
# BENCH_PROFILE_CALLGRAPH=1: perf record with DWARF call graphs (at 499 Hz), and a report
# with callees, to see what the top functions are called for.
CALLGRAPH = os.environ.get("BENCH_PROFILE_CALLGRAPH", "") not in ("", "0")
PG_MAX_CONNECTIONS = max(200, IDLE_CONNS + 100)
# BENCH_POLICIES=1: a second gateway enforcing the demo policy set (guardrails, approvals
# and pii-mask with their demo settings, from target/policies/) runs as a fourth target, "policies", in the same
# rounds, so its cost is a ratio against the pass-through gateway measured alongside.
POLICIES = os.environ.get("BENCH_POLICIES", "") not in ("", "0")
# BENCH_DECISION_CACHE=0: the policies run without their decision cache.
DECISION_CACHE = os.environ.get("BENCH_DECISION_CACHE", "1") not in ("", "0")
# BENCH_AUDIT=1: a second gateway with the audit trail on (`[audit]` with its defaults: the
# JSON-lines file sink in the work directory, fsync = "batch") runs as another target,
# "audit", in the same rounds, so its cost is a ratio against the pass-through gateway
# measured alongside. At the end its trail is verified (`portcullis audit verify --sealed`).
AUDIT = os.environ.get("BENCH_AUDIT", "") not in ("", "0")
# Second gateways measured against the pass-through one in the same rounds.
VARIANTS = [v for v, on in (("policies", POLICIES), ("audit", AUDIT)) if on]
GATEWAYS = ["gateway"] + VARIANTS
TARGETS = ["direct", *GATEWAYS, "pgbouncer"]
VARIANT_FLOOR = {"policies": 0.95, "audit": 0.90}
# BENCH_PROFILE_TARGETS: which targets the profile mode looks at (default: every gateway
# and pgbouncer).
PROFILE_TARGETS = [t.strip() for t in os.environ.get("BENCH_PROFILE_TARGETS", ",".join(GATEWAYS + ["pgbouncer"])).split(",")
                   if t.strip()]
CLK_TCK = os.sysconf("SC_CLK_TCK")
HOST = "127.0.0.1"


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Fail(Exception):
    pass


# ----- processes and cleanup -------------------------------------------------------

CLEANUPS = []  # callables, run in reverse order


def cleanup_all():
    while CLEANUPS:
        fn = CLEANUPS.pop()
        try:
            fn()
        except Exception as e:  # keep cleaning
            log(f"cleanup step failed: {e}")


def on_signal(signum, _frame):
    raise SystemExit(128 + signum)


def stop_process(proc, name, sig=signal.SIGTERM, grace=15.0):
    if proc.poll() is not None:
        return
    log(f"stopping {name} (pid {proc.pid})")
    try:
        proc.send_signal(sig)
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def start_process(name, argv, logfile, env=None, cwd=None):
    out = open(logfile, "ab")
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
        env=env, cwd=cwd, start_new_session=True,
    )
    out.close()
    return proc


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_tcp(port, proc, name, logfile, timeout=60.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise Fail(f"{name} exited with {proc.returncode}:\n{tail(logfile)}")
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise Fail(f"{name} did not listen on {port} within {timeout}s:\n{tail(logfile)}")


def tail(path, lines=30):
    try:
        with open(path, "rb") as f:
            return b"\n".join(f.read().splitlines()[-lines:]).decode("utf-8", "replace")
    except OSError:
        return "(no log)"


def client_env(password):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PGPASSWORD"] = password
    env["PGAPPNAME"] = "portcullis-bench"
    env["LC_ALL"] = "C"
    return env


def run(argv, **kw):
    kw.setdefault("check", True)
    try:
        return subprocess.run(argv, text=True, capture_output=True, **kw)
    except subprocess.CalledProcessError as e:
        raise Fail(f"{' '.join(map(str, argv))} failed ({e.returncode}):\n{e.stdout}\n{e.stderr}")


# ----- /proc accounting ------------------------------------------------------------


def proc_stat(pid):
    """(utime, stime, cutime, cstime, ppid) in clock ticks, or None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    rest = data[data.rindex(")") + 2:].split()
    # rest[0] is field 3 (state); utime is field 14 -> rest[11]
    return int(rest[11]), int(rest[12]), int(rest[13]), int(rest[14]), int(rest[1])


def own_ticks(pid):
    s = proc_stat(pid)
    return (s[0] + s[1]) if s else 0


def own_user_sys(pid):
    s = proc_stat(pid)
    return (s[0], s[1]) if s else (0, 0)


def postgres_ticks(postmaster_pid):
    """CPU of the postmaster, of its reaped children (cutime) and of its live children."""
    s = proc_stat(postmaster_pid)
    if not s:
        return 0
    total = s[0] + s[1] + s[2] + s[3]
    for d in os.listdir("/proc"):
        if d.isdigit():
            c = proc_stat(int(d))
            if c and c[4] == postmaster_pid:
                total += c[0] + c[1]
    return total


def machine_busy_ticks():
    with open("/proc/stat") as f:
        parts = f.readline().split()[1:]
    v = [int(x) for x in parts]
    # user nice system idle iowait irq softirq steal guest guest_nice
    return v[0] + v[1] + v[2] + v[5] + v[6] + v[7]


def children_ticks():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (r.ru_utime + r.ru_stime) * CLK_TCK


def vm_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise Fail(f"no VmRSS for {pid}")


# ----- setup -----------------------------------------------------------------------


def find_pg_bin():
    cands = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(re.sub(r"\D", "", p.split("/")[-2]) or 0),
    )
    cands = [c for c in cands if os.path.exists(os.path.join(c, "initdb"))]
    if not cands:
        raise Fail("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin")
    return cands[-1]


def ensure_pgbouncer():
    if shutil.which("pgbouncer"):
        return shutil.which("pgbouncer")
    log("installing pgbouncer from the OS packages")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    r = subprocess.run(["apt-get", "install", "-y", "pgbouncer"], env=env, capture_output=True, text=True)
    if r.returncode != 0:
        run(["apt-get", "update"], env=env)
        run(["apt-get", "install", "-y", "pgbouncer"], env=env)
    path = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not os.path.exists(path):
        raise Fail("pgbouncer is still missing after apt-get install")
    return path


def demo_policies_toml():
    """[[policies]] for the demo policy set: guardrails, approvals and pii-mask with their
    demo settings, as `portcullis demo` loads them (decision cache on, unless
    BENCH_DECISION_CACHE=0)."""
    names = ["guardrails", "approvals", "pii-mask"]
    wasms = {n: os.path.join(REPO, "target", "policies", f"{n}.wasm") for n in names}
    if not all(os.path.isfile(w) for w in wasms.values()):
        log("bash policies-rs/build.sh " + " ".join(names))
        r = subprocess.run(["bash", os.path.join(REPO, "policies-rs", "build.sh"), *names], cwd=REPO,
                           stdout=sys.stderr, stderr=sys.stderr)
        if r.returncode != 0 or not all(os.path.isfile(w) for w in wasms.values()):
            raise Fail("building the demo policies failed")
    out = []
    for n in names:
        out.append(f'\n[[policies]]\nid = "{n}"\npath = "{wasms[n]}"\ndecision_cache = {str(DECISION_CACHE).lower()}\n'
                   "[policies.settings]\n")
        with open(os.path.join(REPO, "policies-rs", n, "demo-settings.toml")) as f:
            for line in f:
                t = line.strip()
                # A table of the settings file becomes a table of this entry's settings.
                if t.startswith("[[") and t.endswith("]]"):
                    out.append(f"[[policies.settings.{t[2:-2].strip()}]]\n")
                elif t.startswith("[") and t.endswith("]"):
                    out.append(f"[policies.settings.{t[1:-1].strip()}]\n")
                else:
                    out.append(line)
    return "".join(out)


def build_gateway():
    binary = os.path.join(REPO, "target", "release", "portcullis")
    if not SKIP_BUILD:
        log("cargo build --release -p portcullis (a no-op when up to date)")
        r = subprocess.run(["cargo", "build", "--release", "-p", "portcullis"], cwd=REPO,
                           stdout=sys.stderr, stderr=sys.stderr)
        if r.returncode != 0:
            raise Fail("cargo build --release -p portcullis failed")
    if not os.access(binary, os.X_OK):
        raise Fail(f"{binary} is missing")
    return binary


class RunAs:
    """Runs programs as the `postgres` OS user when we are root (initdb/postgres refuse root)."""

    def __init__(self):
        self.root = os.geteuid() == 0
        if self.root:
            pw = pwd.getpwnam("postgres")
            self.uid, self.gid = pw.pw_uid, pw.pw_gid

    def argv(self, argv):
        if not self.root:
            return list(argv)
        return ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups", "--"] + list(argv)

    def chown(self, path):
        if self.root:
            os.chown(path, self.uid, self.gid)


def write_file(path, text, mode=0o600, runas=None):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    if runas:
        runas.chown(path)


class Env:
    pass


def setup(env):
    env.runas = RunAs()
    env.pg_bin = find_pg_bin()
    env.pgbench = os.path.join(env.pg_bin, "pgbench")
    env.psql = os.path.join(env.pg_bin, "psql")
    env.pgbouncer_bin = ensure_pgbouncer()
    src_binary = build_gateway()

    env.dir = tempfile.mkdtemp(prefix="portcullis-bench-", dir="/tmp")
    CLEANUPS.append(lambda: shutil.rmtree(env.dir, ignore_errors=True))
    os.chmod(env.dir, 0o700)
    env.runas.chown(env.dir)
    # Copy the binary so a concurrent rebuild cannot swap it mid-run.
    env.gateway_bin = os.path.join(env.dir, "portcullis")
    shutil.copy2(src_binary, env.gateway_bin)
    log(f"work dir {env.dir}")

    # --- PostgreSQL ---
    env.pg_password = secrets.token_hex(16)
    data = os.path.join(env.dir, "data")
    pwfile = os.path.join(env.dir, "pwfile")
    write_file(pwfile, env.pg_password + "\n", runas=env.runas)
    log(f"initdb ({env.pg_bin})")
    run(env.runas.argv([os.path.join(env.pg_bin, "initdb"), "-D", data, "-U", "postgres",
                        f"--pwfile={pwfile}", "--auth=scram-sha-256", "-E", "UTF8",
                        "--locale=C", "--no-sync"]), cwd=env.dir)
    os.remove(pwfile)
    env.pg_port = free_port()
    conf = {
        "listen_addresses": HOST,
        "port": str(env.pg_port),
        "unix_socket_directories": env.dir,
        "max_connections": str(PG_MAX_CONNECTIONS),
        "shared_buffers": "128MB",
        "fsync": "on" if PG_DURABLE else "off",
        "synchronous_commit": "on" if PG_DURABLE else "off",
        "full_page_writes": "on" if PG_DURABLE else "off",
        "password_encryption": "scram-sha-256",
        "logging_collector": "off",
        "lc_messages": "C",
    }
    with open(os.path.join(data, "postgresql.conf"), "a") as f:
        f.write("\n# ---- portcullis bench ----\n")
        for k, v in conf.items():
            f.write(f"{k} = '{v}'\n")
    write_file(os.path.join(data, "pg_hba.conf"),
               "host all all 127.0.0.1/32 scram-sha-256\nlocal all all scram-sha-256\n",
               runas=env.runas)
    pg_log = os.path.join(env.dir, "postgres.log")
    log(f"starting PostgreSQL on {HOST}:{env.pg_port} (max_connections={PG_MAX_CONNECTIONS})")
    env.pg = start_process("postgres", env.runas.argv([os.path.join(env.pg_bin, "postgres"), "-D", data]),
                           pg_log, cwd=env.dir)
    # SIGINT = fast shutdown; the data dir is removed afterwards anyway.
    CLEANUPS.append(lambda: stop_process(env.pg, "postgres", signal.SIGINT, grace=30))
    wait_tcp(env.pg_port, env.pg, "postgres", pg_log)
    penv = client_env(env.pg_password)
    for _ in range(100):
        r = subprocess.run([env.psql, "-X", "-Atq", "-h", HOST, "-p", str(env.pg_port), "-U", "postgres",
                            "-d", "postgres", "-c", "select 1"], env=penv, capture_output=True, text=True)
        if r.returncode == 0:
            break
        time.sleep(0.2)
    else:
        raise Fail(f"PostgreSQL does not accept logins: {r.stderr}\n{tail(pg_log)}")
    env.pg_version = psql(env, "show server_version")
    log(f"pgbench -i -s {SCALE}")
    run([env.pgbench, "-i", "-q", "-s", str(SCALE), "-h", HOST, "-p", str(env.pg_port), "-U", "postgres",
         "postgres"], env=penv)
    env.pg_verifier = psql(env, "select rolpassword from pg_authid where rolname = 'postgres'")

    # --- gateway ---
    env.bench_password = secrets.token_hex(12)
    verifier = run([env.gateway_bin, "passwd", "--stdin"], input=env.bench_password + "\n").stdout.strip()
    env.gw_port, env.gw_admin = free_port(), free_port()
    gw_conf = os.path.join(env.dir, "portcullis.toml")
    write_file(gw_conf, f"""[server]
listen = "{HOST}:{env.gw_port}"
max_connections = 100000
session_threads = {SESSION_THREADS}

[admin]
listen = "{HOST}:{env.gw_admin}"

[upstream]
host = "{HOST}"
port = {env.pg_port}
user = "postgres"
password = "{env.pg_password}"

[databases."*"]

[[identities]]
name = "bench"
kind = "service"
groups = ["bench"]
scram = "{verifier}"
{EXTRA_TOML}
""")
    gw_log = os.path.join(env.dir, "portcullis.log")
    run([env.gateway_bin, "check-config", "-c", gw_conf])
    log(f"starting the gateway on {HOST}:{env.gw_port}")
    env.gw = start_process("portcullis", [env.gateway_bin, "serve", "--config", gw_conf], gw_log,
                           env={k: v for k, v in os.environ.items() if not k.startswith("PORTCULLIS")})
    CLEANUPS.append(lambda: stop_process(env.gw, "portcullis"))
    wait_tcp(env.gw_port, env.gw, "portcullis", gw_log)
    env.gw_log = gw_log
    env.variants, env.variant_ports = {}, {}
    for variant in VARIANTS:
        with open(gw_conf) as f:
            text = f.read()
        port, admin = free_port(), free_port()
        text = text.replace(f"{HOST}:{env.gw_port}", f"{HOST}:{port}", 1)
        text = text.replace(f"{HOST}:{env.gw_admin}", f"{HOST}:{admin}", 1)
        if variant == "policies":
            text += demo_policies_toml()
            what = "the demo policy set"
        else:
            env.audit_dir = os.path.join(env.dir, "audit-trail")
            text += f'\n[audit]\ndir = "{env.audit_dir}"\n'
            what = "the audit trail (file sink, defaults)"
        conf = os.path.join(env.dir, f"portcullis-{variant}.toml")
        write_file(conf, text)
        vlog = os.path.join(env.dir, f"portcullis-{variant}.log")
        run([env.gateway_bin, "check-config", "-c", conf])
        log(f"starting the gateway with {what} on {HOST}:{port}")
        proc = start_process(f"portcullis-{variant}", [env.gateway_bin, "serve", "--config", conf], vlog,
                             env={k: v for k, v in os.environ.items() if not k.startswith("PORTCULLIS")})
        CLEANUPS.append(lambda p=proc, n=f"portcullis-{variant}": stop_process(p, n))
        wait_tcp(port, proc, f"portcullis-{variant}", vlog)
        env.variants[variant] = proc
        env.variant_ports[variant] = port

    # --- pgbouncer (session mode, SCRAM with the upstream user's verifier) ---
    env.pgb_port = free_port()
    pgb_dir = os.path.join(env.dir, "pgbouncer")
    os.mkdir(pgb_dir, 0o700)
    env.runas.chown(pgb_dir)
    write_file(os.path.join(pgb_dir, "userlist.txt"), f'"postgres" "{env.pg_verifier}"\n', runas=env.runas)
    pgb_ini = os.path.join(pgb_dir, "pgbouncer.ini")
    write_file(pgb_ini, f"""[databases]
* = host={HOST} port={env.pg_port}

[pgbouncer]
listen_addr = {HOST}
listen_port = {env.pgb_port}
unix_socket_dir =
auth_type = scram-sha-256
auth_file = {pgb_dir}/userlist.txt
pool_mode = session
max_client_conn = 2000
default_pool_size = 40
max_db_connections = 0
ignore_startup_parameters = extra_float_digits
pidfile = {pgb_dir}/pgbouncer.pid
logfile = {pgb_dir}/pgbouncer.log
log_connections = 0
log_disconnections = 0
""", runas=env.runas)
    log(f"starting pgbouncer on {HOST}:{env.pgb_port}")
    pgb_log = os.path.join(env.dir, "pgbouncer.out")
    env.pgb = start_process("pgbouncer", env.runas.argv([env.pgbouncer_bin, pgb_ini]), pgb_log, cwd=pgb_dir)
    CLEANUPS.append(lambda: stop_process(env.pgb, "pgbouncer", signal.SIGINT))
    wait_tcp(env.pgb_port, env.pgb, "pgbouncer", pgb_log)
    env.pgb_version = run([env.pgbouncer_bin, "--version"]).stdout.splitlines()[0]

    env.targets = {
        "direct": (env.pg_port, "postgres", env.pg_password),
        "gateway": (env.gw_port, "bench", env.bench_password),
        "pgbouncer": (env.pgb_port, "postgres", env.pg_password),
    }
    for variant in VARIANTS:
        env.targets[variant] = (env.variant_ports[variant], "bench", env.bench_password)
    for t in TARGETS:
        port, user, pw = env.targets[t]
        out = run([env.psql, "-X", "-Atq", "-h", HOST, "-p", str(port), "-U", user, "-d", "postgres",
                   "-c", "select count(*) from pgbench_branches"], env=client_env(pw)).stdout.strip()
        if out != str(SCALE):
            raise Fail(f"{t}: unexpected answer {out!r}")
    log(f"all {len(TARGETS)} targets answer")


def psql(env, sql):
    return run([env.psql, "-X", "-Atq", "-h", HOST, "-p", str(env.pg_port), "-U", "postgres", "-d", "postgres",
                "-c", sql], env=client_env(env.pg_password)).stdout.strip()


# ----- pgbench ---------------------------------------------------------------------


def percentile(sorted_vals, q):
    if not sorted_vals:
        return float("nan")
    k = max(0, min(len(sorted_vals) - 1, int(round(q * (len(sorted_vals) - 1)))))
    return sorted_vals[k]


def gateway_pid(env, target):
    """The gateway process serving `target` (the pass-through one for direct/pgbouncer)."""
    return env.variants[target].pid if target in env.variants else env.gw.pid


def round_order(rnd):
    """The targets in the order round `rnd` runs them: the gateways swap order every other
    round, so none of them always runs later (PostgreSQL's tables grow under writes)."""
    gws = GATEWAYS if rnd % 2 == 1 else list(reversed(GATEWAYS))
    return ["direct", *gws, "pgbouncer"]


def pgbench(env, target, protocol, clients, seconds, tag, keep_log=True):
    port, user, pw = env.targets[target]
    prefix = os.path.join(env.dir, f"log-{tag}")
    argv = [env.pgbench, "-n", "-b", BUILTIN, "-M", protocol, "-T", str(seconds), "-c", str(clients),
            "-j", str(min(clients, 2)), "-h", HOST, "-p", str(port), "-U", user]
    if keep_log:
        argv += ["-l", f"--log-prefix={prefix}"]
    argv.append("postgres")

    gw_pid = gateway_pid(env, target)
    gw_us0 = own_user_sys(gw_pid)
    before = {
        "gateway": own_ticks(gw_pid),
        "pgbouncer": own_ticks(env.pgb.pid),
        "postgres": postgres_ticks(env.pg.pid),
        "pgbench": children_ticks(),
        "machine": machine_busy_ticks(),
    }
    t0 = time.time()
    r = subprocess.run(argv, env=client_env(pw), capture_output=True, text=True, timeout=seconds + 120)
    elapsed = time.time() - t0
    time.sleep(0.3)  # let the postmaster reap exiting backends (their CPU lands in cutime)
    gw_us1 = own_user_sys(gw_pid)
    after = {
        "gateway": own_ticks(gw_pid),
        "pgbouncer": own_ticks(env.pgb.pid),
        "postgres": postgres_ticks(env.pg.pid),
        "pgbench": children_ticks(),
        "machine": machine_busy_ticks(),
    }
    if r.returncode != 0:
        raise Fail(f"pgbench against {target} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    m = re.search(r"^tps = ([0-9.]+)", r.stdout, re.M)
    n = re.search(r"number of transactions actually processed: (\d+)", r.stdout)
    nf = re.search(r"number of failed transactions: (\d+)", r.stdout)
    if not m or not n:
        raise Fail(f"cannot parse pgbench output:\n{r.stdout}")
    tps, txs = float(m.group(1)), int(n.group(1))
    if nf and int(nf.group(1)) > 0:
        raise Fail(f"pgbench against {target}: {nf.group(1)} failed transactions")
    res = {"target": target, "protocol": protocol, "clients": clients, "tps": tps, "transactions": txs,
           "elapsed_s": round(elapsed, 2)}
    if keep_log:
        lat = []
        for path in glob.glob(prefix + ".*"):
            with open(path) as f:
                for line in f:
                    parts = line.split()
                    if len(parts) >= 3:
                        lat.append(int(parts[2]))
            os.remove(path)
        lat.sort()
        res["p50_us"] = percentile(lat, 0.50)
        res["p99_us"] = percentile(lat, 0.99)
        res["logged_transactions"] = len(lat)
    d = {k: after[k] - before[k] for k in before}
    ours = d["gateway"] + d["pgbouncer"] + d["postgres"] + d["pgbench"]
    per_tx = lambda ticks: ticks / CLK_TCK * 1e6 / max(txs, 1)  # noqa: E731
    res["cpu_us_per_tx"] = {k: round(per_tx(d[k]), 1) for k in ("gateway", "pgbouncer", "postgres", "pgbench")}
    res["cpu_us_per_tx"]["total_ours"] = round(per_tx(ours), 1)
    res["cpu_us_per_tx"]["gateway_user"] = round(per_tx(gw_us1[0] - gw_us0[0]), 1)
    res["cpu_us_per_tx"]["gateway_sys"] = round(per_tx(gw_us1[1] - gw_us0[1]), 1)
    res["foreign_cores"] = round(max(0.0, (d["machine"] - ours) / CLK_TCK / elapsed), 2)
    res["ours_cores"] = round(ours / CLK_TCK / elapsed, 2)
    return res


def run_matrix(env):
    results = []
    log("warm-up: 3 s per target")
    for t in TARGETS:
        pgbench(env, t, "simple", 8, 3, f"warm-{t}", keep_log=False)
    total = ROUNDS * len(PROTOCOLS) * len(CLIENTS) * len(TARGETS)
    i = 0
    for rnd in range(1, ROUNDS + 1):
        for proto in PROTOCOLS:
            for c in CLIENTS:
                for t in round_order(rnd):
                    i += 1
                    res = pgbench(env, t, proto, c, SECONDS, f"{rnd}-{proto}-{c}-{t}")
                    res["round"] = rnd
                    results.append(res)
                    log(f"[{i}/{total}] round {rnd} {proto:8} c={c:<3} {t:9} tps={res['tps']:9.0f} "
                        f"p50={res['p50_us']}us p99={res['p99_us']}us gw_cpu={res['cpu_us_per_tx']['gateway']}us/tx "
                        f"foreign={res['foreign_cores']} cores")
    return results


# ----- profile mode -------------------------------------------------------------------


def with_observer(env, target, protocol, clients, seconds, observer_argv):
    """Runs pgbench against target while observer_argv (perf/strace attached to a pid) runs."""
    obs = subprocess.Popen(observer_argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, start_new_session=True)
    time.sleep(1.0)
    try:
        res = pgbench(env, target, protocol, clients, seconds, f"prof-{target}", keep_log=False)
    finally:
        obs.send_signal(signal.SIGINT)
        out, err = obs.communicate(timeout=120)
    return res, out, err


def trim_perf(line):
    """A perf report line without the trailing padding perf adds."""
    return re.sub(r"\s+(-\s+)*$", "", line)


def profile(env, stamp):
    out = []
    w = out.append
    w(f"# Gateway profile — {stamp}")
    w("")
    w(f"tokio worker threads: {os.environ.get('TOKIO_WORKER_THREADS', 'default (one per core)')}")
    w("")
    w(f"pgbench -n -b {BUILTIN} -T {SECONDS} -c {PROFILE_CLIENTS} -j {min(PROFILE_CLIENTS, 2)}; counters are per transaction. "
      "The observers slow the runs (strace a lot); the counts, not the TPS, are what matter here.")
    for proto in PROTOCOLS:
        observed = [(t, env.pgb.pid if t == "pgbouncer" else gateway_pid(env, t))
                    for t in PROFILE_TARGETS if t in GATEWAYS + ["pgbouncer"]]
        for target, pid in observed:
            w("")
            w(f"## {target}, -M {proto}")
            res, _, err = with_observer(env, target, proto, PROFILE_CLIENTS, SECONDS,
                                        ["perf", "stat", "-x", ",", "-e",
                                         "task-clock,context-switches,cpu-migrations,page-faults", "-p", str(pid)])
            txs = res["transactions"]
            w("")
            w(f"perf stat ({res['tps']:.0f} TPS, {txs} transactions):")
            w("")
            for line in err.splitlines():
                f = line.split(",")
                if len(f) >= 3 and f[0].replace(".", "").isdigit():
                    w(f"- {f[2]}: {float(f[0]) / txs:.3f} per transaction" + (" (ms)" if f[2] == "task-clock" else ""))
            res, _, err = with_observer(env, target, proto, PROFILE_CLIENTS, max(3, SECONDS // 2),
                                        ["strace", "-c", "-f", "-p", str(pid)])
            txs = res["transactions"]
            w("")
            w(f"strace -c -f ({txs} transactions): syscalls per transaction")
            w("")
            for line in err.splitlines():
                f = line.split()
                if len(f) >= 5 and f[0].replace(".", "").isdigit() and f[-1] not in ("total", "syscall"):
                    calls = int(f[3])
                    if calls / txs >= 0.01:
                        w(f"- {f[-1]}: {calls / txs:.2f}")
            if target in GATEWAYS:
                data = os.path.join(env.dir, f"perf-{target}-{proto}.data")
                graph = ["--call-graph", "dwarf,16384"] if CALLGRAPH else []
                res, _, err = with_observer(env, target, proto, PROFILE_CLIENTS, SECONDS,
                                            ["perf", "record", "-F", "1999" if not CALLGRAPH else "499", *graph,
                                             "-o", data, "-p", str(pid)])
                rep = subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", "dso,symbol",
                                      "--stdio", "--percent-limit", "0.7", "-g", "none"], capture_output=True, text=True)
                dso = subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", "comm,dso", "--stdio",
                                      "-g", "none"], capture_output=True, text=True)
                by_thread = subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", "comm,symbol",
                                            "--stdio", "--percent-limit", "0.3", "-g", "none"],
                                           capture_output=True, text=True)
                w("")
                w("perf record, share of samples by thread and binary:")
                w("")
                w("```")
                w("\n".join(l for l in dso.stdout.splitlines() if l.strip() and not l.startswith("#"))[:2000])
                w("```")
                w("")
                w(f"perf record -F 1999 (flat, {res['transactions']} transactions), top symbols:")
                w("")
                w("```")
                w("\n".join(trim_perf(l) for l in rep.stdout.splitlines() if l.strip() and not l.startswith("#"))[:8000])
                w("```")
                w("")
                w("by thread (tokio-rt-worker: session tasks; portcullis-audi: the audit writer), symbols ≥ 0.3%:")
                w("")
                w("```")
                w("\n".join(trim_perf(l) for l in by_thread.stdout.splitlines()
                          if l.strip() and not l.startswith("#"))[:10000])
                w("```")
                if CALLGRAPH:
                    calls = subprocess.run(["perf", "report", "-i", data, "--children", "--sort", "symbol", "--stdio",
                                            "--percent-limit", "1.5", "-g", "none"], capture_output=True, text=True)
                    w("")
                    w("with callees (--children: a function's share includes what it calls), ≥ 1.5%:")
                    w("")
                    w("```")
                    w("\n".join(trim_perf(l) for l in calls.stdout.splitlines()
                              if l.strip() and not l.startswith("#"))[:10000])
                    w("```")
    return "\n".join(out)


# ----- idle connections --------------------------------------------------------------


def hold_idle(port, user, pw, pid):
    socks = []
    t0 = time.time()
    try:
        for _ in range(IDLE_CONNS):
            socks.append(pgwire_idle.login(HOST, port, user, pw, "postgres"))
        login_s = time.time() - t0
        time.sleep(2.0)
        held = vm_rss_kib(pid)
        threads = len(os.listdir(f"/proc/{pid}/task"))
    finally:
        for s in socks:
            s.close()
    time.sleep(2.0)
    return held, threads, login_s, vm_rss_kib(pid)


def idle_rss(env, target, pid, name):
    """IDLE_BATCHES batches of IDLE_CONNS idle logins, one after the other: the first
    measures the growth per connection, the later ones (each after the previous batch is
    closed) show whether closed sessions' memory is reused."""
    port, user, pw = env.targets[target]
    before = vm_rss_kib(pid)
    batches = []
    for b in range(IDLE_BATCHES):
        held, threads, login_s, released = hold_idle(port, user, pw, pid)
        batches.append({"held_kib": held, "after_close_kib": released, "login_seconds": round(login_s, 1),
                        "threads": threads})
        log(f"idle {name} batch {b + 1}: {held} KiB with {IDLE_CONNS} connections, {released} KiB after "
            f"closing; logins took {login_s:.1f}s")
    first = batches[0]
    res = {"target": name, "connections": IDLE_CONNS, "rss_before_kib": before, "rss_after_kib": first["held_kib"],
           "kib_per_conn": round((first["held_kib"] - before) / IDLE_CONNS, 1),
           "rss_after_close_kib": first["after_close_kib"], "batches": batches,
           "threads_while_held": first["threads"], "login_seconds": first["login_seconds"]}
    log(f"idle {name}: {res['kib_per_conn']} KiB per connection")
    return res


def login_cost(env, count=200):
    """Milliseconds per sequential login (connect, startup, SCRAM, ReadyForQuery, close)."""
    out = {}
    pids = {"gateway": env.gw.pid, "pgbouncer": env.pgb.pid, **{v: p.pid for v, p in env.variants.items()}}
    for t in TARGETS:
        port, user, pw = env.targets[t]
        times = []
        ticks0 = own_ticks(pids[t]) if t in pids else 0
        for _ in range(count):
            t0 = time.perf_counter()
            pgwire_idle.login(HOST, port, user, pw, "postgres").close()
            times.append((time.perf_counter() - t0) * 1000)
        times.sort()
        out[t] = {"median_ms": round(statistics.median(times), 2), "p90_ms": round(percentile(times, 0.9), 2)}
        if t in pids:
            out[t]["proxy_cpu_ms"] = round((own_ticks(pids[t]) - ticks0) / CLK_TCK * 1000 / count, 2)
        log(f"login {t}: median {out[t]['median_ms']} ms, p90 {out[t]['p90_ms']} ms, "
            f"proxy CPU {out[t].get('proxy_cpu_ms', '-')} ms/login")
    return out


# ----- report ------------------------------------------------------------------------


def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else float("nan")


def fmt_ratio(vals):
    if not vals:
        return "n/a"
    if len(vals) == 1:
        return f"{vals[0]:.2f}"
    return f"{statistics.median(vals):.2f} ({min(vals):.2f}–{max(vals):.2f})"


def ms(us):
    return f"{us / 1000:.3f}"


def report(env, results, idle, logins, started, info):
    lines = []
    w = lines.append
    w(f"# Portcullis gateway benchmark — {started}")
    w("")
    w(f"- machine: {info['cpu']} × {info['cores']} cores, {info['kernel']} (shared with other jobs; see the *foreign* column)")
    durability = "fsync=on, synchronous_commit=on" if PG_DURABLE else "fsync=off"
    w(f"- PostgreSQL {env.pg_version} ({durability}, shared_buffers=128MB, max_connections={PG_MAX_CONNECTIONS}, SCRAM), "
      f"pgbench scale {SCALE}, {env.pgb_version}")
    variants_text = "".join(
        {"policies": " (target *policies*: a second gateway with the demo policy set)",
         "audit": " (target *audit*: a second gateway with `[audit]` at its defaults: file sink, fsync = \"batch\", "
                  "statement_text = \"redacted\")"}[v] for v in VARIANTS)
    w(f"- gateway: {info['git']}; no policies{variants_text}{' (extra config: ' + repr(EXTRA_TOML) + ')' if EXTRA_TOML else ''}; logs at info; "
      f"tokio worker threads: {os.environ.get('TOKIO_WORKER_THREADS', 'default (one per core)')}; "
      f"session threads: {SESSION_THREADS or 'off (shared runtime)'}"
      + "".join(f"; {k}={v}" for k, v in sorted(os.environ.items()) if k == "LD_PRELOAD" or k.startswith("MALLOC_")))
    w("- pgbouncer: pool_mode=session, auth_type=scram-sha-256 (auth_file holds the upstream user's SCRAM verifier), "
      "default_pool_size=40")
    order = ", ".join(TARGETS)
    swap = (f"; the gateways ({', '.join(GATEWAYS)}) swap order every other round" if VARIANTS else "")
    w(f"- each run: `pgbench -n -b {BUILTIN} -M <protocol> -T {SECONDS} -c N -j min(N,2) -l`; {ROUNDS} round{'s' if ROUNDS != 1 else ''}; within a round the "
      f"targets run back to back ({order}{swap}) so ratios compare neighbouring runs")
    w("- TPS, p50, p99: median over rounds (latencies from the per-transaction log, per run). Ratios: median of the "
      "per-round ratios, (min–max) over rounds")
    w(f"- load average at the start: {info.get('loadavg', '?')}; at the end: {load_average()}")
    w("")
    w("## Throughput")
    w("")
    var_head = "".join(f" {v} TPS |" for v in VARIANTS)
    var_ratio = "".join(f" {v}/gateway |" for v in VARIANTS)
    w(f"| protocol | clients | direct TPS | gateway TPS |{var_head} pgbouncer TPS | gateway/direct | gateway/pgbouncer |{var_ratio}")
    w("|---|---:|---:|---:|---:|---:|---:|" + "---:|---:|" * len(VARIANTS))
    summary = []
    for proto in PROTOCOLS:
        for c in CLIENTS:
            sel = {t: [r for r in results if r["protocol"] == proto and r["clients"] == c and r["target"] == t]
                   for t in TARGETS}
            by_round = {t: {r["round"]: r for r in sel[t]} for t in TARGETS}
            rounds = sorted(set(by_round["gateway"]))
            gd = [by_round["gateway"][k]["tps"] / by_round["direct"][k]["tps"] for k in rounds if k in by_round["direct"]]
            gp = [by_round["gateway"][k]["tps"] / by_round["pgbouncer"][k]["tps"] for k in rounds if k in by_round["pgbouncer"]]
            vr = {v: {k: by_round[v][k]["tps"] / by_round["gateway"][k]["tps"] for k in rounds if k in by_round[v]}
                  for v in VARIANTS}
            tps = {t: med([r["tps"] for r in sel[t]]) for t in TARGETS}
            var_tps = "".join(f" {tps[v]:.0f} |" for v in VARIANTS)
            var_r = "".join(f" {fmt_ratio(list(vr[v].values()))} |" for v in VARIANTS)
            w(f"| {proto} | {c} | {tps['direct']:.0f} | {tps['gateway']:.0f} |{var_tps} {tps['pgbouncer']:.0f} | "
              f"{fmt_ratio(gd)} | {fmt_ratio(gp)} |{var_r}")
            summary.append({"protocol": proto, "clients": c, "sel": sel, "by_round": by_round, "gd": gd, "gp": gp,
                            "vr": vr, "tps": tps})
    for v in VARIANTS:
        w("")
        w(f"## {v} vs the pass-through gateway, per round")
        w("")
        w(f"TPS of *{v}* divided by the TPS of *gateway* in the same round (the two ran back to back), and the "
          "gateway process's CPU per transaction (user+system) of each; the foreign load is the larger of the two runs'.")
        w("")
        w(f"| protocol | clients | round | gateway TPS | {v} TPS | {v}/gateway | gateway CPU µs/tx | {v} CPU µs/tx "
          "| foreign cores |")
        w("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for s in summary:
            br = s["by_round"]
            for k in sorted(s["vr"][v]):
                g, x = br["gateway"][k], br[v][k]
                w(f"| {s['protocol']} | {s['clients']} | {k} | {g['tps']:.0f} | {x['tps']:.0f} | {s['vr'][v][k]:.3f} | "
                  f"{g['cpu_us_per_tx']['gateway']:.1f} | {x['cpu_us_per_tx']['gateway']:.1f} | "
                  f"{max(g['foreign_cores'], x['foreign_cores']):.2f} |")
            vals = list(s["vr"][v].values())
            if vals:
                gc = med([br["gateway"][k]["cpu_us_per_tx"]["gateway"] for k in s["vr"][v]])
                xc = med([br[v][k]["cpu_us_per_tx"]["gateway"] for k in s["vr"][v]])
                w(f"| {s['protocol']} | {s['clients']} | **median** | {s['tps']['gateway']:.0f} | {s['tps'][v]:.0f} | "
                  f"**{statistics.median(vals):.3f}** | {gc:.1f} | {xc:.1f} (+{xc - gc:.1f}) | |")
    if AUDIT and info.get("audit_verify"):
        w("")
        w(f"Audit trail after the run: `portcullis audit verify --sealed`: {info['audit_verify']}")
    w("")
    w("## Latency (ms, median over rounds)")
    w("")
    w("| protocol | clients | " + " | ".join(f"{t} p50 | {t} p99" for t in TARGETS) + " |")
    w("|---|---:|" + "---:|---:|" * len(TARGETS))
    for s in summary:
        cells = []
        for t in TARGETS:
            cells += [ms(med([r["p50_us"] for r in s["sel"][t]])), ms(med([r["p99_us"] for r in s["sel"][t]]))]
        w(f"| {s['protocol']} | {s['clients']} | " + " | ".join(cells) + " |")
    w("")
    w("## CPU per transaction (µs, median over rounds)")
    w("")
    w("CPU time (user+system, from /proc) each process spent during the run divided by the transactions. "
      "*postgres* = postmaster + all its backends; *foreign* = machine-wide busy cores (/proc/stat, including irq/softirq "
      "time no process is charged for) minus this benchmark's processes: mostly other jobs on the machine, an upper bound; *ours* = cores used by the benchmark's processes.")
    w("")
    w("| protocol | clients | target | gateway (user + sys) | pgbouncer | postgres | pgbench | total | ours (cores) | foreign (cores) |")
    w("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for s in summary:
        for t in TARGETS:
            rs = s["sel"][t]
            cpu = lambda k: med([r["cpu_us_per_tx"][k] for r in rs])  # noqa: E731
            gw = f"{cpu('gateway'):.1f}"
            if t in GATEWAYS:
                gw += f" ({cpu('gateway_user'):.0f} + {cpu('gateway_sys'):.0f})"
            w(f"| {s['protocol']} | {s['clients']} | {t} | {gw} | {cpu('pgbouncer'):.1f} | "
              f"{cpu('postgres'):.1f} | {cpu('pgbench'):.1f} | {cpu('total_ours'):.1f} | "
              f"{med([r['ours_cores'] for r in rs]):.2f} | {med([r['foreign_cores'] for r in rs]):.2f} |")
    w("")
    w(f"## Memory with {IDLE_CONNS} idle client connections")
    w("")
    w("Logged-in connections (SCRAM, ReadyForQuery received) held open without queries; VmRSS of the process "
      "before and 2 s after the last login. Each gateway client connection also holds its own upstream "
      "PostgreSQL connection (no pooling); pgbouncer's idle clients hold no server connection.")
    w("")
    w("| process | RSS before (KiB) | RSS with idle conns (KiB) | KiB per idle connection | RSS after closing (KiB) | "
      "later batches: RSS held → after closing (KiB) | threads |")
    w("|---|---:|---:|---:|---:|---|---:|")
    for i in idle:
        if "error" in i:
            w(f"| {i['target']} | error: {i['error']} | | | | | |")
        else:
            later = ", ".join(f"{b['held_kib']} → {b['after_close_kib']}" for b in i["batches"][1:]) or "–"
            w(f"| {i['target']} | {i['rss_before_kib']} | {i['rss_after_kib']} | {i['kib_per_conn']} | "
              f"{i['rss_after_close_kib']} | {later} | {i['threads_while_held']} |")
    if logins:
        w("")
        w("## Login cost")
        w("")
        w("200 sequential logins per target (TCP connect, startup, SCRAM-SHA-256, ReadyForQuery, close), "
          "from a Python client that caches its PBKDF2 result. Through the gateway this includes opening and "
          "authenticating the upstream connection (a new PostgreSQL backend each time).")
        w("")
        w("| target | median ms | p90 ms | CPU of the gateway / pgbouncer process per login (ms) |")
        w("|---|---:|---:|---:|")
        for t in TARGETS:
            if t in logins:
                cpu = logins[t].get("proxy_cpu_ms")
                w(f"| {t} | {logins[t]['median_ms']:.2f} | {logins[t]['p90_ms']:.2f} | "
                  f"{'–' if cpu is None else f'{cpu:.2f}'} |")
    w("")
    w("## Targets")
    w("")
    w("| target | measured | met? |")
    w("|---|---|---|")
    for s in summary:
        floor = 0.45 if s["clients"] == 1 else 0.75
        if s["gd"]:
            m = statistics.median(s["gd"])
            w(f"| {s['protocol']} c={s['clients']}: gateway/direct ≥ {floor:.2f} | {m:.2f} | {'yes' if m >= floor else '**no**'} |")
        if s["gp"]:
            m = statistics.median(s["gp"])
            w(f"| {s['protocol']} c={s['clients']}: gateway/pgbouncer ≥ 1.20 | {m:.2f} | {'yes' if m >= 1.2 else '**no**'} |")
        for v in VARIANTS:
            vals = list(s["vr"][v].values())
            if vals:
                m, floor = statistics.median(vals), VARIANT_FLOOR[v]
                w(f"| {s['protocol']} c={s['clients']}: {v}/gateway ≥ {floor:.2f} | {m:.3f} (rounds: "
                  f"{', '.join(f'{x:.2f}' for x in vals)}) | {'yes' if m >= floor else '**no**'} |")
    for i in idle:
        if i["target"] == "gateway" and "kib_per_conn" in i:
            w(f"| gateway ≤ 64 KiB per idle connection | {i['kib_per_conn']} KiB | {'yes' if i['kib_per_conn'] <= 64 else '**no**'} |")
    w("")
    w("## Every run")
    w("")
    w("| round | protocol | clients | target | TPS | p50 ms | p99 ms | gateway CPU µs/tx | foreign cores |")
    w("|---:|---|---:|---|---:|---:|---:|---:|---:|")
    for r in results:
        w(f"| {r['round']} | {r['protocol']} | {r['clients']} | {r['target']} | {r['tps']:.0f} | {ms(r['p50_us'])} | "
          f"{ms(r['p99_us'])} | {r['cpu_us_per_tx']['gateway']:.1f} | {r['foreign_cores']:.2f} |")
    w("")
    return "\n".join(lines)


def machine_info():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    git = "?"
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True).stdout.strip()
        git = f"commit {head}" + (" + uncommitted changes" if dirty else "")
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "kernel": f"Linux {platform.release()}", "git": git,
            "loadavg": load_average()}


def load_average():
    """The 1/5/15-minute load averages, as `uptime` prints them."""
    try:
        with open("/proc/loadavg") as f:
            return ", ".join(f.read().split()[:3])
    except OSError:
        return "?"


def verify_audit_trail(env):
    """Stops the audit gateway (so its trail ends with `stop`) and verifies the trail."""
    proc = env.variants["audit"]
    stop_process(proc, "portcullis-audit")
    if proc.returncode not in (0, -signal.SIGTERM):
        raise Fail(f"the audit gateway exited with {proc.returncode}")
    r = subprocess.run([env.gateway_bin, "audit", "verify", "--sealed", env.audit_dir], capture_output=True, text=True)
    out = " ".join((r.stdout + r.stderr).split())[:400]
    if r.returncode != 0:
        raise Fail(f"portcullis audit verify --sealed {env.audit_dir} failed: {out}")
    log(f"audit trail verified: {out}")
    return out


def main():
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(soft, min(hard, 65536)) if hard != resource.RLIM_INFINITY else 65536
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if want < IDLE_CONNS * 2 + 200:
        raise Fail(f"open-file limit {want} is too low for {IDLE_CONNS} idle connections")
    started = datetime.datetime.now().astimezone()
    stamp = started.strftime("%Y%m%d-%H%M%S")
    info = machine_info()
    env = Env()
    try:
        setup(env)
        if PROFILE:
            text = profile(env, started.strftime("%Y-%m-%d %H:%M %Z"))
            os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
            path = os.path.join(HERE, "results", f"{stamp}-profile.md")
            with open(path, "w") as f:
                f.write(text + "\n")
            print(text)
            log(f"profile written to {path}")
            return 0
        results = run_matrix(env)
        idle = []
        for target, pid, name in (("gateway", env.gw.pid, "gateway"), ("pgbouncer", env.pgb.pid, "pgbouncer")):
            try:
                idle.append(idle_rss(env, target, pid, name))
            except (OSError, pgwire_idle.LoginError, Fail) as e:
                log(f"idle connections through {name} failed: {e}")
                idle.append({"target": name, "error": str(e)[:200]})
        if env.gw.poll() is not None:
            raise Fail(f"the gateway exited during the benchmark:\n{tail(env.gw_log)}")
        for v, proc in env.variants.items():
            if proc.poll() is not None:
                raise Fail(f"the {v} gateway exited during the benchmark ({proc.returncode})")
        try:
            logins = login_cost(env)
        except (OSError, pgwire_idle.LoginError) as e:
            log(f"login cost measurement failed: {e}")
            logins = {}
        if AUDIT:
            info["audit_verify"] = verify_audit_trail(env)
        text = report(env, results, idle, logins, started.strftime("%Y-%m-%d %H:%M %Z"), info)
        os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
        md = os.path.join(HERE, "results", f"{stamp}.md")
        with open(md, "w") as f:
            f.write(text + "\n")
        with open(os.path.join(HERE, "results", f"{stamp}.json"), "w") as f:
            json.dump({"started": started.isoformat(), "seconds": SECONDS, "rounds": ROUNDS, "info": info,
                       "pg_version": env.pg_version, "pgbouncer": env.pgb_version, "runs": results,
                       "idle": idle, "logins": logins}, f, indent=1)
        print(text)
        log(f"report written to {md}")
    except Fail as e:
        log(f"FAILED: {e}")
        return 1
    finally:
        cleanup_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
