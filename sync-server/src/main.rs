//! `till-server`: runs the sync server (`serve`) or administers its data
//! (tenants, stores, devices). Only configuration lives here; everything
//! else is in the library.

/// mimalloc rather than the system allocator: a push allocates for every
/// value of every change, and under 50 tills pushing at once glibc's malloc
/// and free were a quarter of the server's CPU. Pushed changes a second
/// went from 9,221 and 9,156 to a median of 11,372 over five runs
/// (`TILL_SYNC_BENCH_ONLY=push cargo bench -p till-sync-server --bench sync
/// -- --quick`, load 1.9-2.1).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use till_sync_server::auth::{self, DeviceScope};
use till_sync_server::ratelimit::RateLimit;
use till_sync_server::storage::sqlite::{SqliteStorage, FILE_NAME};
use till_sync_server::storage::{Horizon, Storage};
use till_sync_server::{now_ms, serve, AppState, Limits};

#[derive(Debug, Parser)]
#[command(
    name = "till-server",
    version,
    about = "Till's head-office sync server"
)]
struct Cli {
    /// Where the server keeps its database.
    #[arg(
        long,
        env = "TILL_DATA_DIR",
        default_value = "./till-data",
        global = true
    )]
    data_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serves the sync API until SIGTERM or Ctrl-C.
    Serve(ServeArgs),
    /// Manages tenants.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Manages stores.
    #[command(subcommand)]
    Store(StoreCommand),
    /// Manages devices and their tokens.
    #[command(subcommand)]
    Device(DeviceCommand),
    /// Manages a tenant's change log.
    #[command(subcommand)]
    Log(LogCommand),
    /// Reports on a tenant's bills.
    #[command(subcommand)]
    Bills(BillsCommand),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "TILL_ADDR", default_value = "127.0.0.1:8787")]
    addr: SocketAddr,
    /// Largest request body in bytes, after decompression.
    #[arg(long, env = "TILL_MAX_BODY_BYTES", default_value_t = Limits::default().max_body_bytes)]
    max_body_bytes: usize,
    /// Longest a request may take, in seconds.
    #[arg(long, env = "TILL_REQUEST_TIMEOUT_SECS", default_value_t = 30)]
    request_timeout_secs: u64,
    /// Most pushes and pulls handled at once; more wait their turn.
    #[arg(long, env = "TILL_MAX_CONCURRENT_REQUESTS", default_value_t = Limits::default().max_concurrent_requests)]
    max_concurrent_requests: usize,
    /// Most push batches stored at once, those of timed-out requests
    /// included; more wait their turn.
    #[arg(long, env = "TILL_MAX_CONCURRENT_PUSHES", default_value_t = Limits::default().max_concurrent_pushes)]
    max_concurrent_pushes: usize,
    /// Requests per second each device may keep up.
    #[arg(long, env = "TILL_RATE_PER_SEC", default_value_t = RateLimit::default().per_second)]
    rate_per_sec: NonZeroU32,
    /// Requests a rested device may send back to back.
    #[arg(long, env = "TILL_RATE_BURST", default_value_t = RateLimit::default().burst)]
    rate_burst: NonZeroU32,
    /// Longest a long-poll wait lasts, in seconds; below the request timeout.
    #[arg(long, env = "TILL_MAX_WAIT_SECS", default_value_t = Limits::default().max_wait.as_secs())]
    max_wait_secs: u64,
    /// How often an open wait re-reads the database, in seconds.
    #[arg(long, env = "TILL_WAIT_RECHECK_SECS", default_value_t = Limits::default().wait_recheck.as_secs())]
    wait_recheck_secs: u64,
    /// Most long-poll waits open at once (each holds a connection).
    #[arg(long, env = "TILL_MAX_WAITERS", default_value_t = Limits::default().max_waiters)]
    max_waiters: usize,
    /// Most long-poll waits one device may hold open.
    #[arg(long, env = "TILL_MAX_WAITERS_PER_DEVICE", default_value_t = Limits::default().max_waiters_per_device)]
    max_waiters_per_device: usize,
    /// Log format.
    #[arg(long, env = "TILL_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// The smallest body limit `serve` takes: below it a till's push of a
/// single large bill could never get through. The largest change is a line
/// added to a bill of 499 (500 lines at most, each with its longest code
/// and name), which carries the lines before and after: 642 KB.
const MIN_BODY_BYTES: usize = 1024 * 1024;

impl ServeArgs {
    fn limits(&self) -> Result<Limits, String> {
        let limits = Limits {
            max_body_bytes: self.max_body_bytes,
            request_timeout: Duration::from_secs(self.request_timeout_secs),
            max_concurrent_requests: self.max_concurrent_requests,
            max_concurrent_pushes: self.max_concurrent_pushes,
            rate: RateLimit {
                per_second: self.rate_per_sec,
                burst: self.rate_burst,
            },
            max_wait: Duration::from_secs(self.max_wait_secs),
            wait_recheck: Duration::from_secs(self.wait_recheck_secs),
            max_waiters: self.max_waiters,
            max_waiters_per_device: self.max_waiters_per_device,
        };
        if limits.max_wait >= limits.request_timeout {
            return Err("--max-wait-secs must be below --request-timeout-secs".into());
        }
        if limits.wait_recheck.is_zero()
            || limits.max_concurrent_requests == 0
            || limits.max_concurrent_pushes == 0
            || limits.max_waiters == 0
            || limits.max_waiters_per_device == 0
        {
            return Err(
                "--wait-recheck-secs, --max-concurrent-requests, --max-concurrent-pushes, \
                 --max-waiters and --max-waiters-per-device must be at least 1"
                    .into(),
            );
        }
        if limits.max_waiters_per_device > limits.max_waiters {
            return Err("--max-waiters-per-device must not exceed --max-waiters".into());
        }
        if limits.max_body_bytes < MIN_BODY_BYTES {
            return Err(format!(
                "--max-body-bytes must be at least {MIN_BODY_BYTES}: a push of one change must fit"
            ));
        }
        Ok(limits)
    }
}

#[derive(Debug, Subcommand)]
enum TenantCommand {
    /// Creates a tenant (a retail company).
    Create {
        /// Tenant id: letters, digits, '_' or '-'.
        id: String,
        /// Display name; the id when absent.
        #[arg(long)]
        name: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum StoreCommand {
    /// Creates a store of a tenant.
    Create {
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// Store code, e.g. S01.
        id: String,
        /// Display name; the code when absent.
        #[arg(long)]
        name: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum DeviceCommand {
    /// Enrolls a device and prints its token, once.
    Enroll(DeviceArgs),
    /// Revokes a device's token.
    Revoke(DeviceArgs),
    /// Lists a tenant's devices.
    List {
        /// The tenant.
        #[arg(long)]
        tenant: String,
    },
}

#[derive(Debug, Subcommand)]
enum BillsCommand {
    /// Lists the sales refunded beyond their total (by several tills while
    /// offline): store, number, total and refunded, in minor units.
    OverRefunded {
        /// The tenant.
        #[arg(long)]
        tenant: String,
    },
}

#[derive(Debug, Subcommand)]
enum LogCommand {
    /// Drops a tenant's log entries up to a horizon, keeping every record's
    /// state. Devices whose cursor is older bootstrap again, keeping their
    /// unsynced changes.
    Compact(CompactArgs),
}

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("horizon").required(true)))]
struct CompactArgs {
    /// The tenant.
    #[arg(long)]
    tenant: String,
    /// Drop every entry at or below this server sequence.
    #[arg(long, group = "horizon")]
    through_seq: Option<i64>,
    /// Drop every entry of a change received more than this many days ago.
    #[arg(long, group = "horizon")]
    older_than_days: Option<u32>,
}

impl CompactArgs {
    fn horizon(&self) -> Result<Horizon, String> {
        match (self.through_seq, self.older_than_days) {
            (Some(seq), _) if seq < 0 => Err("--through-seq must not be negative".into()),
            (Some(seq), _) => Ok(Horizon::Seq(seq)),
            (None, Some(days)) => Ok(Horizon::ReceivedBefore(
                now_ms() - i64::from(days) * 86_400_000,
            )),
            (None, None) => Err("give --through-seq or --older-than-days".into()),
        }
    }
}

#[derive(Debug, clap::Args)]
struct DeviceArgs {
    /// The tenant.
    #[arg(long)]
    tenant: String,
    /// The device's store code.
    #[arg(long)]
    store: String,
    /// Device code, e.g. T03.
    id: String,
}

impl DeviceArgs {
    fn scope(self) -> Result<DeviceScope, String> {
        check_id("tenant", &self.tenant, 64)?;
        check_id("store", &self.store, 16)?;
        check_id("device", &self.id, 16)?;
        Ok(DeviceScope {
            tenant: self.tenant,
            store: self.store,
            device: self.id,
        })
    }
}

fn check_id(what: &str, value: &str, max: usize) -> Result<(), String> {
    if auth::valid_id(value, max) {
        Ok(())
    } else {
        Err(format!(
            "{what} must be 1 to {max} ASCII letters, digits, '_' or '-'"
        ))
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("till-server: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    // Only `serve` and `tenant create` start a database; any other command
    // at a mistyped --data-dir would answer from an empty one it just made.
    let creates = matches!(cli.command, Command::Serve(_) | Command::Tenant(_));
    if !creates && !cli.data_dir.join(FILE_NAME).exists() {
        return Err(format!(
            "no Till database in {}: check --data-dir, or start one with `till-server serve` \
             or `till-server tenant create`",
            cli.data_dir.display()
        ));
    }
    let storage = SqliteStorage::open(&cli.data_dir).map_err(|e| e.to_string())?;
    let err = |e: till_sync_server::storage::StorageError| e.to_string();
    match cli.command {
        Command::Serve(args) => {
            init_logging(args.log_format);
            let limits = args.limits()?;
            let listener = tokio::net::TcpListener::bind(args.addr)
                .await
                .map_err(|e| format!("cannot listen on {}: {e}", args.addr))?;
            let addr = listener.local_addr().map_err(|e| e.to_string())?;
            tracing::info!(%addr, data_dir = %cli.data_dir.display(), "serving");
            let state = AppState::new(Arc::new(storage), limits);
            serve(listener, state, shutdown_signal())
                .await
                .map_err(|e| e.to_string())
        }
        Command::Tenant(TenantCommand::Create { id, name }) => {
            check_id("tenant", &id, 64)?;
            let name = name.unwrap_or_else(|| id.clone());
            storage
                .create_tenant(&id, &name, now_ms())
                .await
                .map_err(err)?;
            println!("created tenant {id}");
            Ok(())
        }
        Command::Store(StoreCommand::Create { tenant, id, name }) => {
            check_id("store", &id, 16)?;
            let name = name.unwrap_or_else(|| id.clone());
            storage
                .create_store(&tenant, &id, &name, now_ms())
                .await
                .map_err(err)?;
            println!("created store {tenant}/{id}");
            Ok(())
        }
        Command::Device(DeviceCommand::Enroll(args)) => {
            let scope = args.scope()?;
            let token = auth::new_token();
            storage
                .enroll_device(&scope, &auth::token_hash(&token), now_ms())
                .await
                .map_err(err)?;
            eprintln!(
                "enrolled {}/{}/{}; its token follows and is not shown again:",
                scope.tenant, scope.store, scope.device
            );
            println!("{token}");
            Ok(())
        }
        Command::Device(DeviceCommand::Revoke(args)) => {
            let scope = args.scope()?;
            storage.revoke_device(&scope, now_ms()).await.map_err(err)?;
            println!("revoked {}/{}/{}", scope.tenant, scope.store, scope.device);
            Ok(())
        }
        Command::Log(LogCommand::Compact(args)) => {
            let horizon = args.horizon()?;
            let done = storage.compact(&args.tenant, horizon).await.map_err(err)?;
            println!(
                "compacted {}: horizon {} of {}, {} log entries removed",
                args.tenant, done.horizon, done.head, done.removed
            );
            Ok(())
        }
        Command::Bills(BillsCommand::OverRefunded { tenant }) => {
            println!("store\tnumber\ttotal\trefunded\tsale");
            for sale in storage.over_refunded_sales(&tenant).await.map_err(err)? {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    sale.store, sale.number, sale.total, sale.refunded_total, sale.id
                );
            }
            Ok(())
        }
        Command::Device(DeviceCommand::List { tenant }) => {
            println!("store\tdevice\tstatus\tlast_seen_ms\tclock_clamps");
            for d in storage.list_devices(&tenant).await.map_err(err)? {
                let status = if d.revoked_at_ms.is_some() {
                    "revoked"
                } else {
                    "active"
                };
                let seen = d.last_seen_ms.map_or("-".to_string(), |t| t.to_string());
                println!(
                    "{}\t{}\t{status}\t{seen}\t{}",
                    d.store, d.device, d.clock_clamps
                );
            }
            Ok(())
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TILL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
