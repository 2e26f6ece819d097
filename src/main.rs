//! The `hookgate` binary: parses the command line and configuration, installs tracing, and calls
//! the library.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

/// mimalloc: the hot path allocates small buffers across threads, where glibc's allocator spent
/// a sixth of the CPU time in a profile of the delivery benchmark.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "hookgate", version, about = "Inbound provider webhook gateway")]
struct Cli {
    /// TOML file with the same keys as the HOOKGATE_* variables (lower case, no prefix).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (the default).
    Serve,
    /// Create or upgrade the database schema, then exit.
    Migrate,
    /// Manage tenants directly in the database.
    Tenant {
        #[command(subcommand)]
        command: hookgate::cli::TenantCommand,
    },
    /// Send a correctly signed sample callback to a running gateway.
    Simulate(hookgate::cli::SimulateArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = match hookgate::config::Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("hookgate: configuration error: {e:#}");
            std::process::exit(2);
        }
    };
    hookgate::init_tracing(&config.log_format);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => {
                let listener = tokio::net::TcpListener::bind(config.listen)
                    .await
                    .map_err(|e| {
                        anyhow::anyhow!("cannot bind HOOKGATE_LISTEN={}: {e}", config.listen)
                    })?;
                let shutdown = CancellationToken::new();
                tokio::spawn(wait_for_signal(shutdown.clone()));
                hookgate::run(config, listener, shutdown).await
            }
            Command::Migrate => {
                hookgate::store::open(&config).await?;
                println!(
                    "hookgate: database {} is migrated",
                    redact_url(&config.database_url)
                );
                Ok(())
            }
            Command::Tenant { command } => hookgate::cli::tenant(&config, command).await,
            Command::Simulate(args) => hookgate::cli::simulate(&config, args).await,
        }
    })
}

/// Hides a password in a database URL.
fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("****"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

async fn wait_for_signal(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("install SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutdown requested; finishing in-flight work");
    shutdown.cancel();
}
