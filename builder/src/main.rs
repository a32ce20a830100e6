//! `ferry-build`: the connected-side command. Parses arguments and calls the library.

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use ferry_builder::build::{build, build_time, parse_size, BuildOptions, InstallerDeb};
use ferry_builder::fetch::{resolve, FetchOptions, Lock};
use ferry_builder::http::{Cache, Http};
use ferry_builder::keyfile::{self, write_file, EnvOrPrompt, PassphraseSource};
use ferry_builder::profile::tyk::{self, Component, GeneratedSpec, Outputs, TykProfile};
use ferry_builder::spec::Spec;
use ferry_bundle::{read_bundle, BundleSource, Check, Compression, Reporter, TermReporter};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "ferry-build",
    version,
    about = "Fetch packages and images into one signed ferry bundle"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Print less: no progress, no step messages.
    #[arg(short, long, global = true)]
    quiet: bool,
    /// More log output (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
}

#[derive(Subcommand)]
enum Command {
    /// Manage signing keys (minisign format).
    #[command(subcommand)]
    Key(KeyCommand),
    /// Resolve a spec's packages and dependencies; print them and write SPEC.lock.
    Resolve(ResolveArgs),
    /// Build a signed bundle from a spec.
    Build(BuildArgs),
    /// Co-sign a bundle: write a detached signature over its manifest.
    Sign(SignArgs),
    /// Print the spec of a built-in profile (review it, then `build --spec` it).
    #[command(subcommand)]
    Spec(SpecCommand),
    /// Tyk in one go: write the Tyk profile's spec into --out, resolve it (SPEC.lock) and
    /// build it, as `spec tyk`, `resolve` and `build` would.
    Tyk(Box<TykArgs>),
}

#[derive(Subcommand)]
enum SpecCommand {
    /// The Tyk profile: Dashboard, Gateway and Pump from Tyk's APT repositories, upgraded
    /// in that order with health checks, backups and Go plugin notes. Prints TOML.
    Tyk(TykSpecArgs),
}

/// The Tyk profile's flags (`spec tyk` and `tyk`).
#[derive(Args)]
#[command(next_help_heading = "Tyk profile")]
struct TykProfileArgs {
    /// Tyk Dashboard and Gateway version to install, e.g. 5.2.5.
    #[arg(long = "version", value_name = "V")]
    tyk_version: String,
    /// Tyk Pump version (Pump has its own 1.x line) [default: the newest].
    #[arg(long, value_name = "V")]
    pump_version: Option<String>,
    /// Target distribution.
    #[arg(long, value_parser = ["debian", "ubuntu"])]
    distro: String,
    /// Target release: bullseye or bookworm; xenial, bionic, focal, jammy or noble.
    #[arg(long)]
    codename: String,
    /// Target architecture (s390x from Tyk 5.3).
    #[arg(long, default_value = "amd64", value_parser = ["amd64", "arm64", "s390x"])]
    arch: String,
    /// The Tyk version the hosts run now (Go plugin notes; rollback with --carry-previous).
    #[arg(long, value_name = "V")]
    from: Option<String>,
    /// Also carry the --from Dashboard and Gateway packages, so rollback needs no network.
    #[arg(long, requires = "from")]
    carry_previous: bool,
    /// Components, comma-separated; they are always upgraded dashboard, gateway, pump.
    #[arg(
        long,
        value_delimiter = ',',
        value_parser = ["dashboard", "gateway", "pump"],
        default_value = "dashboard,gateway,pump"
    )]
    components: Vec<String>,
    /// Carry the docker.io/tykio/tyk-plugin-compiler:v<V> image (linux/amd64).
    #[arg(long)]
    plugin_compiler: bool,
    /// Carry this plugin compiler image instead (a mirror, e.g.
    /// HOST:PORT/tykio/tyk-plugin-compiler:v<V>); implies --plugin-compiler.
    #[arg(long, value_name = "REF")]
    plugin_compiler_image: Option<String>,
    /// A Go plugin compiled for V (repeatable): carried as
    /// files/plugins/<name>_v<V>_linux_<arch>.so and placed in --plugin-dir on the gateway
    /// host before tyk-gateway is installed.
    #[arg(long = "plugin", value_name = "FILE.so")]
    plugins: Vec<PathBuf>,
    /// Directory on the gateway host that --plugin files are placed in.
    #[arg(long, value_name = "DIR", default_value = tyk::DEFAULT_PLUGIN_DIR)]
    plugin_dir: String,
    /// A Tyk plugin bundle manifest.json: rebuilt as a zip whose file_list has the
    /// current plugin and its build for V (from --plugin or beside the manifest), with a
    /// new checksum and the old signature dropped.
    #[arg(long, value_name = "manifest.json")]
    plugin_bundle: Option<PathBuf>,
    /// Base URL of Tyk's APT repositories (URL/tyk-gateway/<distro>/, ...).
    #[arg(long, value_name = "URL", default_value = tyk::DEFAULT_REPO_BASE)]
    repo_base: String,
    /// Directory with the repositories' signing keys (tyk-dashboard.asc, tyk-gateway.asc,
    /// tyk-pump.asc). Without it they are downloaded from URL/<repo>/gpgkey.
    #[arg(long, value_name = "DIR")]
    keyring_dir: Option<PathBuf>,
    /// Refuse a repository's signing key unless its primary fingerprint is FPR
    /// (repeatable), e.g. tyk-gateway=0123...CDEF.
    #[arg(long = "keyring-fingerprint", value_name = "REPO=FPR")]
    keyring_fingerprints: Vec<String>,
    /// Build for a distro and codename outside the supported list.
    #[arg(long)]
    allow_unsupported_os: bool,
    /// Bundle name [default: tyk-<V>-<distro>-<codename>-<arch>].
    #[arg(long)]
    name: Option<String>,
    /// Bundle validity in days [default: 90].
    #[arg(long, value_name = "DAYS")]
    expires_in_days: Option<u64>,
}

impl TykProfileArgs {
    fn profile(&self) -> anyhow::Result<TykProfile> {
        let mut p = TykProfile::new(&self.tyk_version, &self.distro, &self.codename);
        p.pump_version = self.pump_version.clone();
        p.arch = self.arch.clone();
        p.from = self.from.clone();
        p.carry_previous = self.carry_previous;
        p.components = self
            .components
            .iter()
            .map(|c| Component::parse(c))
            .collect::<Result<_, _>>()?;
        p.plugin_compiler = self.plugin_compiler;
        p.plugin_compiler_image = self.plugin_compiler_image.clone();
        p.plugins = self.plugins.clone();
        p.plugin_dir = self.plugin_dir.clone();
        p.plugin_bundle = self.plugin_bundle.clone();
        p.repo_base = self.repo_base.clone();
        p.keyring_dir = self.keyring_dir.clone();
        p.keyring_fingerprints = self.keyring_fingerprints.clone();
        p.allow_unsupported_os = self.allow_unsupported_os;
        p.name = self.name.clone();
        p.expires_in_days = self.expires_in_days;
        Ok(p)
    }
}

#[derive(Args)]
struct TykSpecArgs {
    #[command(flatten)]
    profile: TykProfileArgs,
    /// Where to write what the spec refers to: signing keys downloaded from the
    /// repositories (DIR/keys/) and the rebuilt plugin bundle (DIR/plugins/). Needed
    /// unless --keyring-dir holds every key and there is no --plugin-bundle. The printed
    /// spec refers to every file by absolute path.
    #[arg(long, value_name = "DIR")]
    assets_dir: Option<PathBuf>,
}

#[derive(Args)]
struct TykArgs {
    #[command(flatten)]
    profile: TykProfileArgs,
    #[command(flatten)]
    fetch: FetchArgs,
    /// Secret key to sign with (minisign format).
    #[arg(long)]
    key: PathBuf,
    /// Output directory: the spec (<name>.spec.toml) and its lock, downloaded signing
    /// keys (keys/), the rebuilt plugin bundle (plugins/) and the bundle.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    output: OutputArgs,
}

/// Say which signing key each repository uses; a key downloaded just now is always
/// reported, with its fingerprint, on stderr.
fn report_keys(generated: &GeneratedSpec, quiet: bool) {
    for key in &generated.keys {
        let fpr = key.fingerprints.join(", ");
        match &key.fetched_from {
            Some(url) if key.pinned => eprintln!(
                "{}: downloaded the signing key from {url} to {}: primary key {fpr}, as pinned",
                key.repo,
                key.path.display()
            ),
            Some(url) => eprintln!(
                "{}: downloaded the signing key from {url} to {}: primary key {fpr}\n  check it against a source you trust, then pin it with --keyring-fingerprint {}={fpr}",
                key.repo,
                key.path.display(),
                key.repo
            ),
            None if !quiet => eprintln!(
                "{}: signing key {} (primary key {fpr}{})",
                key.repo,
                key.path.display(),
                if key.pinned { ", as pinned" } else { "" }
            ),
            None => {}
        }
    }
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Generate a key pair: PATH.key (secret, 0600) and PATH.pub.
    Generate {
        /// Path prefix of the key files.
        #[arg(long)]
        out: PathBuf,
        /// Store the secret key unencrypted (no passphrase).
        #[arg(long)]
        no_passphrase: bool,
        /// Replace existing key files.
        #[arg(long)]
        force: bool,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum CompressionArg {
    Gzip,
    None,
}

/// How packages are fetched (resolve and build).
#[derive(Args, Clone)]
struct FetchArgs {
    /// The target host's `ferry-install inventory` output: packages it already has at a
    /// satisfying version are not fetched.
    #[arg(long, value_name = "HOST.json")]
    inventory: Option<PathBuf>,
    /// Download cache (default: $XDG_CACHE_HOME/ferry).
    #[arg(long, value_name = "DIR")]
    cache: Option<PathBuf>,
    /// Parallel downloads.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=64))]
    jobs: u64,
    /// Use this repository (by spec id) even without a valid signature. Dangerous.
    #[arg(long = "allow-unsigned-repository", value_name = "ID")]
    allow_unsigned: Vec<String>,
    /// Accept a Release file whose Valid-Until has passed.
    #[arg(long)]
    allow_expired_release: bool,
    /// Credentials for a container registry (repeatable); otherwise ~/.docker/config.json.
    #[arg(long = "registry-auth", value_name = "HOST=USER:PASS")]
    registry_auth: Vec<String>,
    /// A container registry that speaks plain HTTP (repeatable).
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    insecure_registry: Vec<String>,
}

impl FetchArgs {
    fn options(&self) -> anyhow::Result<FetchOptions> {
        let mut auth = std::collections::BTreeMap::new();
        for a in &self.registry_auth {
            let (host, creds) = ferry_builder::oci::parse_registry_auth(a)?;
            auth.insert(host, creds);
        }
        Ok(FetchOptions {
            jobs: self.jobs as usize,
            cache: self.cache.clone().unwrap_or_else(Cache::default_dir),
            inventory: self.inventory.clone(),
            allow_unsigned: self.allow_unsigned.clone(),
            allow_expired_release: self.allow_expired_release,
            registries: ferry_builder::oci::RegistryOptions {
                insecure: self.insecure_registry.clone(),
                auth,
                docker_config: None,
                jobs: self.jobs as usize,
            },
        })
    }
}

#[derive(Args)]
struct ResolveArgs {
    /// The spec (TOML).
    #[arg(long)]
    spec: PathBuf,
    #[command(flatten)]
    fetch: FetchArgs,
    /// Print the lock as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct BuildArgs {
    /// The spec (TOML).
    #[arg(long)]
    spec: PathBuf,
    #[command(flatten)]
    fetch: FetchArgs,
    /// Secret key to sign with (minisign format).
    #[arg(long)]
    key: PathBuf,
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    output: OutputArgs,
}

/// How the bundle is written, shared by `build` and `tyk`.
#[derive(Args)]
struct OutputArgs {
    /// gzip (default) or none.
    #[arg(long, value_enum, default_value = "gzip")]
    compression: CompressionArg,
    /// Split the bundle into parts of this size (e.g. 4G, 700M).
    #[arg(long)]
    split: Option<String>,
    /// Print the build result as JSON.
    #[arg(long)]
    json: bool,
    /// Copy this ferry-install .deb (or the one for the target architecture in this
    /// directory, e.g. a release's dist/) beside the bundle, with SHA256SUMS, its
    /// signature and README-airgap.txt.
    #[arg(long, value_name = "DEB|DIR")]
    with_installer: Option<PathBuf>,
}

#[derive(Args)]
struct SignArgs {
    /// The bundle (or its first part).
    bundle: PathBuf,
    /// Secret key to sign with.
    #[arg(long)]
    key: PathBuf,
    /// Where to write the detached signature.
    #[arg(long)]
    out: PathBuf,
    /// Replace an existing signature file.
    #[arg(long)]
    force: bool,
}

fn print_lock(lock: &Lock) {
    println!("baseline: {}", lock.baseline);
    for r in &lock.repositories {
        println!(
            "repository {}: {} (signed by {})",
            r.id,
            r.source,
            r.signed_by.as_deref().unwrap_or("NOBODY: allowed unsigned")
        );
    }
    let total: u64 = lock.packages.iter().map(|p| p.size).sum();
    println!(
        "{:<10} {:<28} {:<22} {:<6} {:>10}  {:<12} {:<10} why",
        "role", "package", "version", "arch", "size", "sha256", "repository"
    );
    for p in &lock.packages {
        let role = format!("{:?}", p.role).to_lowercase();
        println!(
            "{role:<10} {:<28} {:<22} {:<6} {:>10}  {:<12} {:<10} {}",
            p.name,
            p.version,
            p.arch,
            p.size,
            &p.sha256[..12],
            p.repository,
            p.reason
        );
    }
    println!("{} package(s), {total} bytes", lock.packages.len());
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

/// Exit codes from DESIGN.md: 3 for a bundle that fails verification, 1 otherwise.
fn exit_code(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<ferry_bundle::Error>() {
            if e.is_verification_failure() {
                return 3;
            }
        }
        if let Some(ferry_builder::Error::Bundle(e)) = cause.downcast_ref::<ferry_builder::Error>()
        {
            if e.is_verification_failure() {
                return 3;
            }
        }
    }
    1
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let reporter = TermReporter::new(cli.quiet);
    match cli.command {
        Command::Spec(SpecCommand::Tyk(args)) => {
            let generated = args.profile.profile()?.generate(Outputs {
                assets_dir: args.assets_dir.as_deref(),
                spec_dir: None,
            })?;
            report_keys(&generated, cli.quiet);
            print!("{}", generated.text);
        }
        Command::Tyk(args) => {
            let generated = args.profile.profile()?.generate(Outputs {
                assets_dir: Some(&args.out),
                spec_dir: Some(&args.out),
            })?;
            report_keys(&generated, cli.quiet);
            let spec = args.out.join(format!("{}.spec.toml", generated.name));
            write_file(&spec, generated.text.as_bytes(), 0o644)?;
            reporter.step(&format!("wrote {}", spec.display()));
            // Exactly `ferry-build resolve --spec SPEC` then `build --spec SPEC`: the lock
            // records the packages and the keys' fingerprints beside the spec.
            let step = |command, quiet| {
                run(Cli {
                    command,
                    quiet,
                    verbose: cli.verbose,
                })
            };
            // With --json, stdout carries only the build's JSON.
            let resolve = ResolveArgs {
                spec: spec.clone(),
                fetch: args.fetch.clone(),
                json: false,
            };
            step(Command::Resolve(resolve), cli.quiet || args.output.json)?;
            return step(
                Command::Build(BuildArgs {
                    spec,
                    fetch: args.fetch,
                    key: args.key,
                    out: args.out,
                    output: args.output,
                }),
                cli.quiet,
            );
        }
        Command::Key(KeyCommand::Generate {
            out,
            no_passphrase,
            force,
            json,
        }) => {
            let passphrase = if no_passphrase {
                None
            } else {
                Some(EnvOrPrompt.new_passphrase()?)
            };
            let key = keyfile::generate(&out, passphrase.as_deref().map(String::as_str), force)?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "key_id": key.public.id().to_string(),
                        "secret_key": key.secret_path,
                        "public_key": key.public_path,
                        "encrypted": !no_passphrase,
                    })
                );
            } else if !cli.quiet {
                println!("key id:      {}", key.public.id());
                println!(
                    "secret key:  {} (keep it offline; mode 0600)",
                    key.secret_path.display()
                );
                println!("public key:  {}", key.public_path.display());
                println!(
                    "next: copy {} to /etc/ferry/trusted/ on every air-gapped host",
                    key.public_path.display()
                );
            }
        }
        Command::Resolve(args) => {
            let spec = Spec::load(&args.spec)?;
            let options = args.fetch.options()?;
            let http = Http::new()?;
            let cache = Cache::open(&options.cache)?;
            let now = ferry_bundle::Timestamp::now().unix() as i64;
            let lock = resolve(&spec, &options, &http, &cache, now, &reporter)?;
            let lock_path = Lock::path_for(&args.spec);
            write_file(&lock_path, lock.to_toml().as_bytes(), 0o644)?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&lock)?);
            } else if !cli.quiet {
                print_lock(&lock);
                println!("wrote {}", lock_path.display());
            }
        }
        Command::Build(args) => {
            let spec = Spec::load(&args.spec)?;
            let installer = args
                .output
                .with_installer
                .as_deref()
                .map(|p| InstallerDeb::find(p, &spec.target.arch))
                .transpose()?;
            let key = keyfile::load_secret_key(&args.key, &EnvOrPrompt)?;
            let options = BuildOptions {
                compression: match args.output.compression {
                    CompressionArg::Gzip => Compression::Gzip,
                    CompressionArg::None => Compression::None,
                },
                split: args.output.split.as_deref().map(parse_size).transpose()?,
                created: build_time()?,
                fetch: args.fetch.options()?,
            };
            let out = build(&spec, &key, &args.out, &options, &reporter)?;
            let media = installer
                .map(|i| i.write_media(&args.out, &out, &key, &reporter))
                .transpose()?;
            if args.output.json {
                println!(
                    "{}",
                    serde_json::json!({
                        "name": out.manifest.name,
                        "channel": out.manifest.channel,
                        "sequence": out.manifest.sequence,
                        "created": out.manifest.created,
                        "expires": out.manifest.expires,
                        "files": out.files,
                        "size": out.size,
                        "sha256": out.sha256,
                        "key_id": key.id().to_string(),
                        "installer": media.as_ref().map(|m| serde_json::json!({
                            "deb": m.deb,
                            "sha256sums": m.sums,
                            "signature": m.signature,
                            "readme": m.readme,
                        })),
                    })
                );
            } else if !cli.quiet {
                for f in &out.files {
                    println!("{}", f.display());
                }
                println!(
                    "bundle {} ({} payload files, {} bytes), signed by {}",
                    out.manifest.name,
                    out.manifest.files.len(),
                    out.size,
                    key.id()
                );
                println!("sha256 {}", out.sha256);
                if let Some(lock) = &out.lock {
                    println!("followed {}", lock.display());
                }
                println!("expires {}", out.manifest.expires);
                if let Some(m) = &media {
                    println!(
                        "installer {} with {} and {}; see {}",
                        m.deb.display(),
                        m.sums.display(),
                        m.signature.display(),
                        m.readme.display()
                    );
                }
            }
        }
        Command::Sign(args) => {
            if args.out.exists() && !args.force {
                anyhow::bail!(
                    "{} already exists\nhelp: choose another --out, or pass --force",
                    args.out.display()
                );
            }
            let source = BundleSource::open(&args.bundle)?;
            reporter.step(&format!("checking {}", source.display_path().display()));
            let report = read_bundle(&source, Check::IntegrityOnly, None, &reporter)
                .with_context(|| format!("{} failed its integrity check", args.bundle.display()))?;
            let key = keyfile::load_secret_key(&args.key, &EnvOrPrompt)?;
            let manifest = &report.unverified.manifest;
            let sig = key.sign(
                &report.unverified.manifest_bytes,
                &manifest.trusted_comment(),
                &format!("co-signature from ferry-build secret key {}", key.id()),
            )?;
            keyfile::write_file(&args.out, sig.to_file_string().as_bytes(), 0o644)?;
            if cli.quiet {
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "co-signed {} (sequence {}) with key {}: {}",
                manifest.name,
                manifest.sequence,
                key.id(),
                args.out.display()
            );
            println!(
                "next: pass it to ferry-install with --signature {}",
                args.out.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
