//! The `portcullis` binary.

use clap::Parser;
use portcullis::cli::{Cli, Command};
use tracing_subscriber::EnvFilter;

fn init_logs(json: bool) {
    let filter =
        EnvFilter::try_from_env("PORTCULLIS_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => return ctrl_c.await.unwrap_or(()),
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("portcullis: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Passwd { stdin } => {
            let pw = portcullis::cli::read_password(stdin)?;
            println!("{}", portcullis_auth::verifier_for(&pw));
            Ok(())
        }
        Command::CheckConfig { config: path } => {
            let config = portcullis::config::load(&path)?;
            // Policies are loaded too: a component that does not compile, link or accept
            // its settings would stop `serve` from starting.
            if !config.policies.is_empty() {
                let chain = portcullis::policy::load_chain(
                    &config,
                    portcullis::policy::PolicyMetrics::unregistered(),
                )?;
                for p in chain.policies() {
                    let m = p.metadata();
                    println!(
                        "policy {}: {} {} ({}, sha256 {})",
                        p.id(),
                        m.name,
                        m.version,
                        p.mode().as_str(),
                        p.sha256()
                    );
                }
            }
            if let Some(shadow) = &config.shadow {
                let runtime = portcullis::policy::PolicyRuntime::new(
                    config.policy_runtime.cache_dir.clone(),
                    portcullis::policy::PolicyMetrics::unregistered(),
                )?;
                let set = portcullis::policy::candidate::load_candidate(&shadow.path, &runtime)
                    .map_err(|e| anyhow::anyhow!("[shadow] {}: {e}", shadow.path.display()))?;
                println!(
                    "shadow policy set {} ({} policies) from {}",
                    set.version,
                    set.chain.policies().len(),
                    shadow.path.display()
                );
            }
            if let Some(audit) = &config.audit
                && let Some(key) = &audit.signing_key
            {
                let signer = portcullis::audit::chain::CheckpointSigner::from_file(key)?;
                println!(
                    "audit checkpoints signed by {} (public key {})",
                    key.display(),
                    signer.public_key_hex()
                );
            }
            println!("{}: ok", path.display());
            Ok(())
        }
        Command::Policy { action } => portcullis::policy::reload::cli::run(action),
        Command::Audit { command } => portcullis::audit::cli::run(command),
        Command::Approvals { command } => portcullis::approvals::cli::run(command),
        Command::Serve { config, log_json } => {
            init_logs(log_json);
            let config = portcullis::config::load(&config)?;
            runtime()?.block_on(async {
                let gateway = portcullis::server::start(config).await?;
                if let Some(reload) = gateway.policy_reload().cloned() {
                    // SIGHUP reloads the policy directory.
                    let mut hup =
                        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
                    tokio::spawn(async move {
                        while hup.recv().await.is_some() {
                            tracing::info!("SIGHUP: reloading the policy directory");
                            reload.request_reload();
                        }
                    });
                }
                let stop = gateway.stopper();
                tokio::spawn(async move {
                    wait_for_signal().await;
                    tracing::info!("shutting down");
                    let _ = stop.send(true);
                });
                gateway.wait().await;
                Ok(())
            })
        }
        Command::Demo {
            listen,
            admin_listen,
            exit_after_start,
            policies,
        } => {
            init_logs(false);
            runtime()?.block_on(async {
                let demo =
                    portcullis::demo::start(listen, admin_listen, policies.as_deref()).await?;
                println!("{}", portcullis::demo::banner(&demo));
                if !exit_after_start {
                    wait_for_signal().await;
                }
                demo.gateway.shutdown().await;
                drop(demo.cluster);
                Ok(())
            })
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}
