//! The `portcullis policy` subcommands.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;

use super::signing;
use crate::cli::PolicyCommand;
use crate::policy::cache::sha256_hex;
use crate::policy::{PolicyMetrics, PolicyRuntime};

/// Runs one `portcullis policy` subcommand, printing to stdout.
pub fn run(cmd: PolicyCommand) -> anyhow::Result<()> {
    match cmd {
        PolicyCommand::Keygen { out } => {
            let key = signing::generate();
            write_private(&out, &signing::encode_secret(&key))?;
            let public = pub_path(&out);
            std::fs::write(&public, signing::encode_public(&key.verifying_key()) + "\n")
                .with_context(|| format!("writing {}", public.display()))?;
            println!("secret key: {} (keep it in CI's secrets)", out.display());
            println!(
                "public key: {} (list it in [policy_dir] trusted_keys)",
                public.display()
            );
            Ok(())
        }
        PolicyCommand::Sign { key, files } => {
            let key = signing::read_secret(&key).map_err(anyhow::Error::msg)?;
            for f in files {
                let bytes =
                    std::fs::read(&f).with_context(|| format!("reading {}", f.display()))?;
                let digest = sha256_hex(&bytes);
                let sig_path = signing::signature_path(&f);
                std::fs::write(&sig_path, signing::sign_digest(&key, &digest) + "\n")
                    .with_context(|| format!("writing {}", sig_path.display()))?;
                println!(
                    "{}: sha256 {digest}, signed → {}",
                    f.display(),
                    sig_path.display()
                );
            }
            Ok(())
        }
        PolicyCommand::Verify { key, files } => {
            let key = signing::read_public(&key).map_err(anyhow::Error::msg)?;
            let mut bad = 0;
            for f in files {
                let bytes =
                    std::fs::read(&f).with_context(|| format!("reading {}", f.display()))?;
                match signing::verify_file(&[key], &f, &bytes) {
                    Ok(()) => println!("{}: ok", f.display()),
                    Err(e) => {
                        bad += 1;
                        println!("{}: BAD: {e}", f.display());
                    }
                }
            }
            anyhow::ensure!(bad == 0, "{bad} file(s) failed verification");
            Ok(())
        }
        PolicyCommand::Inspect { file, settings } => inspect(&file, &settings),
        PolicyCommand::New {
            lang,
            name,
            dir,
            sdk,
        } => {
            let dir = dir.unwrap_or_else(|| name.clone().into());
            let sdk = sdk.unwrap_or_else(crate::policy::scaffold::default_sdk_path);
            crate::policy::scaffold::create(lang, &name, &dir, &sdk)?;
            println!(
                "created {} ({lang:?}); build and run its fixtures: bash {}/build.sh",
                dir.display(),
                dir.display()
            );
            Ok(())
        }
        PolicyCommand::Test {
            file,
            fixtures,
            settings,
        } => test_fixtures(&file, &fixtures, settings.as_deref()),
        PolicyCommand::Replay {
            recording,
            policies,
            json,
            expect,
            threads,
        } => replay(recording, policies, json, expect.as_deref(), threads),
        PolicyCommand::Bench {
            recording,
            policies,
            rounds,
            json,
        } => {
            let r = crate::policy::bench::bench(&recording, &policies, rounds)
                .map_err(anyhow::Error::msg)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                print!("{}", crate::policy::bench::render(&r));
            }
            Ok(())
        }
        PolicyCommand::Reload { admin, token_env } => control(admin, &token_env, "reload"),
        PolicyCommand::Rollback { admin, token_env } => control(admin, &token_env, "rollback"),
    }
}

fn pub_path(secret: &Path) -> std::path::PathBuf {
    let mut s = secret.as_os_str().to_owned();
    s.push(".pub");
    s.into()
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {} (it must not exist yet)", path.display()))?;
    writeln!(f, "{text}")?;
    Ok(())
}

fn inspect(file: &Path, settings: &str) -> anyhow::Result<()> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let digest = sha256_hex(&bytes);
    println!("file:    {}", file.display());
    println!("size:    {} bytes", bytes.len());
    println!("sha256:  {digest}");
    let runtime = PolicyRuntime::new(None, PolicyMetrics::unregistered())?;
    let component = wasmtime::component::Component::new(runtime.engine(), &bytes)
        .map_err(|e| anyhow::anyhow!("not a loadable component: {e:#}"))?;
    let ty = component.component_type();
    println!("imports:");
    for (name, _) in ty.imports(runtime.engine()) {
        println!("  {name}");
    }
    println!("exports:");
    for (name, _) in ty.exports(runtime.engine()) {
        println!("  {name}");
    }
    match crate::policy::harness::Harness::load(&[file.to_owned()], &[settings]) {
        Ok(h) => {
            for p in h.chain().policies() {
                let m = p.metadata();
                let hooks: Vec<&str> = [
                    (m.authorize, "authorize"),
                    (m.mask, "mask"),
                    (m.approve, "approve"),
                ]
                .iter()
                .filter(|(on, _)| *on)
                .map(|(_, n)| *n)
                .collect();
                println!("name:    {}", m.name);
                println!("version: {}", m.version);
                println!("hooks:   {}", hooks.join(", "));
            }
        }
        Err(e) => println!("metadata: not available with settings {settings}: {e}"),
    }
    Ok(())
}

/// `portcullis policy test`: loads `file` with the settings in `settings` (a JSON
/// file) and runs `fixtures` against it.
pub fn test_fixtures(file: &Path, fixtures: &Path, settings: Option<&Path>) -> anyhow::Result<()> {
    let settings = match settings {
        Some(p) => {
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?
        }
        None => "{}".to_owned(),
    };
    let h = crate::policy::harness::Harness::load(&[file.to_owned()], &[&settings])?;
    let n = super::run_fixtures(h.chain(), fixtures).map_err(anyhow::Error::msg)?;
    println!("{}: {n} fixture(s) passed", file.display());
    Ok(())
}

/// `portcullis policy replay`: prints the report; an error when differences were
/// not declared expected (exit status 1).
fn replay(
    recording: std::path::PathBuf,
    policies: std::path::PathBuf,
    json: bool,
    expect: Option<&Path>,
    threads: Option<usize>,
) -> anyhow::Result<()> {
    use crate::policy::replay;
    let expectations = match expect {
        Some(p) => replay::read_expectations(p).map_err(anyhow::Error::msg)?,
        None => replay::Expectations::default(),
    };
    let report = replay::replay(&replay::ReplayOptions {
        recording,
        policies,
        expectations,
        progress: !json,
        threads: threads.unwrap_or_else(replay::default_threads),
    })
    .map_err(anyhow::Error::msg)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", replay::render(&report));
    }
    anyhow::ensure!(
        report.unexpected == 0,
        "{} difference(s) not declared expected (see the report; declare accepted ones with --expect FILE)",
        report.unexpected
    );
    Ok(())
}

/// POSTs to the admin endpoint (plain HTTP on the admin address) and prints the answer.
fn control(admin: SocketAddr, token_env: &str, what: &str) -> anyhow::Result<()> {
    let token = std::env::var(token_env).with_context(|| {
        format!("the control token is read from ${token_env}, which is not set")
    })?;
    let mut s = TcpStream::connect_timeout(&admin, Duration::from_secs(5))
        .with_context(|| format!("connecting to the admin endpoint {admin}"))?;
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    write!(
        s,
        "POST /policies/{what} HTTP/1.1\r\nHost: {admin}\r\nAuthorization: Bearer {token}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    s.read_to_string(&mut response)?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head.lines().next().unwrap_or("");
    println!("{}", body.trim());
    anyhow::ensure!(status.contains(" 200 "), "{what} failed: {status}");
    Ok(())
}
