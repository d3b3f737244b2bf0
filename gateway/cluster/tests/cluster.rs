//! End-to-end tests: these start real PostgreSQL servers.

use std::net::TcpStream;
use std::time::Instant;

use portcullis_cluster::{
    Cluster, ClusterError, ClusterOptions, DEMO_DB, TEST_CLIENT_CN, generate_test_pki,
    resolve_pg_bin, seed_demo,
};

fn start(opts: ClusterOptions) -> Cluster {
    let t = Instant::now();
    let cluster = Cluster::start(opts).unwrap_or_else(|e| panic!("cluster start failed: {e}"));
    eprintln!(
        "cluster on port {} started in {:?}",
        cluster.port(),
        t.elapsed()
    );
    cluster
}

fn luhn_valid(number: &str) -> bool {
    let digits: Vec<u32> = number.chars().filter_map(|c| c.to_digit(10)).collect();
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    digits.len() >= 13 && sum.is_multiple_of(10)
}

#[test]
fn select_one_and_scram_password_auth() {
    let c = start(ClusterOptions::default());
    assert_eq!(c.host(), "127.0.0.1");
    assert_ne!(c.port(), 5432);
    assert_eq!(c.superuser(), "postgres");
    assert_eq!(c.psql("postgres", "select 1").unwrap(), "1");
    assert_eq!(
        c.psql("postgres", "show password_encryption").unwrap(),
        "scram-sha-256"
    );
    assert_eq!(c.psql("postgres", "show fsync").unwrap(), "off");
    assert_eq!(
        c.psql("postgres", "show listen_addresses").unwrap(),
        "127.0.0.1"
    );
    let verifier = c
        .psql(
            "postgres",
            "select rolpassword from pg_authid where rolname = current_user",
        )
        .unwrap();
    assert!(verifier.starts_with("SCRAM-SHA-256$"), "{verifier}");
    let hba = c
        .psql(
            "postgres",
            "select distinct auth_method from pg_hba_file_rules",
        )
        .unwrap();
    assert_eq!(hba, "scram-sha-256");

    // The URI works as-is.
    assert_eq!(
        c.psql_conninfo(&c.connection_uri("postgres"), None, "select 2")
            .unwrap(),
        "2"
    );

    // A wrong password is rejected: password authentication really happens.
    let conninfo = format!(
        "host=127.0.0.1 port={} user=postgres dbname=postgres",
        c.port()
    );
    let err = c
        .psql_conninfo(&conninfo, Some("not-the-password"), "select 1")
        .unwrap_err();
    assert!(
        matches!(&err, ClusterError::Psql { stderr, .. }
            if stderr.contains("password authentication failed")),
        "{err}"
    );
    // No password at all is rejected too.
    assert!(c.psql_conninfo(&conninfo, None, "select 1").is_err());

    // Errors carry psql's stderr.
    let err = c
        .psql("postgres", "select * from no_such_table")
        .unwrap_err();
    assert!(err.to_string().contains("no_such_table"), "{err}");

    assert!(c.log_file().exists());
    assert!(c.postmaster_pid().is_some());
}

#[test]
fn roles_databases_and_extra_conf() {
    let c = start(
        ClusterOptions {
            superuser: "admin".into(),
            superuser_password: "s3cr3t 'quoted' \\ pw".into(),
            ..Default::default()
        }
        .conf("max_connections", "37")
        .conf("log_statement", "all"),
    );
    assert_eq!(c.psql("postgres", "select current_user").unwrap(), "admin");
    assert_eq!(c.psql("postgres", "show max_connections").unwrap(), "37");
    assert_eq!(c.psql("postgres", "show log_statement").unwrap(), "all");
    assert_eq!(c.psql("postgres", "show timezone").unwrap(), "UTC");
    assert_eq!(c.psql("postgres", "show server_encoding").unwrap(), "UTF8");
    assert_eq!(c.psql("postgres", "show lc_collate").unwrap(), "C");

    c.create_role("app", "app pw", "").unwrap();
    c.create_role("boss", "boss-pw", "SUPERUSER").unwrap();
    c.create_database("App Db").unwrap();
    assert!(c.create_database("App Db").is_err(), "duplicate database");

    let as_app = format!("host=127.0.0.1 port={} user=app dbname='App Db'", c.port());
    assert_eq!(
        c.psql_conninfo(
            &as_app,
            Some("app pw"),
            "select current_user, current_database()"
        )
        .unwrap(),
        "app|App Db"
    );
    assert_eq!(
        c.psql(
            "postgres",
            "select rolsuper from pg_roles where rolname = 'boss'"
        )
        .unwrap(),
        "t"
    );
    // log_statement=all reaches the server log.
    let log = std::fs::read_to_string(c.log_file()).unwrap();
    assert!(log.contains("statement: "), "{log}");
}

#[test]
fn demo_seed() {
    let c = start(ClusterOptions::default());
    let t = Instant::now();
    seed_demo(&c, DEMO_DB).unwrap();
    eprintln!("seed_demo took {:?}", t.elapsed());
    // Idempotent.
    seed_demo(&c, DEMO_DB).unwrap();

    let counts = c
        .psql(
            DEMO_DB,
            "select (select count(*) from customers), (select count(*) from orders), \
             (select count(*) from secrets), (select count(*) from customer_contacts), \
             (select count(distinct customer_id) from orders)",
        )
        .unwrap();
    assert_eq!(counts, "200|1000|5|200|200");

    let customers = c
        .psql(
            DEMO_DB,
            "select id, name, email, phone, ssn, card_number from customers order by id",
        )
        .unwrap();
    let rows: Vec<Vec<&str>> = customers.lines().map(|l| l.split('|').collect()).collect();
    assert_eq!(rows.len(), 200);
    assert_eq!(rows[0][5], "4111 1111 1111 1111");
    assert_eq!(rows[0][3], "+1-555-0100");
    for row in &rows {
        let [_, name, email, phone, ssn, card] = row[..] else {
            panic!("bad row {row:?}")
        };
        assert!(name.contains(' '), "{name}");
        let (local, domain) = email.split_once('@').expect(email);
        assert!(
            !local.is_empty() && domain.starts_with("example."),
            "{email}"
        );
        assert!(phone.starts_with("+1-555-") && phone.len() == 11, "{phone}");
        let ssn_shape: Vec<usize> = ssn.split('-').map(str::len).collect();
        assert_eq!(ssn_shape, [3, 2, 4], "{ssn}");
        assert!(ssn.chars().all(|ch| ch.is_ascii_digit() || ch == '-'));
        assert_eq!(card.len(), 19, "{card}");
        assert!(luhn_valid(card), "card {card} fails Luhn");
    }

    let view_cols = c
        .psql(
            DEMO_DB,
            "select string_agg(column_name, ',' order by ordinal_position) \
             from information_schema.columns where table_name = 'customer_contacts'",
        )
        .unwrap();
    assert_eq!(view_cols, "name,email,phone");
    assert_eq!(
        c.psql(
            DEMO_DB,
            "select format_type(atttypid, atttypmod) from pg_attribute \
             where attrelid = 'orders'::regclass and attname = 'amount'"
        )
        .unwrap(),
        "numeric(12,2)"
    );
    // Deterministic content.
    assert_eq!(
        c.psql(DEMO_DB, "select sum(amount) from orders").unwrap(),
        c.psql(DEMO_DB, "select sum(amount) from orders").unwrap()
    );
    // Identity columns continue after the seeded ids.
    assert_eq!(
        c.psql(
            DEMO_DB,
            "insert into secrets (name, value) values ('x', 'y') returning id"
        )
        .unwrap(),
        "6"
    );
}

#[test]
fn tls_verify_full() {
    let pki_dir = tempfile::tempdir().unwrap();
    let pki = generate_test_pki(pki_dir.path(), &["localhost", "127.0.0.1"]).unwrap();
    let c = start(ClusterOptions::default().with_tls(pki.server_tls()));
    assert!(c.tls_enabled());
    assert_eq!(c.psql("postgres", "show ssl").unwrap(), "on");

    let conninfo = format!(
        "sslmode=verify-full sslrootcert={} host=localhost port={} user=postgres dbname=postgres",
        pki.ca_cert.display(),
        c.port()
    );
    let ssl = c
        .psql_conninfo(
            &conninfo,
            Some(c.superuser_password()),
            "select ssl from pg_stat_ssl where pid = pg_backend_pid()",
        )
        .unwrap();
    assert_eq!(ssl, "t");

    // verify-full really verifies: a name not in the certificate fails.
    let wrong_name = format!(
        "sslmode=verify-full sslrootcert={} host=wrong.example hostaddr=127.0.0.1 port={} \
         user=postgres dbname=postgres",
        pki.ca_cert.display(),
        c.port()
    );
    let err = c
        .psql_conninfo(&wrong_name, Some(c.superuser_password()), "select 1")
        .unwrap_err();
    assert!(err.to_string().contains("does not match"), "{err}");
}

#[test]
fn mtls_client_certificate() {
    let pki_dir = tempfile::tempdir().unwrap();
    let pki = generate_test_pki(pki_dir.path(), &[]).unwrap();
    let hba = "hostssl all alice 127.0.0.1/32 cert\n\
               host all all 127.0.0.1/32 scram-sha-256\n\
               local all all scram-sha-256\n";
    let c = start(ClusterOptions {
        tls: Some(pki.server_tls()),
        tls_client_ca: Some(pki.ca_cert.clone()),
        hba: Some(hba.into()),
        ..Default::default()
    });
    c.create_role(TEST_CLIENT_CN, "unused", "").unwrap();
    let conninfo = format!(
        "sslmode=verify-full sslrootcert={} sslcert={} sslkey={} host=localhost port={} \
         user=alice dbname=postgres",
        pki.ca_cert.display(),
        pki.client_cert.display(),
        pki.client_key.display(),
        c.port()
    );
    assert_eq!(
        c.psql_conninfo(&conninfo, None, "select current_user")
            .unwrap(),
        "alice"
    );
    // A second issued certificate (CN bob) is rejected for user alice.
    let (bob_cert, bob_key) = pki.issue_client_cert("bob", "bob").unwrap();
    let as_bob = conninfo
        .replace(
            &pki.client_cert.display().to_string(),
            &bob_cert.display().to_string(),
        )
        .replace(
            &pki.client_key.display().to_string(),
            &bob_key.display().to_string(),
        );
    let err = c.psql_conninfo(&as_bob, None, "select 1").unwrap_err();
    assert!(
        err.to_string()
            .contains("certificate authentication failed"),
        "{err}"
    );
}

#[test]
fn two_clusters_in_parallel() {
    let handles: Vec<_> = (0..2)
        .map(|_| std::thread::spawn(|| start(ClusterOptions::default())))
        .collect();
    let clusters: Vec<Cluster> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_ne!(clusters[0].port(), clusters[1].port());
    assert_ne!(clusters[0].data_dir(), clusters[1].data_dir());
    for c in &clusters {
        assert_eq!(
            c.psql("postgres", "select current_setting('port')")
                .unwrap(),
            c.port().to_string()
        );
    }
    let mut clusters = clusters.into_iter();
    let first = clusters.next().unwrap();
    let second = clusters.next().unwrap();
    drop(first);
    assert_eq!(second.psql("postgres", "select 1").unwrap(), "1");
}

#[test]
fn stop_kill_restart_and_drop() {
    let mut c = start(ClusterOptions::default());
    let port = c.port();
    c.psql(
        "postgres",
        "create table kept (x int); insert into kept values (42)",
    )
    .unwrap();

    c.stop().unwrap();
    assert!(!c.is_running());
    assert!(c.psql("postgres", "select 1").is_err());
    c.stop().unwrap(); // idempotent
    c.restart().unwrap();
    assert_eq!(c.port(), port);
    assert_eq!(c.psql("postgres", "select x from kept").unwrap(), "42");

    c.kill().unwrap();
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    c.restart().unwrap();
    assert_eq!(c.psql("postgres", "select 1").unwrap(), "1");
    c.restart().unwrap(); // restart while running
    assert_eq!(c.psql("postgres", "select 1").unwrap(), "1");

    let dir = c.data_dir().to_path_buf();
    drop(c);
    assert!(!dir.exists(), "data dir removed on drop");
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "server stopped on drop"
    );
}

#[test]
fn fixed_port_in_use_is_a_clear_error() {
    let c = start(ClusterOptions::default());
    let err = Cluster::start(ClusterOptions {
        port: Some(c.port()),
        ..Default::default()
    })
    .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ClusterError::Start { .. }), "{msg}");
    assert!(msg.contains("could not"), "log tail included: {msg}");
    eprintln!("{msg}");
}

#[test]
fn empty_pg_bin_is_a_clear_error() {
    let empty = tempfile::tempdir().unwrap();

    let err = resolve_pg_bin(Some(empty.path().as_os_str())).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("PG_BIN"), "{msg}");
    assert!(msg.contains("initdb, pg_ctl, postgres"), "{msg}");
    assert!(msg.contains("apt-get install postgresql"), "{msg}");

    let err = Cluster::start(ClusterOptions {
        pg_bin: Some(empty.path().to_path_buf()),
        ..Default::default()
    })
    .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ClusterError::PgBinIncomplete { .. }), "{msg}");
    assert!(msg.contains(&empty.path().display().to_string()), "{msg}");
    assert!(msg.contains("apt-get install postgresql"), "{msg}");
}

#[test]
fn invalid_options_are_rejected() {
    let err = Cluster::start(ClusterOptions {
        superuser_password: "two\nlines".into(),
        ..Default::default()
    })
    .unwrap_err();
    assert!(matches!(err, ClusterError::InvalidOption(_)), "{err}");
    let err = Cluster::start(ClusterOptions::default().conf("bad key", "1")).unwrap_err();
    assert!(matches!(err, ClusterError::InvalidOption(_)), "{err}");
}

#[test]
fn pki_files_and_permissions() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let pki = generate_test_pki(dir.path(), &["db.test", "127.0.0.1"]).unwrap();
    for f in [
        "ca.pem",
        "ca.key",
        "server.pem",
        "server.key",
        "client.pem",
        "client.key",
    ] {
        assert!(dir.path().join(f).is_file(), "{f}");
    }
    for key in [&pki.ca_key, &pki.server_key, &pki.client_key] {
        let mode = std::fs::metadata(key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", key.display());
        assert!(
            std::fs::read_to_string(key)
                .unwrap()
                .contains("PRIVATE KEY")
        );
    }
    assert!(
        std::fs::read_to_string(&pki.server_cert)
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----")
    );
}

#[test]
fn initdb_failure_includes_its_output() {
    let err = Cluster::start(ClusterOptions {
        superuser: "pg_reserved".into(),
        ..Default::default()
    })
    .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ClusterError::Initdb { .. }), "{msg}");
    assert!(msg.contains("pg_reserved"), "{msg}");
    eprintln!("{msg}");
}
