//! `ferry-install`: the air-gapped-side command. Parses arguments and calls the library.

use clap::{Args, Parser, Subcommand, ValueEnum};
use ferry_bundle::{read_manifest, BundleSource, Reporter, TermReporter, UnverifiedBundle};
use ferry_installer::apply::service::ServiceManager;
use ferry_installer::apply::{
    apply, resume, rollback, status as run_status, ApplyOptions, Operator, RunStatus, Status,
    Summary,
};
use ferry_installer::backup::{
    create as create_backup, list_sets, restore_set, BackupManifest, CreateRequest, Item,
    RestoreOptions, BACKUP_DIR,
};
use ferry_installer::config::Config;
use ferry_installer::host::Host;
use ferry_installer::images::{
    load_images, parse_registry, push_images, Credentials, ImagesReport, PushOptions, Runtime,
};
use ferry_installer::inventory::{dpkg_configure_command, take_inventory};
use ferry_installer::plan::{plan_bundle, Failure, Plan};
use ferry_installer::secret::Secret;
use ferry_installer::state::write_atomic;
use ferry_installer::verify::{verify_bundle, VerifyRequest};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "ferry-install",
    version,
    about = "Verify and install ferry bundles on an air-gapped host"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Operate on a system image rooted at DIR (every host path is taken under it).
    #[arg(long, global = true, default_value = "/", value_name = "DIR")]
    root: PathBuf,
    /// Host configuration (default: /etc/ferry/installer.toml under --root).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print less: no progress, no step messages.
    #[arg(short, long, global = true)]
    quiet: bool,
    /// More log output (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// How services are restarted (default: installer.toml, else detected: systemd when
    /// running, else `service`; nothing under --root).
    #[arg(long, global = true, value_enum)]
    service_manager: Option<ManagerArg>,
}

#[derive(Clone, Copy, ValueEnum)]
enum ManagerArg {
    Systemd,
    Sysv,
    None,
}

impl ManagerArg {
    fn get(self) -> ServiceManager {
        match self {
            ManagerArg::Systemd => ServiceManager::Systemd,
            ManagerArg::Sysv => ServiceManager::Sysv,
            ManagerArg::None => ServiceManager::None,
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Verify a bundle's signatures, freshness and every byte; writes nothing.
    Verify(VerifyArgs),
    /// Show a bundle's manifest without verifying it (reads only the first entries).
    Inspect {
        /// The bundle (or its first part).
        bundle: PathBuf,
        /// Print the manifest and signatures as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Record this host's OS, dpkg architectures and package states for `ferry-build --inventory`; reads only.
    Inventory {
        /// Write the inventory here (atomically; a path on this machine, not under --root)
        /// and print a summary; without it the inventory JSON goes to stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// With --out, print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Verify a bundle, show what applying it would change here, and run the preflight
    /// checks (exit code 4 when one fails); writes nothing.
    Plan {
        #[command(flatten)]
        verify: VerifyArgs,
        /// Only these steps (comma-separated component names).
        #[arg(long, value_delimiter = ',', value_name = "A,B")]
        components: Option<Vec<String>>,
    },
    /// Load a bundle's container images into docker/podman, or push them to a registry.
    #[command(subcommand)]
    Images(ImagesCommand),
    /// Take, list and restore backup sets of configs, files and databases (/var/backups/ferry).
    #[command(subcommand)]
    Backup(BackupCommand),
    /// Verify, back up, capture rollback packages, then install each step with dpkg,
    /// restart and health-check it; on failure roll everything back (exit 5).
    Apply {
        #[command(flatten)]
        verify: VerifyArgs,
        /// Only these steps (comma-separated component names).
        #[arg(long, value_delimiter = ',', value_name = "A,B")]
        components: Option<Vec<String>>,
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
        /// Show everything apply would do, including the exact dpkg command lines,
        /// and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Go ahead even when a package being replaced cannot be captured for rollback
        /// (a failure then stops without undoing anything).
        #[arg(long)]
        no_rollback: bool,
    },
    /// Continue an interrupted apply forward from its last safe point.
    Resume {
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Put the host back as it was before the interrupted run, or before the last
    /// applied run (or the run that took backup set BACKUP_ID).
    Rollback {
        /// The backup set id of the run to roll back.
        #[arg(long, value_name = "BACKUP_ID")]
        to: Option<String>,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The bundle's .debs as a local APT repository.
    #[command(subcommand)]
    Repo(RepoCommand),
    /// Show the run in progress or the last run, and what each channel has applied.
    Status {
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum BackupCommand {
    /// Take a backup set: the configs, files and databases a bundle's steps and backups
    /// name (verified first), or without a bundle the [[backup]] entries of installer.toml.
    Create {
        /// The bundle whose backups to take (optional).
        bundle: Option<PathBuf>,
        /// Write the set under DIR instead of /var/backups/ferry (a path on this machine).
        #[arg(long, value_name = "DIR")]
        dest: Option<PathBuf>,
        /// Trust store for verifying the bundle (default /etc/ferry/trusted).
        #[arg(long, value_name = "PATH")]
        trust: Option<PathBuf>,
        /// A detached co-signature of the bundle; repeatable.
        #[arg(long = "signature", value_name = "SIG")]
        signatures: Vec<PathBuf>,
        /// Distinct trusted keys whose signatures are required.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        threshold: Option<u64>,
        /// Only the steps of these components (comma-separated).
        #[arg(long, value_delimiter = ',', value_name = "A,B")]
        components: Option<Vec<String>>,
        /// Print backup.json instead of a summary.
        #[arg(long)]
        json: bool,
    },
    /// List backup sets (id, complete or INCOMPLETE, items, size); reads only.
    List {
        /// Print the sets as JSON.
        #[arg(long)]
        json: bool,
        /// Look under DIR instead of /var/backups/ferry.
        #[arg(long, value_name = "DIR")]
        dest: Option<PathBuf>,
    },
    /// Restore from a complete set, after checking the sha256 of everything selected:
    /// files with their metadata, PostgreSQL with pg_restore --clean, MongoDB with
    /// mongorestore --drop, Redis into the server named by --redis-target (without it,
    /// the manual procedure is printed).
    Restore {
        /// The set's id (as `backup list` shows it).
        id: String,
        /// Only this kind of item.
        #[arg(long, value_enum)]
        only: Option<KindArg>,
        /// Only these host paths (files, or everything under a directory); repeatable.
        #[arg(long = "path", value_name = "PATH")]
        paths: Vec<String>,
        /// Load the Redis snapshot into this running server (its keys are replaced);
        /// the password comes from FERRY_REDIS_PASSWORD or installer.toml [redis].
        #[arg(long, value_name = "HOST:PORT")]
        redis_target: Option<String>,
        /// Restore PostgreSQL into this database (libpq connection string) instead of
        /// the one the dump came from.
        #[arg(
            long,
            value_name = "CONNINFO",
            env = "FERRY_POSTGRES_TARGET",
            hide_env_values = true
        )]
        postgres_target: Option<String>,
        /// Restore MongoDB into this deployment instead of the one the dump came from.
        #[arg(
            long,
            value_name = "URI",
            env = "FERRY_MONGODB_TARGET",
            hide_env_values = true
        )]
        mongodb_target: Option<String>,
        /// Look under DIR instead of /var/backups/ferry.
        #[arg(long, value_name = "DIR")]
        dest: Option<PathBuf>,
        /// Print what was restored as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum RepoCommand {
    /// Verify the bundle, then write its .debs into DIR (new or empty) as a flat APT
    /// repository (Packages, Packages.gz, Release) and print the sources line for it.
    Export {
        #[command(flatten)]
        verify: VerifyArgs,
        /// The repository directory (a path on this machine, not under --root).
        dir: PathBuf,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum KindArg {
    Files,
    Redis,
    Postgres,
    Mongodb,
}

#[derive(Subcommand)]
enum ImagesCommand {
    /// Verify the bundle, then stream each image from the verified copy into `docker load`
    /// (or `podman load`).
    Load {
        #[command(flatten)]
        verify: VerifyArgs,
        /// Container runtime to load into (default: docker if on PATH, else podman).
        #[arg(long, value_enum)]
        runtime: Option<RuntimeArg>,
    },
    /// Verify the bundle, then copy each image from the verified copy into a registry with
    /// skopeo, keeping its digest, and check the digest the registry reports.
    Push {
        #[command(flatten)]
        verify: VerifyArgs,
        /// Destination registry.
        #[arg(long, value_name = "HOST:PORT", value_parser = parse_registry)]
        registry: String,
        /// Plain HTTP or an unverified certificate for the registry.
        #[arg(long)]
        insecure: bool,
        /// Registry credentials (prefer the environment variable: a command line is
        /// visible to other users of the host). Never printed.
        #[arg(
            long,
            value_name = "USER:PASS",
            env = "FERRY_DEST_CREDS",
            hide_env_values = true
        )]
        dest_creds: Option<String>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum RuntimeArg {
    Docker,
    Podman,
}

#[derive(Args)]
struct VerifyArgs {
    /// The bundle (or its first part).
    bundle: PathBuf,
    /// Trust store: a directory of *.pub files or one .pub file (default /etc/ferry/trusted).
    #[arg(long, value_name = "PATH")]
    trust: Option<PathBuf>,
    /// A detached co-signature; repeatable. Counts toward the threshold with the embedded ones.
    #[arg(long = "signature", value_name = "SIG")]
    signatures: Vec<PathBuf>,
    /// Distinct trusted keys whose signatures are required (default 1, or installer.toml).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    threshold: Option<u64>,
    /// Accept a sequence lower than one already applied on this channel (downgrade).
    #[arg(long)]
    allow_replay: bool,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(exit_code(&err))
        }
    }
}

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => return,
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::new(level))
        .try_init();
}

fn exit_code(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<ferry_installer::Error>() {
            return e.exit_code();
        }
        if let Some(e) = cause.downcast_ref::<ferry_bundle::Error>() {
            return if e.is_verification_failure() { 3 } else { 1 };
        }
    }
    1
}

impl VerifyArgs {
    fn request(&self) -> VerifyRequest {
        VerifyRequest {
            trust: self.trust.clone(),
            signatures: self.signatures.clone(),
            threshold: self.threshold.map(|n| n as usize),
            allow_replay: self.allow_replay,
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let reporter = TermReporter::new(cli.quiet);
    let host = Host::new(&cli.root);
    match cli.command {
        Command::Verify(args) => {
            let config = Config::load(&host, cli.config.as_deref())?;
            let request = args.request();
            let report = verify_bundle(&host, &config, &args.bundle, &request, None, &reporter)?;
            let m = &report.unverified.manifest;
            if args.json {
                let out = serde_json::json!({
                    "verified": true,
                    "bundle": args.bundle,
                    "name": m.name,
                    "channel": m.channel,
                    "sequence": m.sequence,
                    "created": m.created,
                    "expires": m.expires,
                    "target": m.target,
                    "signers": report.signers.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "untrusted_signers": report.untrusted.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "threshold": report.threshold,
                    "files": report.files,
                    "payload_bytes": report.payload_bytes,
                    "compressed": report.compressed,
                    "warnings": report.warnings,
                });
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else if !cli.quiet {
                println!("OK: {} verified", args.bundle.display());
                println!(
                    "  name       {} (channel {}, sequence {})",
                    m.name, m.channel, m.sequence
                );
                println!(
                    "  target     {} {} {}",
                    m.target.distro, m.target.codename, m.target.arch
                );
                println!(
                    "  signatures {} of {} required trusted key(s): {}",
                    report.signers.len(),
                    report.threshold,
                    join(&report.signers)
                );
                if !report.untrusted.is_empty() {
                    println!(
                        "             ignored, not trusted here: {}",
                        join(&report.untrusted)
                    );
                }
                println!(
                    "  payload    {} file(s), {} bytes, every sha256 matches",
                    report.files, report.payload_bytes
                );
                println!("  created    {}   expires {}", m.created, m.expires);
            }
        }
        Command::Inventory { out, json } => {
            let inventory = take_inventory(&host, &reporter)?;
            let broken: Vec<_> = inventory.broken().collect();
            if !broken.is_empty() {
                let list = broken
                    .iter()
                    .map(|p| format!("  {} {} ({})", p.spec(), p.version, p.status))
                    .collect::<Vec<_>>()
                    .join("\n");
                reporter.warn(&format!(
                    "{} package(s) left half-done by dpkg:\n{list}\nhelp: run `{}` on the host, then take the inventory again",
                    broken.len(),
                    dpkg_configure_command(&host)
                ));
            }
            let Some(out) = out else {
                std::io::Write::write_all(&mut std::io::stdout().lock(), &inventory.to_json())?;
                return Ok(ExitCode::SUCCESS);
            };
            write_atomic(&out, &inventory.to_json())?;
            let installed = inventory.installed().count();
            if json {
                let summary = serde_json::json!({
                    "out": out,
                    "hostname": inventory.hostname,
                    "os": inventory.os,
                    "arch": inventory.arch,
                    "foreign_archs": inventory.foreign_archs,
                    "packages": inventory.packages.len(),
                    "installed": installed,
                    "problems": broken.iter().map(|p| serde_json::json!({
                        "package": p.spec(), "version": p.version, "status": p.status,
                    })).collect::<Vec<_>>(),
                });
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else if !cli.quiet {
                let os = inventory.os.pretty_name.clone().unwrap_or_else(|| {
                    [
                        Some(inventory.os.id.as_str()),
                        inventory.os.version_id.as_deref(),
                    ]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(" ")
                });
                println!(
                    "inventory of {} ({os}, {}): {installed} packages installed, {} with problems -> {}",
                    inventory.hostname.as_deref().unwrap_or("unnamed host"),
                    inventory.arch,
                    broken.len(),
                    out.display()
                );
            }
        }
        Command::Images(ImagesCommand::Load { verify, runtime }) => {
            let config = Config::load(&host, cli.config.as_deref())?;
            let runtime = runtime.map(|r| match r {
                RuntimeArg::Docker => Runtime::Docker,
                RuntimeArg::Podman => Runtime::Podman,
            });
            let report = load_images(
                &host,
                &config,
                &verify.bundle,
                &verify.request(),
                runtime,
                &reporter,
            )?;
            print_images(&report, &verify, cli.quiet, "load")?;
        }
        Command::Images(ImagesCommand::Push {
            verify,
            registry,
            insecure,
            dest_creds,
        }) => {
            let config = Config::load(&host, cli.config.as_deref())?;
            let options = PushOptions {
                registry,
                insecure,
                credentials: dest_creds.as_deref().map(Credentials::parse).transpose()?,
            };
            let report = push_images(
                &host,
                &config,
                &verify.bundle,
                &verify.request(),
                &options,
                &reporter,
            )?;
            print_images(&report, &verify, cli.quiet, "push")?;
        }
        Command::Plan { verify, components } => {
            let config = Config::load(&host, cli.config.as_deref())?;
            let plan = plan_bundle(
                &host,
                &config,
                &verify.bundle,
                &verify.request(),
                components.as_deref(),
                std::env::var_os("PATH"),
                &reporter,
            )?;
            if verify.json {
                println!("{}", serde_json::to_string_pretty(&plan)?);
            } else if !cli.quiet || !plan.preflight.ok {
                print_plan(&plan);
            }
            if !plan.preflight.ok {
                return Err(ferry_installer::Error::Preflight {
                    failures: plan.preflight.failures.len(),
                }
                .into());
            }
        }
        Command::Backup(BackupCommand::Create {
            bundle,
            dest,
            trust,
            signatures,
            threshold,
            components,
            json,
        }) => {
            let config = Config::load(&host, cli.config.as_deref())?;
            let request = match &bundle {
                Some(bundle) => {
                    let verify = VerifyRequest {
                        trust,
                        signatures,
                        threshold: threshold.map(|n| n as usize),
                        allow_replay: true,
                    };
                    let plan = plan_bundle(
                        &host,
                        &config,
                        bundle,
                        &verify,
                        components.as_deref(),
                        std::env::var_os("PATH"),
                        &reporter,
                    )?;
                    let relevant: Vec<_> = plan
                        .preflight
                        .failures
                        .iter()
                        .filter(|f| matches!(f.check, "backup-source" | "backup-tool"))
                        .collect();
                    if !relevant.is_empty() {
                        for f in &relevant {
                            eprintln!(
                                "preflight FAILED [{}] {}\n  help: {}",
                                f.check, f.message, f.help
                            );
                        }
                        return Err(ferry_installer::Error::Preflight {
                            failures: relevant.len(),
                        }
                        .into());
                    }
                    plan.backup_request
                        .expect("resolved when backup-source passed")
                }
                None => CreateRequest::for_host(&host, &config)?,
            };
            let manifest = create_backup(&host, &config, dest.as_deref(), &request, &reporter)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&manifest)?);
            } else if !cli.quiet {
                let set_dir = dest
                    .clone()
                    .or_else(|| config.backup_dir.as_ref().map(|d| host.path(d)))
                    .unwrap_or_else(|| host.path(BACKUP_DIR))
                    .join(&manifest.id);
                println!("backup set {} complete: {}", manifest.id, set_dir.display());
                print_backup_items(&manifest);
                println!("restore with: ferry-install backup restore {}", manifest.id);
            }
        }
        Command::Backup(BackupCommand::Restore {
            id,
            only,
            paths,
            redis_target,
            postgres_target,
            mongodb_target,
            dest,
            json,
        }) => {
            let config = Config::load(&host, cli.config.as_deref())?;
            let options = RestoreOptions {
                only: only.map(|k| match k {
                    KindArg::Files => "files",
                    KindArg::Redis => "redis",
                    KindArg::Postgres => "postgres",
                    KindArg::Mongodb => "mongodb",
                }),
                paths,
                redis_target,
                postgres_target: postgres_target.map(Secret::new),
                mongodb_target: mongodb_target.map(Secret::new),
                redis_password: std::env::var("FERRY_REDIS_PASSWORD").ok().map(Secret::new),
            };
            let base = dest.or_else(|| config.backup_dir.as_ref().map(|d| host.path(d)));
            let report = restore_set(&host, &config, base.as_deref(), &id, &options, &reporter)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else if !cli.quiet {
                for line in report.lines() {
                    println!("{line}");
                }
            }
        }
        Command::Backup(BackupCommand::List { json, dest }) => {
            let config = Config::load(&host, cli.config.as_deref())?;
            let base = dest.or_else(|| config.backup_dir.as_ref().map(|d| host.path(d)));
            let sets = list_sets(&host, base.as_deref())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&sets)?);
            } else if sets.is_empty() {
                if !cli.quiet {
                    let dir = base.unwrap_or_else(|| host.path(BACKUP_DIR));
                    println!("no backup sets in {}", dir.display());
                }
            } else {
                println!(
                    "{:<40} {:<10} {:>6} {:>12}",
                    "ID", "STATUS", "ITEMS", "BYTES"
                );
                for s in &sets {
                    let status = if s.complete { "complete" } else { "INCOMPLETE" };
                    println!("{:<40} {status:<10} {:>6} {:>12}", s.id, s.items, s.size);
                }
            }
        }
        Command::Apply {
            verify,
            components,
            yes,
            dry_run,
            no_rollback,
        } => {
            let config = Config::load(&host, cli.config.as_deref())?;
            let opts = ApplyOptions {
                bundle: verify.bundle.clone(),
                verify: verify.request(),
                components,
                yes,
                dry_run,
                no_rollback,
                service_manager: cli.service_manager.map(ManagerArg::get),
                path: std::env::var_os("PATH"),
            };
            let operator = TermOperator {
                quiet: cli.quiet,
                json: verify.json,
            };
            let summary = apply(&host, &config, &opts, &operator, &reporter)?;
            return finish_run(&summary, verify.json, cli.quiet);
        }
        Command::Resume { json } => {
            let config = Config::load(&host, cli.config.as_deref())?;
            let summary = resume(
                &host,
                &config,
                cli.service_manager.map(ManagerArg::get),
                &reporter,
            )?;
            return finish_run(&summary, json, cli.quiet);
        }
        Command::Rollback { to, json } => {
            let config = Config::load(&host, cli.config.as_deref())?;
            let summary = rollback(
                &host,
                &config,
                to.as_deref(),
                cli.service_manager.map(ManagerArg::get),
                &reporter,
            )?;
            return finish_run(&summary, json, cli.quiet);
        }
        Command::Repo(RepoCommand::Export { verify, dir }) => {
            let config = Config::load(&host, cli.config.as_deref())?;
            let exported = ferry_installer::repo::export(
                &host,
                &config,
                &verify.bundle,
                &verify.request(),
                &dir,
                &reporter,
            )?;
            if verify.json {
                println!("{}", serde_json::to_string_pretty(&exported)?);
            } else if !cli.quiet {
                println!(
                    "{} package(s) in {}, verified from {}:",
                    exported.packages.len(),
                    exported.dir.display(),
                    verify.bundle.display()
                );
                for p in &exported.packages {
                    println!("  {p}");
                }
                println!("sources line (e.g. /etc/apt/sources.list.d/ferry.list):");
                println!("  {}", exported.sources_line);
            }
        }
        Command::Status { json } => {
            let status = run_status(&host)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print_status(&status);
            }
        }
        Command::Inspect { bundle, json } => {
            let source = BundleSource::open(&bundle)?;
            let head = read_manifest(&source)?;
            if json {
                print_inspect_json(&source, &head)?;
            } else {
                print_inspect(&source, &head);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One line per item of a finished set: files summed, each database on its own.
fn print_backup_items(m: &BackupManifest) {
    let files: Vec<_> = m
        .items
        .iter()
        .filter(|i| matches!(i, Item::Files(_)))
        .collect();
    if !files.is_empty() {
        let bytes: u64 = files.iter().map(|i| i.size()).sum();
        println!("  files     {} entries, {bytes} bytes", files.len());
    }
    for item in &m.items {
        if let Item::Redis(d) | Item::Postgres(d) | Item::Mongodb(d) = item {
            println!(
                "  {:<9} {} -> {} ({} bytes, sha256 {}, {})",
                item.kind(),
                d.source,
                d.path_in_set,
                d.size,
                &d.sha256[..16.min(d.sha256.len())],
                d.checks.join("; ")
            );
        }
    }
    for s in &m.skipped {
        println!("  skipped   {} ({})", s.pattern, s.reason);
    }
}

/// `images load|push` output: a JSON list of `{reference, digest, file, result,
/// destination}` with `--json`, one line per image otherwise.
fn print_images(
    report: &ImagesReport,
    args: &VerifyArgs,
    quiet: bool,
    verb: &str,
) -> anyhow::Result<()> {
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report.images)?);
        return Ok(());
    }
    if quiet {
        return Ok(());
    }
    if report.images.is_empty() {
        println!(
            "OK: {} verified; bundle {} carries no container images, nothing to {verb}",
            args.bundle.display(),
            report.name
        );
        return Ok(());
    }
    let tool = report
        .tool
        .as_deref()
        .map_or_else(String::new, |t| format!(" with {}", t.display()));
    println!(
        "OK: {} verified; {} image(s) {}{tool}",
        args.bundle.display(),
        report.images.len(),
        if verb == "load" { "loaded" } else { "pushed" }
    );
    for i in &report.images {
        if verb == "load" {
            let names = if i.destination.is_empty() {
                "(no name reported)"
            } else {
                &i.destination
            };
            println!("  {} {} -> {names}", i.reference, i.digest);
        } else {
            println!(
                "  {} -> {} (registry digest {} matches the bundle)",
                i.reference, i.destination, i.digest
            );
        }
    }
    Ok(())
}

fn print_plan(plan: &Plan) {
    print_plan_with(plan, &[]);
}

fn print_plan_with(plan: &Plan, extra: &[Failure]) {
    println!("plan for {} ({})", plan.name, plan.bundle.display());
    println!(
        "  target {} {} {}; this host {} {} {}",
        plan.target.distro,
        plan.target.codename,
        plan.target.arch,
        plan.host.distro,
        plan.host.codename,
        plan.host.arch
    );
    for (n, step) in plan.steps.iter().enumerate() {
        println!("step {} {}: {}", n + 1, step.component, step.reason);
        for p in &step.packages {
            println!(
                "  {:<9} {} {} -> {} ({})",
                p.change,
                p.name,
                p.from.as_deref().unwrap_or("not installed"),
                p.to,
                p.role
            );
        }
    }
    if !plan.images.is_empty() {
        println!("images");
        for i in &plan.images {
            println!("  {} {} ({} bytes)", i.reference, i.digest, i.size);
        }
    }
    if !plan.backups.is_empty() {
        println!("backups");
        for b in &plan.backups {
            if let Some(why) = &b.skipped {
                println!("  skipped  {} ({why})", b.paths.join(" "));
                continue;
            }
            let what = match (&b.source, &b.config) {
                (Some(source), Some(config)) => format!("{source} (from {config})"),
                (Some(source), None) => source.clone(),
                _ => b.paths.join(" "),
            };
            let size = match (b.estimated_bytes, &b.note) {
                (Some(n), _) => format!("about {:.1} MiB", n as f64 / 1048576.0),
                (None, Some(note)) => format!("size unknown: {note}"),
                (None, None) => "size known once dumped".to_string(),
            };
            println!("  {:<8} {what}  [{size}]", b.kind);
        }
    }
    for note in &plan.notes {
        println!("note: {note}");
    }
    let failures: Vec<&Failure> = plan.preflight.failures.iter().chain(extra).collect();
    if failures.is_empty() {
        println!("preflight: OK");
    } else {
        println!("preflight: {} failure(s)", failures.len());
        for f in failures {
            println!("  [{}] {}\n    help: {}", f.check, f.message, f.help);
        }
    }
}

fn print_status(status: &Status) {
    let show = |label: &str, r: &RunStatus| {
        println!(
            "{label}: run {} of {} — {} (started {}, last written {})",
            r.run_id,
            r.bundle,
            serde_json::to_value(r.phase)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default(),
            r.started,
            r.updated
        );
        for c in &r.components {
            println!(
                "  {:<12} {:<20} -> {:<20} {:<12} {}",
                c.component,
                c.before,
                c.after,
                serde_json::to_value(c.state)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default(),
                c.health
            );
        }
        if let Some(f) = &r.failure {
            println!("  failed: {f}");
        }
        if let Some(b) = &r.backup_id {
            println!("  backup set: {b}");
        }
        println!("  log: {}", r.log.display());
    };
    match &status.in_progress {
        Some(r) if status.running => show("RUNNING", r),
        Some(r) => {
            show("INTERRUPTED", r);
            println!(
                "next: `ferry-install resume` to continue, or `ferry-install rollback` to go back"
            );
        }
        None => println!("no run in progress"),
    }
    if let Some(r) = &status.last_run {
        show("last run", r);
    }
    for (channel, c) in &status.channels {
        println!(
            "channel {channel}: sequence {} ({}), newest created {}",
            c.sequence, c.name, c.newest_created
        );
    }
}

/// The terminal side of `apply`: the plan on stdout, the question on stderr.
struct TermOperator {
    quiet: bool,
    json: bool,
}

impl Operator for TermOperator {
    fn show_plan(&self, plan: &Plan, extra: &[Failure]) {
        let failed = !plan.preflight.failures.is_empty() || !extra.is_empty();
        if self.json {
            if failed {
                let mut failures = plan.preflight.failures.clone();
                failures.extend(extra.iter().cloned());
                let out = serde_json::json!({ "plan": plan, "preflight_failures": failures });
                println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
            }
            return;
        }
        if !self.quiet || failed {
            print_plan_with(plan, extra);
        }
    }

    fn confirm(&self) -> ferry_installer::Result<bool> {
        // SAFETY: isatty has no preconditions.
        if unsafe { libc::isatty(0) } != 1 {
            return Err(ferry_installer::Error::Usage(
                "refusing to ask for confirmation without a terminal on stdin; pass --yes to apply without asking".into(),
            ));
        }
        eprint!("apply this plan? [y/N] ");
        let mut answer = String::new();
        std::io::stdin()
            .read_line(&mut answer)
            .map_err(|e| ferry_installer::Error::Usage(format!("reading the answer: {e}")))?;
        Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
    }
}

/// Print a run's summary (table or JSON) and turn its outcome into the exit code.
fn finish_run(summary: &Summary, json: bool, quiet: bool) -> anyhow::Result<ExitCode> {
    if json {
        println!("{}", serde_json::to_string_pretty(summary)?);
    } else if !quiet || summary.exit_code() != 0 {
        for line in summary.lines() {
            println!("{line}");
        }
    }
    Ok(ExitCode::from(summary.exit_code()))
}

fn join<T: ToString>(items: &[T]) -> String {
    if items.is_empty() {
        return "none".into();
    }
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn print_inspect_json(source: &BundleSource, head: &UnverifiedBundle) -> anyhow::Result<()> {
    let out = serde_json::json!({
        "verified": false,
        "bundle": source.display_path(),
        "parts": source.parts(),
        "size": source.size_on_disk(),
        "signatures": head.signatures.iter().map(|s| serde_json::json!({
            "entry": s.entry,
            "key_id": s.signature.key_id().to_string(),
            "trusted_comment": s.signature.trusted_comment(),
        })).collect::<Vec<_>>(),
        "manifest": head.manifest,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

/// Packages grouped by the step that installs them, then any the steps do not name
/// (previous versions carried for rollback, for instance).
fn print_packages_by_step(m: &ferry_bundle::Manifest) {
    if m.packages.is_empty() {
        return;
    }
    let line = |p: &ferry_bundle::Package| {
        format!(
            "    {:<11} {} {} {}",
            format!("{:?}", p.role).to_lowercase(),
            p.name,
            p.version,
            p.arch
        )
    };
    println!("packages");
    let mut shown = std::collections::BTreeSet::new();
    for (n, step) in m.steps.iter().enumerate() {
        println!("  step {} {}", n + 1, step.component);
        for name in &step.packages {
            for p in m
                .packages
                .iter()
                .filter(|p| &p.name == name && p.role != ferry_bundle::Role::Previous)
            {
                println!("{}", line(p));
                shown.insert((p.name.clone(), p.version.clone()));
            }
        }
    }
    let rest: Vec<_> = m
        .packages
        .iter()
        .filter(|p| !shown.contains(&(p.name.clone(), p.version.clone())))
        .collect();
    if !rest.is_empty() {
        println!("  not installed by any step");
        for p in rest {
            println!("{}", line(p));
        }
    }
}

fn print_inspect(source: &BundleSource, head: &UnverifiedBundle) {
    let m = &head.manifest;
    println!(
        "bundle     {} ({} part(s), {} bytes)",
        source.display_path().display(),
        source.parts().len(),
        source.size_on_disk()
    );
    println!("name       {}", m.name);
    println!("channel    {} (sequence {})", m.channel, m.sequence);
    println!(
        "target     {} {} {}",
        m.target.distro, m.target.codename, m.target.arch
    );
    println!("created    {}   expires {}", m.created, m.expires);
    println!("builder    {}", m.builder);
    for s in &head.signatures {
        println!(
            "signature  {} \"{}\"",
            s.signature.key_id(),
            s.signature.trusted_comment()
        );
    }
    println!("files      {} ({} bytes)", m.files.len(), m.payload_size());
    for f in &m.files {
        println!(
            "  {} {:>12}  {}  {}",
            f.mode,
            f.size,
            &f.sha256[..16],
            f.path
        );
    }
    print_packages_by_step(m);
    if !m.images.is_empty() {
        println!("images");
        for i in &m.images {
            let size = m.file(&i.file).map_or(0, |f| f.size);
            println!(
                "  {} {} {} ({} bytes)",
                i.reference, i.digest, i.platform, size
            );
        }
    }
    if !m.steps.is_empty() {
        println!("steps");
        for (n, s) in m.steps.iter().enumerate() {
            println!(
                "  {}. {} [{}]{}",
                n + 1,
                s.component,
                s.packages.join(", "),
                if s.only_if_installed {
                    " (only if installed)"
                } else {
                    ""
                }
            );
        }
    }
    if !m.backups.is_empty() {
        println!("backups");
        for b in &m.backups {
            let kind = format!("{:?}", b.kind).to_lowercase();
            let what = b.config.clone().unwrap_or_else(|| b.paths.join(" "));
            println!("  {kind} {what}");
        }
    }
    for note in &m.notes {
        println!("note: {note}");
    }
    println!("NOT VERIFIED: inspect only reads the manifest; run `ferry-install verify` before trusting it");
}
