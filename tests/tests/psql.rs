//! psql through the gateway, compared with psql straight against PostgreSQL.

use std::process::Stdio;
use std::time::Duration;

use portcullis_tests::tools::{CmdOutput, psql_command, run_async};
use portcullis_tests::{EnvOptions, TestEnv, psql, psql_c, unique};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::OnceCell;

static ENV: OnceCell<TestEnv> = OnceCell::const_new();

async fn env() -> &'static TestEnv {
    portcullis_tests::shared(&ENV, EnvOptions::default).await
}

/// Asserts that psql behaved identically through the gateway and directly.
#[track_caller]
fn assert_same(what: &str, gw: &CmdOutput, direct: &CmdOutput) {
    assert_eq!(
        (gw.code(), &gw.stdout, &gw.stderr),
        (direct.code(), &direct.stdout, &direct.stderr),
        "{what}: gateway (left) and direct (right) differ"
    );
}

#[tokio::test]
async fn multi_statement_string_in_one_query() {
    let env = env().await;
    let sql = "select 1 as a; select 'x' as b, null::int as c, 2.50::numeric as d; \
               create temp table t(x int); insert into t values (1), (2), (3); \
               update t set x = x * 10 where x > 1; select sum(x) from t";
    let gw = psql_c(&env.gateway_uri("alice", "demo"), sql).await;
    let direct = psql_c(&env.direct_uri("demo"), sql).await;
    gw.assert_success("psql -c through the gateway");
    assert_same("multi-statement -c", &gw, &direct);
    assert_eq!(
        gw.stdout,
        "1\nx||2.50\nCREATE TABLE\nINSERT 0 3\nUPDATE 2\n51\n"
    );
}

#[tokio::test]
async fn multi_statement_error_in_the_middle_of_one_query() {
    let env = env().await;
    // One simple-query message: an error aborts the rest of the string, and
    // the implicit transaction rolls back the earlier statements too.
    let schema = unique("psql_implicit");
    let sql = format!(
        "create schema {schema}; create table {schema}.t(x int); insert into {schema}.t values (1); \
         select 1/0; insert into {schema}.t values (2)"
    );
    let gw = psql_c(&env.gateway_uri("alice", "demo"), &sql).await;
    assert_eq!(gw.code(), 1, "stderr: {}", gw.stderr);
    assert!(
        gw.stderr.contains("ERROR:  division by zero"),
        "stderr: {}",
        gw.stderr
    );
    let check = psql_c(
        &env.direct_uri("demo"),
        &format!("select count(*) from pg_namespace where nspname = '{schema}'"),
    )
    .await;
    assert_eq!(
        check.stdout, "0\n",
        "the implicit transaction must have rolled back"
    );
}

#[tokio::test]
async fn script_statements_and_formats_match_direct() {
    let env = env().await;
    let script = r#"
\pset format aligned
\pset tuples_only off
select id, name, email from customers where id <= 3 order by id;
select status, count(*), sum(amount) from orders group by status order by status;
\x on
select * from secrets where id = 1;
\x off
\pset format unaligned
select array[1,2,3] as arr, '{"a": [1, 2]}'::jsonb as j, '\x00ff'::bytea as b, interval '1 day 2 hours' as i;
select null as n, ''::text as e, 'tab	and
newline' as t;
"#;
    let gw = psql(&env.gateway_uri("bob", "demo"), script).await;
    let direct = psql(&env.direct_uri("demo"), script).await;
    gw.assert_success("script");
    assert_same("script", &gw, &direct);
    assert!(
        gw.stdout.contains("alice.anderson@example.org"),
        "{}",
        gw.stdout
    );
    assert!(gw.stdout.contains("(3 rows)"), "{}", gw.stdout);
    assert!(
        gw.stdout
            .contains("{1,2,3}|{\"a\": [1, 2]}|\\x00ff|1 day 02:00:00"),
        "{}",
        gw.stdout
    );
}

#[tokio::test]
async fn describe_meta_commands_match_direct() {
    let env = env().await;
    for cmd in [
        "\\d customers",
        "\\d+ orders",
        "\\dv public.*",
        "\\dt public.*",
        "\\df pg_catalog.lower",
        "\\l postgres",
    ] {
        let gw = psql_c(&env.gateway_uri("alice", "demo"), cmd).await;
        let direct = psql_c(&env.direct_uri("demo"), cmd).await;
        gw.assert_success(cmd);
        assert_same(cmd, &gw, &direct);
        assert!(!gw.stdout.is_empty(), "{cmd} printed nothing");
    }
}

#[tokio::test]
async fn copy_in_and_out_with_backslash_copy() {
    let env = env().await;
    let schema = unique("psql_copy");
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.csv");
    let mut csv = String::from("id,name,note\n");
    for i in 1..=5000 {
        let note = match i % 4 {
            0 => String::new(),                  // NULL in CSV
            1 => format!("\"quoted, {i}\""),     // comma inside quotes
            2 => format!("\"multi\nline {i}\""), // newline inside quotes
            _ => format!("plain {i} é"),
        };
        csv.push_str(&format!("{i},name-{i},{note}\n"));
    }
    std::fs::write(&input, &csv).unwrap();
    let out_gw = dir.path().join("out-gw.csv");
    let out_direct = dir.path().join("out-direct.csv");

    let uri = env.gateway_uri("etl-agent", "demo");
    let setup = format!(
        "create schema {schema}; create table {schema}.t(id int primary key, name text, note text);"
    );
    psql(&uri, &setup).await.assert_success("create table");
    let load = format!(
        "\\copy {schema}.t from '{}' with (format csv, header true)",
        input.display()
    );
    let r = psql(&uri, &load).await;
    r.assert_success("\\copy from");
    assert_eq!(r.stdout, "COPY 5000\n");

    let q = format!("select count(*), count(note), sum(id) from {schema}.t");
    let r = psql_c(&uri, &q).await;
    r.assert_success("count");
    assert_eq!(r.stdout, "5000|3750|12502500\n");

    let dump = |path: &std::path::Path| {
        format!(
            "\\copy (select * from {schema}.t order by id) to '{}' with (format csv, header true)",
            path.display()
        )
    };
    psql(&uri, &dump(&out_gw))
        .await
        .assert_success("\\copy to (gateway)");
    psql(&env.direct_uri("demo"), &dump(&out_direct))
        .await
        .assert_success("\\copy to (direct)");
    let a = std::fs::read_to_string(&out_gw).unwrap();
    let b = std::fs::read_to_string(&out_direct).unwrap();
    assert_eq!(a, b, "COPY TO output differs between gateway and direct");
    assert_eq!(a, csv, "round trip through COPY changed the data");
}

#[tokio::test]
async fn copy_from_stdin_inline_in_a_script() {
    let env = env().await;
    let schema = unique("psql_stdin");
    let script = format!(
        "create schema {schema};\ncreate table {schema}.t(a int, b text);\n\
         copy {schema}.t from stdin;\n1\tone\n2\t\\N\n3\tthree\\twith tab\n\\.\n\
         select a, coalesce(b, 'NULL') from {schema}.t order by a;\n\
         copy {schema}.t to stdout;\n\
         copy {schema}.t from stdin;\n4\tfour\nnot-a-number\tboom\n\\.\n\
         select count(*) from {schema}.t;\n"
    );
    let r = psql(&env.gateway_uri("alice", "demo"), &script).await;
    // The second COPY fails (bad int) and ON_ERROR_STOP ends the script.
    assert_eq!(r.code(), 3, "stdout: {}\nstderr: {}", r.stdout, r.stderr);
    assert_eq!(
        r.stdout,
        "CREATE SCHEMA\nCREATE TABLE\nCOPY 3\n1|one\n2|NULL\n3|three\twith tab\n1\tone\n2\t\\N\n3\tthree\\twith tab\n"
    );
    assert!(
        r.stderr
            .contains("invalid input syntax for type integer: \"not-a-number\""),
        "stderr: {}",
        r.stderr
    );
    let after = psql_c(
        &env.gateway_uri("alice", "demo"),
        &format!("select count(*) from {schema}.t"),
    )
    .await;
    assert_eq!(
        after.stdout, "3\n",
        "the failed COPY must not have added rows"
    );
}

#[tokio::test]
async fn on_error_stop_ends_the_script_at_the_error() {
    let env = env().await;
    let run = |uri: String, schema: String| async move {
        let script = format!(
            "create schema {schema};\ncreate table {schema}.t(x int);\ninsert into {schema}.t values (1);\n\
             select 1/0;\ninsert into {schema}.t values (2);\n"
        );
        let r = psql(&uri, &script).await;
        let count = psql_c(&uri, &format!("select count(*) from {schema}.t")).await;
        (r, count.stdout)
    };
    let (gw, gw_count) = run(env.gateway_uri("alice", "demo"), unique("stop_gw")).await;
    let (direct, direct_count) = run(env.direct_uri("demo"), unique("stop_direct")).await;
    assert_eq!(gw.code(), 3, "stderr: {}", gw.stderr);
    assert_eq!(gw.stderr, "psql:<stdin>:4: ERROR:  division by zero\n");
    assert_eq!(gw_count, "1\n");
    assert_same("ON_ERROR_STOP", &gw, &direct);
    assert_eq!(gw_count, direct_count);
}

#[tokio::test]
async fn without_on_error_stop_the_script_continues() {
    let env = env().await;
    let schema = unique("nostop");
    let script = format!(
        "\\set ON_ERROR_STOP 0\ncreate schema {schema};\ncreate table {schema}.t(x int);\n\
         insert into {schema}.t values (1);\nselect * from no_such_table;\ninsert into {schema}.t values (2);\n\
         select count(*) from {schema}.t;\n"
    );
    let r = psql(&env.gateway_uri("bob", "demo"), &script).await;
    assert_eq!(r.code(), 0, "stderr: {}", r.stderr);
    assert_eq!(
        r.stdout,
        "CREATE SCHEMA\nCREATE TABLE\nINSERT 0 1\nINSERT 0 1\n2\n"
    );
    assert!(
        r.stderr
            .contains("ERROR:  relation \"no_such_table\" does not exist"),
        "stderr: {}",
        r.stderr
    );
}

#[tokio::test]
async fn error_inside_explicit_transaction_then_rollback() {
    let env = env().await;
    let script = "\\set ON_ERROR_STOP 0\nbegin;\ncreate temp table t(x int);\ninsert into t values (1);\n\
                  select 1/0;\nselect 1;\nrollback;\nselect 'after';\n";
    let gw = psql(&env.gateway_uri("alice", "demo"), script).await;
    let direct = psql(&env.direct_uri("demo"), script).await;
    assert_same("aborted transaction", &gw, &direct);
    assert_eq!(
        gw.stdout,
        "BEGIN\nCREATE TABLE\nINSERT 0 1\nROLLBACK\nafter\n"
    );
    assert!(
        gw.stderr.contains("ERROR:  current transaction is aborted, commands ignored until end of transaction block"),
        "stderr: {}",
        gw.stderr
    );
}

#[tokio::test]
async fn gset_and_variables() {
    let env = env().await;
    let script = "select 42 as x, 'hello' as y \\gset\n\\echo :x :y\nselect :x + 1;\n\
                  select :'y' || ' world';\nselect 'a' as p, 'b' as q \\gset pre_\n\\echo :pre_p:pre_q\n";
    let gw = psql(&env.gateway_uri("alice", "demo"), script).await;
    let direct = psql(&env.direct_uri("demo"), script).await;
    gw.assert_success("\\gset");
    assert_same("\\gset", &gw, &direct);
    assert_eq!(gw.stdout, "42 hello\n43\nhello world\nab\n");
}

#[tokio::test]
async fn gdesc_uses_the_extended_protocol() {
    // \gdesc prepares the statement (Parse/Describe) without running it.
    let env = env().await;
    let script = "select 1::int4 as a, 'x'::text as b, now() as c, null::numeric(10,2) as d \\gdesc\n\
                  select id, amount from orders where id = 1 \\gdesc\n";
    let gw = psql(&env.gateway_uri("bob", "demo"), script).await;
    let direct = psql(&env.direct_uri("demo"), script).await;
    gw.assert_success("\\gdesc");
    assert_same("\\gdesc", &gw, &direct);
    assert_eq!(
        gw.stdout,
        "a|integer\nb|text\nc|timestamp with time zone\nd|numeric(10,2)\nid|bigint\namount|numeric(12,2)\n"
    );
}

#[tokio::test]
async fn large_result_is_streamed_completely() {
    let env = env().await;
    let sql = "select g, md5(g::text) from generate_series(1, 200000) g";
    let gw = psql_c(&env.gateway_uri("alice", "demo"), sql).await;
    gw.assert_success("large result");
    assert_eq!(gw.stdout.lines().count(), 200_000);
    assert_eq!(
        gw.stdout.lines().next(),
        Some("1|c4ca4238a0b923820dcc509a6f75849b")
    );
    assert_eq!(
        gw.stdout.lines().last(),
        Some("200000|03e6c61603f6c550ab49ab6a2d83f793")
    );
    let direct = psql_c(&env.direct_uri("demo"), sql).await;
    assert!(
        gw.stdout == direct.stdout,
        "200k-row output differs between gateway and direct"
    );

    // With FETCH_COUNT psql uses a cursor (DECLARE / FETCH FORWARD).
    let script = "\\set FETCH_COUNT 1000\nselect g, repeat('x', g % 50) from generate_series(1, 200000) g;\n";
    let gw = psql(&env.gateway_uri("alice", "demo"), script).await;
    let direct = psql(&env.direct_uri("demo"), script).await;
    gw.assert_success("FETCH_COUNT");
    assert_eq!(gw.stdout.lines().count(), 200_000);
    assert!(
        gw.stdout == direct.stdout,
        "FETCH_COUNT output differs between gateway and direct"
    );
}

#[tokio::test]
async fn notices_from_do_blocks() {
    let env = env().await;
    let script = "do $$ begin raise notice 'hello %', 42; raise warning 'careful'; raise info 'fyi'; end $$;\n\
                  \\set VERBOSITY verbose\n\
                  do $$ begin raise notice using message = 'verbose notice', errcode = '01000'; end $$;\n\
                  \\set VERBOSITY default\n\\set ON_ERROR_STOP 0\n\
                  do $$ begin raise exception 'custom failure' using errcode = 'P0042', hint = 'try again'; end $$;\n\
                  select 'still here';\n";
    let gw = psql(&env.gateway_uri("alice", "demo"), script).await;
    let direct = psql(&env.direct_uri("demo"), script).await;
    assert_same("notices", &gw, &direct);
    assert_eq!(gw.stdout, "DO\nDO\nstill here\n");
    for needle in [
        "NOTICE:  hello 42",
        "WARNING:  careful",
        "INFO:  fyi",
        "NOTICE:  01000: verbose notice",
        "ERROR:  custom failure",
        "HINT:  try again",
    ] {
        assert!(
            gw.stderr.contains(needle),
            "missing {needle:?} in stderr:\n{}",
            gw.stderr
        );
    }
}

/// An interactive psql session fed line by line.
struct Session {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
}

impl Session {
    fn start(uri: &str) -> Session {
        let mut cmd: tokio::process::Command = psql_command(uri, &["-A", "-t", "-n"]).into();
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("spawning psql");
        let stdin = child.stdin.take().unwrap();
        let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
        for pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut r = BufReader::new(pipe).lines();
                while let Ok(Some(l)) = r.next_line().await {
                    let _ = tx.send(l);
                }
            });
        }
        Session {
            child,
            stdin,
            lines,
        }
    }

    async fn send(&mut self, line: &str) {
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("writing to psql");
        self.stdin.flush().await.unwrap();
    }

    /// Waits for a line containing `needle`; returns all lines seen.
    async fn wait_for(
        &mut self,
        needle: &str,
        within: Duration,
    ) -> Result<Vec<String>, Vec<String>> {
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(l)) => {
                    let hit = l.contains(needle);
                    seen.push(l);
                    if hit {
                        return Ok(seen);
                    }
                }
                _ => return Err(seen),
            }
        }
    }
}

#[tokio::test]
async fn listen_notify_between_two_psql_sessions() {
    let env = env().await;
    let channel = unique("psql_chan");
    let mut listener = Session::start(&env.gateway_uri("alice", "demo"));
    listener.send(&format!("listen {channel};")).await;
    listener.send("\\echo listening").await;
    listener
        .wait_for("listening", Duration::from_secs(20))
        .await
        .expect("psql LISTEN session did not start");

    let notify = psql_c(
        &env.gateway_uri("bob", "demo"),
        &format!("notify {channel}, 'payload from bob'"),
    )
    .await;
    notify.assert_success("NOTIFY");

    // psql prints notifications after the next command completes.
    let needle = format!(
        "Asynchronous notification \"{channel}\" with payload \"payload from bob\" received"
    );
    let mut got = None;
    let mut seen_all = Vec::new();
    for _ in 0..50 {
        listener.send("select 1;").await;
        match listener.wait_for(&needle, Duration::from_millis(400)).await {
            Ok(seen) => {
                got = seen.last().cloned();
                break;
            }
            Err(seen) => seen_all.extend(seen),
        }
    }
    assert!(
        got.is_some(),
        "no notification within 20 s; psql printed {seen_all:?}"
    );
    listener.send("\\q").await;
    let status = tokio::time::timeout(Duration::from_secs(20), listener.child.wait())
        .await
        .expect("psql exit")
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn psql_variables_and_conditionals() {
    let env = env().await;
    let script = "select count(*) > 100 as many from customers \\gset\n\\if :many\n\\echo many customers\n\\else\n\\echo few\n\\endif\n";
    let r = psql(&env.gateway_uri("alice", "demo"), script).await;
    r.assert_success("\\if");
    assert_eq!(r.stdout, "many customers\n");
}

#[tokio::test]
async fn single_transaction_rollback_on_error() {
    let env = env().await;
    let schema = unique("psql_single");
    let script = format!("create schema {schema};\ncreate table {schema}.t(x int);\nselect 1/0;\n");
    let cmd = psql_command(
        &env.gateway_uri("alice", "demo"),
        &["-A", "-t", "-1", "-f", "-"],
    );
    let r = run_async(cmd, Some(script.into_bytes())).await;
    assert_eq!(r.code(), 3, "stderr: {}", r.stderr);
    let check = psql_c(
        &env.direct_uri("demo"),
        &format!("select count(*) from pg_namespace where nspname = '{schema}'"),
    )
    .await;
    assert_eq!(check.stdout, "0\n");
}

#[tokio::test]
async fn large_objects_through_the_function_call_interface() {
    // psql's \lo_import / \lo_export use libpq's large-object API, which talks
    // through FunctionCall ('F') messages.
    let env = env().await;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("blob.bin");
    let output = dir.path().join("blob-out.bin");
    let blob: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 256) as u8).collect();
    std::fs::write(&input, &blob).unwrap();
    let script = format!(
        "\\lo_import '{}'\n\\lo_export :LASTOID '{}'\nselect length(lo_get(:LASTOID));\n\\lo_unlink :LASTOID\n",
        input.display(),
        output.display()
    );
    let r = psql(&env.gateway_uri("bob", "demo"), &script).await;
    r.assert_success("large objects");
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{}", r.stdout);
    let oid = lines[0]
        .strip_prefix("lo_import ")
        .unwrap_or_else(|| panic!("{}", r.stdout));
    assert_eq!(
        lines[1..],
        ["lo_export", "300000", &format!("lo_unlink {oid}")]
    );
    assert_eq!(
        std::fs::read(&output).unwrap(),
        blob,
        "exported large object differs"
    );
}
