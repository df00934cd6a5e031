//! The `ringmail` command: serve, check-config, user management.

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use ringmail::config::Config;
use std::io::BufRead;
use std::path::PathBuf;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "ringmail", version, about = "Thread-per-core durable SMTP relay and POP3 server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server. Every subcommand without --config uses
    /// /etc/ringmail/ringmail.toml, or the embedded loopback default when
    /// that does not exist.
    Serve {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Validate a config file and run every check `serve` runs before it
    /// binds (certificate, users file, data_dir, run_as), then exit.
    CheckConfig {
        /// The config file to check (same as --config).
        file: Option<PathBuf>,
        #[arg(long, conflicts_with = "file")]
        config: Option<PathBuf>,
    },
    /// Manage users in the config's users file.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// A message's whole history from the spool, by queue id or Message-ID.
    Trace {
        id: String,
        /// Print JSON (see README, "JSON output").
        #[arg(long)]
        json: bool,
        /// The server's log (stderr saved to a file, or `journalctl -u
        /// ringmail` output): its milter decisions about the message are
        /// shown too.
        #[arg(long, value_name = "FILE")]
        log: Option<PathBuf>,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Write a consistent backup of the data dir (online or offline) to one
    /// archive with a manifest and checksums.
    Backup {
        dest: PathBuf,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Restore a backup archive into the config's data_dir, which must be
    /// empty; every file and message is checked against the manifest.
    Restore {
        src: PathBuf,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Write a user's mailbox into a Maildir (new/), e.g. to move to Dovecot.
    ExportMaildir {
        address: String,
        dir: PathBuf,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Import a Maildir (new/ and cur/) into a user's mailbox (the server
    /// must be running).
    ImportMaildir {
        address: String,
        dir: PathBuf,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Import an mbox file into a user's mailbox (the server must be running).
    ImportMbox {
        address: String,
        file: PathBuf,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// The running server at a glance: cores, sessions, queue, spool.
    Status {
        /// Print JSON (see README, "JSON output").
        #[arg(long)]
        json: bool,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// List or delete messages in a local mailbox (on the running server).
    Mailbox {
        #[command(subcommand)]
        command: MailboxCommand,
        #[arg(long, global = true)]
        config: Option<PathBuf>,
    },
    /// Inspect and steer the running server's relay queue.
    Queue {
        #[command(subcommand)]
        command: QueueCommand,
        #[arg(long, global = true)]
        config: Option<PathBuf>,
    },
    /// DKIM signing keys.
    Dkim {
        #[command(subcommand)]
        command: DkimCommand,
        #[arg(long, global = true)]
        config: Option<PathBuf>,
    },
    /// SMTP TLS reports (RFC 8460) of the running server.
    TlsReport {
        #[command(subcommand)]
        command: TlsReportCommand,
        #[arg(long, global = true)]
        config: Option<PathBuf>,
    },
    /// The suppression list of the running server: recipients that
    /// hard-bounced are not sent to until their entry expires.
    Suppression {
        #[command(subcommand)]
        command: SuppressionCommand,
        #[arg(long, global = true)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum TlsReportCommand {
    /// A domain's session counts of a day (today by default), by policy
    /// and failure type.
    Show {
        domain: String,
        #[arg(long)]
        date: Option<String>,
    },
    /// Queue the reports of a day (yesterday by default, UTC) for every
    /// domain that publishes a `_smtp._tls` TXT record with a mailto: rua.
    Send {
        #[arg(long)]
        date: Option<String>,
    },
}

#[derive(Subcommand)]
enum DkimCommand {
    /// Make a key in dkim/DOMAIN.SELECTOR.pem beside the config file (mode
    /// 0600, never overwriting one) and print its DNS TXT record.
    Keygen {
        domain: String,
        selector: String,
        #[arg(long, default_value = "rsa2048", value_parser = ["rsa2048", "ed25519"])]
        algorithm: String,
    },
}

#[derive(Subcommand)]
enum SuppressionCommand {
    /// Every suppressed address: since, until, bounce class, reason.
    List {
        /// Print JSON (see README, "JSON output").
        #[arg(long)]
        json: bool,
    },
    /// Suppress an address (for relay.suppression_expiry).
    Add { address: String },
    /// Lift an address's suppression.
    Delete { address: String },
}

#[derive(Subcommand)]
enum QueueCommand {
    /// Queued messages (one entry per message and destination domain),
    /// oldest first: id, sender, recipients, state, next attempt, last
    /// error. The filters run on the server.
    List {
        /// Only mail for this recipient domain.
        #[arg(long)]
        domain: Option<String>,
        /// Only mail in this state.
        #[arg(long, value_parser = ["active", "deferred", "held"])]
        state: Option<String>,
        /// Only mail that arrived at least this long ago ("30m", "4h", "2d",
        /// as in the config).
        #[arg(long, value_parser = parse_age)]
        older_than: Option<u64>,
        /// At most N messages (the oldest).
        #[arg(long, value_parser = parse_limit)]
        limit: Option<usize>,
        /// Print JSON (see README, "JSON output").
        #[arg(long)]
        json: bool,
    },
    /// Retry every deferred message now.
    Flush,
    /// Remove a message from the queue (no bounce is sent).
    Delete { id: String },
    /// Keep a message from being sent until it is released.
    Hold { id: String },
    /// Let a held message go (it is tried at once).
    Release { id: String },
    /// Per destination site and source address: queued, in flight,
    /// connections, current rate, suspended until, last reply.
    Sites {
        /// Print JSON (see README, "JSON output").
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum MailboxCommand {
    /// One line per message: uid, date, sender, size, subject.
    List {
        address: String,
        #[arg(long, default_value = "date", value_parser = ["date", "sender", "size"])]
        sort: String,
        /// Print JSON (see README, "JSON output").
        #[arg(long)]
        json: bool,
    },
    /// Delete one message (its uid from `mailbox list`) durably.
    Delete { address: String, uid: String },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a user; the password is read from the first line of stdin.
    Add {
        address: String,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Remove a user (what is in their mailbox stays in the spool).
    Delete {
        address: String,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Set a user's password; the new one is read from the first line of stdin.
    Passwd {
        address: String,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Print every user's address, one per line.
    List {
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

fn main() {
    if let Err(e) = run() {
        eprintln!("ringmail: {}", each_cause_once(&e));
        std::process::exit(1);
    }
}

/// The error and its causes, each once: `{:#}` would repeat a cause whose
/// text the message before it already carries (an OS error twice).
fn each_cause_once(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// The config file to use: `--config`, else the default file, else None
/// for the embedded default, which a notice on stderr then names.
fn config_file(given: Option<PathBuf>) -> Option<PathBuf> {
    if given.is_some() {
        return given;
    }
    let found = ringmail::config::default_file();
    if found.is_none() {
        eprintln!(
            "ringmail: no --config and no {}: using the embedded default config (loopback only, data in ./ringmail-data)",
            ringmail::config::default_path().display()
        );
    }
    found
}

/// Load the config a subcommand was pointed at (see [`config_file`]).
fn load(given: Option<PathBuf>) -> anyhow::Result<(Config, Option<PathBuf>)> {
    let path = config_file(given);
    Ok((Config::load(path.as_deref())?, path))
}

fn run() -> anyhow::Result<()> {
    // Everything ringmail creates (spool, users file, backups, keys) is
    // the operator's alone; explicit modes say so too, this catches the rest.
    // SAFETY: umask(2) only sets this process's file creation mask.
    unsafe { libc::umask(0o077) };
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve { .. }) {
        ringmail::startup::quiet_pipe::install();
    }
    match cli.command {
        Command::Serve { config } => {
            ringmail::memory::tune();
            let (cfg, path) = load(config)?;
            init_logging(&cfg.log);
            ringmail::shard::run(cfg, path)?;
            Ok(())
        }
        Command::CheckConfig { file, config } => {
            let (cfg, path) = load(file.or(config))?;
            let name = path.as_deref().map_or("<embedded default>".into(), |p| p.display().to_string());
            let problems = ringmail::startup::preflight::problems(&cfg, path.as_deref());
            if !problems.is_empty() {
                bail!("{name}: serve would not start:\n  {}", problems.join("\n  "));
            }
            let users = ringmail::auth::UserDb::load(cfg.users_path())?;
            // A fresh install without users has nowhere to deliver anything yet.
            let problem =
                if users.is_empty() { None } else { cfg.address_map.postmaster_problem(&|a| users.contains(a)) };
            if let Some(problem) = problem {
                eprintln!(
                    "{name}: warning: {problem}: mail to postmaster@ and abuse@ will be refused; set `postmaster`"
                );
            }
            println!("{name}: OK ({} users in {})", users.len(), cfg.users_path().display());
            Ok(())
        }
        Command::Trace { id, json, log, config } => {
            let (cfg, _) = load(config)?;
            let needle = ringmail::admin::trace::Needle::parse(&id);
            let mut trace = ringmail::admin::trace::trace(&cfg.spool_root(), &needle)?;
            if let Some(log) = log {
                let text = std::fs::read(&log).with_context(|| format!("reading {}", log.display()))?;
                trace.add_log(&String::from_utf8_lossy(&text));
            }
            print!("{}", ringmail::admin::report::emit(&trace, format(json)));
            Ok(())
        }
        Command::Backup { dest, config } => {
            let (cfg, _) = load(config)?;
            backup(&cfg, &dest)
        }
        Command::Restore { src, config } => {
            let (cfg, _) = load(config)?;
            let s = ringmail::admin::backup::restore(&src, &cfg.data_dir, cfg.users_path())?;
            println!(
                "restored {} into {}: {} files, {} messages, {} bytes, every checksum verified",
                src.display(),
                cfg.data_dir.display(),
                s.files,
                s.messages,
                s.bytes
            );
            Ok(())
        }
        Command::ExportMaildir { address, dir, config } => {
            let (cfg, _) = load(config)?;
            let users = ringmail::auth::UserDb::load(cfg.users_path())?;
            if !users.contains(&address.to_ascii_lowercase()) {
                bail!("{address} is not a user in {}", cfg.users_path().display());
            }
            let n = ringmail::admin::maildir::export_maildir(&cfg.spool_root(), &address, &dir, &cfg.hostname)?;
            println!("exported {n} message(s) of {address} to {}", dir.display());
            Ok(())
        }
        Command::ImportMaildir { address, dir, config } => {
            let (cfg, _) = load(config)?;
            let messages = ringmail::admin::maildir::read_maildir(&dir)?;
            import(&cfg, &address, &messages, &dir)
        }
        Command::ImportMbox { address, file, config } => {
            let (cfg, _) = load(config)?;
            let messages = ringmail::admin::maildir::read_mbox(&file)?;
            import(&cfg, &address, &messages, &file)
        }
        Command::Status { json, config } => {
            let (cfg, _) = load(config)?;
            answer(control(&cfg, &request(json, "status"))?)
        }
        Command::Mailbox { command, config } => {
            let (cfg, _) = load(config)?;
            let line = match command {
                MailboxCommand::List { address, sort, json } => {
                    request(json, &format!("mailbox list {address} {sort}"))
                }
                MailboxCommand::Delete { address, uid } => format!("mailbox delete {address} {uid}"),
            };
            answer(control(&cfg, &line)?)
        }
        Command::Queue { command, config } => {
            let (cfg, _) = load(config)?;
            let line = match command {
                QueueCommand::List { domain, state, older_than, limit, json } => {
                    let filter = ringmail::admin::queue_list::ListFilter {
                        domain,
                        state: state.map(|s| s.parse()).transpose()?,
                        older_than_ms: older_than,
                        limit,
                    };
                    request(json, &format!("queue list{}", filter.to_words()))
                }
                QueueCommand::Flush => "queue flush".to_string(),
                QueueCommand::Delete { id } => format!("queue delete {id}"),
                QueueCommand::Hold { id } => format!("queue hold {id}"),
                QueueCommand::Release { id } => format!("queue release {id}"),
                QueueCommand::Sites { json } => request(json, "queue sites"),
            };
            answer(control(&cfg, &line)?)
        }
        Command::Suppression { command, config } => {
            let (cfg, _) = load(config)?;
            let line = match command {
                SuppressionCommand::List { json } => request(json, "suppression list"),
                SuppressionCommand::Add { address } => format!("suppression add {address}"),
                SuppressionCommand::Delete { address } => format!("suppression delete {address}"),
            };
            answer(control(&cfg, &line)?)
        }
        Command::TlsReport { command, config } => {
            let (cfg, _) = load(config)?;
            let date = |d: Option<String>| d.map(|d| format!(" --date {d}")).unwrap_or_default();
            let line = match command {
                TlsReportCommand::Show { domain, date: d } => format!("tls-report show {domain}{}", date(d)),
                TlsReportCommand::Send { date: d } => format!("tls-report send{}", date(d)),
            };
            answer(control(&cfg, &line)?)
        }
        Command::User { command } => user(command),
        Command::Dkim { command: DkimCommand::Keygen { domain, selector, algorithm }, config } => {
            dkim_keygen(config, &domain, &selector, &algorithm)
        }
    }
}

/// `ringmail dkim keygen`: the key file beside the config (the working
/// directory for the embedded default), the zone-file line on stdout.
fn dkim_keygen(config: Option<PathBuf>, domain: &str, selector: &str, algorithm: &str) -> anyhow::Result<()> {
    use ringmail::sender_auth::keys;
    let (cfg, path) = load(config)?;
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    let label_ok = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    if !label_ok(&domain) || !domain.contains('.') || !label_ok(selector) {
        bail!("{domain:?} / {selector:?}: expected a domain name and a selector made of letters, digits, '-' and '.'");
    }
    let base = path.as_deref().map(ringmail::files::parent).unwrap_or(std::path::Path::new("."));
    let file = base.join("dkim").join(format!("{domain}.{selector}.pem"));
    let generated = keys::generate(algorithm.parse().map_err(anyhow::Error::msg)?)?;
    keys::write_new(&file, &generated.pem, Some(&cfg.data_dir))?;
    eprintln!("ringmail: wrote {}; add to the config:", file.display());
    eprintln!("  [[dkim.sign]]\n  domain = \"{domain}\"\n  selector = \"{selector}\"\n  key = \"dkim/{domain}.{selector}.pem\"");
    println!("{}", keys::txt_record(&domain, selector, generated.kind, &generated.public));
    Ok(())
}

/// `ringmail user ...`: edits of the users file, which a running server
/// reloads by itself.
fn user(command: UserCommand) -> anyhow::Result<()> {
    let config = match &command {
        UserCommand::Add { config, .. }
        | UserCommand::Delete { config, .. }
        | UserCommand::Passwd { config, .. }
        | UserCommand::List { config } => config.clone(),
    };
    let (cfg, _) = load(config)?;
    let (path, data_dir) = (cfg.users_path(), cfg.data_dir.as_path());
    match command {
        UserCommand::Add { address, .. } => {
            let password = password_from_stdin("add")?;
            let domain = address.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase()).unwrap_or_default();
            if !cfg.is_local_domain(&domain) {
                eprintln!(
                    "ringmail: warning: {domain:?} is not in local_domains; mail for this user will not be accepted"
                );
            }
            ringmail::auth::add_user(path, data_dir, &address, &password)?;
            println!("added {address} to {}", path.display());
        }
        UserCommand::Delete { address, .. } => {
            ringmail::auth::delete_user(path, data_dir, &address)?;
            println!("deleted {address} from {}", path.display());
        }
        UserCommand::Passwd { address, .. } => {
            let password = password_from_stdin("passwd")?;
            ringmail::auth::set_password(path, data_dir, &address, &password)?;
            println!("changed the password of {address} in {}", path.display());
        }
        UserCommand::List { .. } => {
            for address in ringmail::auth::list_users(path)? {
                println!("{address}");
            }
        }
    }
    Ok(())
}

/// The first line of stdin, without its line end; never empty.
fn password_from_stdin(verb: &str) -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).context("reading the password from stdin")?;
    let password = line.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        bail!("no password on stdin (usage: echo 'secret' | ringmail user {verb} ADDRESS --config FILE)");
    }
    Ok(password.to_string())
}

/// Pin the running server's spool (if it runs) for the time of the copy,
/// then write the archive.
fn backup(cfg: &Config, dest: &std::path::Path) -> anyhow::Result<()> {
    use std::io::{BufRead, Write};
    let path = ringmail::net::control::socket_path(&cfg.data_dir);
    let mut held = None;
    let tails = match std::os::unix::net::UnixStream::connect(&path) {
        Ok(mut s) => {
            s.write_all(b"backup begin\n")?;
            let mut tails = ringmail::admin::backup::Tails::new();
            let mut reader = std::io::BufReader::new(s.try_clone()?);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line)? == 0 {
                    bail!("the server closed the control connection before the spool was pinned");
                }
                let words: Vec<&str> = line.split_whitespace().collect();
                match words.as_slice() {
                    ["ready"] => break,
                    ["tail", dir, seg, off] => {
                        tails.insert(dir.parse()?, (seg.parse()?, off.parse()?));
                    }
                    _ => bail!("server: {}", line.trim()),
                }
            }
            held = Some(s);
            Some(tails)
        }
        Err(_) => {
            eprintln!(
                "ringmail: no server running on {} (no {}): taking an offline backup",
                cfg.data_dir.display(),
                path.display()
            );
            None
        }
    };
    let s = ringmail::admin::backup::backup(&cfg.data_dir, cfg.users_path(), tails.as_ref(), dest)?;
    drop(held); // releases the pin
    println!("backup {}: {} files, {} messages, {} bytes", dest.display(), s.files, s.messages, s.bytes);
    Ok(())
}

fn import(
    cfg: &Config,
    address: &str,
    messages: &[ringmail::admin::maildir::Incoming],
    from: &std::path::Path,
) -> anyhow::Result<()> {
    let socket = ringmail::net::control::socket_path(&cfg.data_dir);
    let ids = ringmail::admin::maildir::import(&socket, address, messages, cfg.max_message_size)?;
    println!("imported {} message(s) from {} into {address}", ids.len(), from.display());
    Ok(())
}

/// Print the server's answer on stdout; a refusal (`error: ...`, the
/// whole answer) goes to stderr instead, with exit status 1.
fn answer(text: String) -> anyhow::Result<()> {
    if let Some(error) = text.strip_prefix("error: ") {
        bail!("{}", error.trim_end());
    }
    if text.is_empty() {
        bail!("the server closed the control connection without an answer");
    }
    print!("{text}");
    Ok(())
}

/// The output format `--json` asks for.
fn format(json: bool) -> ringmail::admin::report::Format {
    if json {
        ringmail::admin::report::Format::Json
    } else {
        ringmail::admin::report::Format::Text
    }
}

/// A control-socket command line, asking for JSON with `--json`.
fn request(json: bool, command: &str) -> String {
    if json {
        format!("json {command}")
    } else {
        command.to_string()
    }
}

/// `--older-than`, in ms (the config's duration syntax).
fn parse_age(text: &str) -> Result<u64, String> {
    ringmail::admin::queue_list::parse_age(text).map_err(|e| e.to_string())
}

/// `--limit`: a positive count.
fn parse_limit(text: &str) -> Result<usize, String> {
    ringmail::admin::queue_list::parse_limit(text).map_err(|e| e.to_string())
}

/// Send one command line to the running server's control socket.
fn control(cfg: &Config, line: &str) -> anyhow::Result<String> {
    use std::io::{Read, Write};
    let path = ringmail::net::control::socket_path(&cfg.data_dir);
    let mut s = std::os::unix::net::UnixStream::connect(&path)
        .with_context(|| format!("cannot reach the running server at {} (is it running?)", path.display()))?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
    s.write_all(format!("{line}\n").as_bytes())?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)?;
    Ok(answer)
}

/// One line per event on stderr: `key=value` fields, or one JSON object
/// per line with `[log] format = "json"`. RINGMAIL_LOG overrides the level.
fn init_logging(log: &ringmail::config::Log) {
    use tracing_subscriber::EnvFilter;
    let level = log.level.as_deref().unwrap_or("info");
    let filter = EnvFilter::try_from_env("RINGMAIL_LOG").unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(ringmail::logging::Writer)
        .with_target(false)
        .with_timer(ringmail::logging::Stamp);
    match log.format {
        ringmail::config::LogFormat::Text if ringmail::logging::under_journald() => {
            // journald stamps each entry itself and reads the priority.
            let format = tracing_subscriber::fmt::format().with_target(false).without_time().with_ansi(false);
            builder
                .with_ansi(false)
                .fmt_fields(ringmail::logging::Logfmt)
                .event_format(ringmail::logging::SyslogPriority(format))
                .init();
        }
        ringmail::config::LogFormat::Text => {
            builder
                .fmt_fields(ringmail::logging::Logfmt)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .init();
        }
        ringmail::config::LogFormat::Json => {
            builder.json().flatten_event(true).with_current_span(false).with_span_list(false).init();
        }
    }
}
