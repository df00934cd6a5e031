//! Start-up: check the platform, the files and the ports, recover the
//! spool, hand every live record to its owning core, start one pinned
//! executor per core and bind the listeners on each (SO_REUSEPORT spreads
//! connections), then drop root (`run_as`) before any client is served.
//! The spool behind the cores is recovered on a thread of its own (see
//! `recovery`); reloads and stop signals are handled by the control
//! threads (see `control`).

use super::control::{file_stamp, load_shaping, spawn_signal_handler, spawn_users_watcher, Feeds, Reload};
use super::recovery::{log_spool_damage, spawn_recovery, Adoption, RecoverBehind, Recovery};
use super::{Mesh, Shard, ShardMsg};
use crate::auth::{UserDb, UsersError};
use crate::config::Config;
use crate::http::Tokens;
use crate::mailbox::MailboxIndex;
use crate::net::{self, Protocol};
use crate::outbound::sites::Sites;
use crate::queue::QueueShard;
use crate::sender_auth::{Signers, Verifier};
use crate::spool::{self, DirStore, Ledger, QueueIdGen, SegmentMaps, Spool, SpoolConfig};
use glommio::channels::channel_mesh::MeshBuilder;
use glommio::{LocalExecutorBuilder, Placement};
use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

/// Why the server could not start. Each names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error("io_uring is not available ({0}); ringmail needs Linux 5.8+ with io_uring allowed (a container's seccomp profile or kernel.io_uring_disabled can block it)")]
    NoIoUring(std::io::Error),
    #[error(transparent)]
    Port(#[from] crate::startup::ports::PortError),
    #[error("cannot start:\n  {}", problems.join("\n  "))]
    Preflight { problems: Vec<String> },
    #[error(transparent)]
    RunAs(#[from] crate::startup::run_as::RunAsError),
    #[error("{path}: {error}")]
    DataDir { path: PathBuf, error: std::io::Error },
    #[error(transparent)]
    Users(#[from] UsersError),
    #[error(transparent)]
    Tokens(#[from] crate::http::TokensError),
    #[error(transparent)]
    Tls(#[from] crate::net::tls::TlsError),
    #[error(transparent)]
    DkimKey(#[from] crate::sender_auth::keys::KeyError),
    #[error("cannot start the sender authentication thread: {0}")]
    Verifier(std::io::Error),
    #[error(transparent)]
    Greylist(crate::screen::greylist::StoreError),
    /// Not `#[from]`: the message carries the cause, which must not be
    /// printed a second time as its source.
    #[error("spool recovery failed: {0}")]
    Recovery(spool::SpoolError),
    #[error("core {core}: {reason}")]
    Core { core: usize, reason: String },
}

/// Everything one core starts with: where its writer resumes (phase 1 of
/// recovery), and where the rest of its spool will come from.
struct CoreInit {
    /// Where appends to this core's own dir resume.
    tail: Option<spool::Tail>,
    last_queue_id: Option<spool::QueueId>,
    /// This core's part of the spool, recovered behind it.
    adoption: crossbeam_channel::Receiver<Adoption>,
}

/// The receiving ends, moved into one core.
struct Updates {
    users: crossbeam_channel::Receiver<Arc<UserDb>>,
    tls: crossbeam_channel::Receiver<Arc<rustls::ServerConfig>>,
    config: crossbeam_channel::Receiver<Arc<Config>>,
    dkim: crossbeam_channel::Receiver<Arc<Signers>>,
    tokens: crossbeam_channel::Receiver<Arc<Tokens>>,
}

/// Shared by the signal thread and every core for a graceful stop.
#[derive(Clone, Default)]
pub(super) struct Lifecycle {
    /// Raised by SIGTERM/SIGINT.
    pub(super) stopping: Arc<AtomicBool>,
    /// Cores that have drained their sessions; each waits for all before
    /// exiting, so no core's peer vanishes under a finishing session.
    drained: Arc<AtomicUsize>,
    /// Raised once privileges are dropped: until then cores have bound
    /// their listeners but accept nothing and start no work.
    serving: Arc<AtomicBool>,
}

/// Run the server until SIGTERM/SIGINT drains it (then returns Ok) or a
/// start-up error. `config_path` is re-read on SIGHUP (None: the embedded
/// default, which never changes).
pub fn run(config: Config, config_path: Option<PathBuf>) -> Result<(), BootError> {
    probe_io_uring().map_err(BootError::NoIoUring)?;
    let cpus = crate::startup::cpus::allowed();
    let cores = if config.cores == 0 { cpus.len().max(1) } else { config.cores };
    let run_as = crate::startup::run_as::resolve(config.run_as.as_deref())?;
    if config.run_as.is_none() && crate::startup::run_as::euid() == 0 {
        tracing::warn!("running as root without run_as: ringmail keeps every privilege while serving; set run_as = \"ringmail\" (see README, Security)");
    }
    let problems = crate::startup::preflight::problems(&config, config_path.as_deref());
    if !problems.is_empty() {
        return Err(BootError::Preflight { problems });
    }
    let listeners = net::listeners(&config);
    let dns_server = match crate::outbound::dns::server_from_config(config.relay.dns_server.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            // Only MX lookups need it; routes may cover every domain.
            tracing::warn!(error = %e, "no DNS server known; MX lookups will fail until one is configured (relay.dns_server)");
            SocketAddr::from(([127, 0, 0, 1], 53))
        }
    };
    for &(proto, addr) in &listeners {
        crate::startup::ports::check_free(proto.name(), addr)?;
    }
    if let Some(addr) = config.listen.metrics {
        crate::startup::ports::check_free("metrics", addr)?;
    }
    if let Some(addr) = config.listen.http {
        crate::startup::ports::check_free("http", addr)?;
    }
    if let Some(id) = &run_as {
        // Root's locked-memory exemption goes with the drop: the rings are
        // made before it, but whatever is locked after it counts against
        // the limit.
        let rings = cores as u64 * 3 * config.runtime.io_memory as u64;
        match crate::startup::run_as::raise_memlock(rings) {
            Ok(limit) if limit >= rings => {}
            Ok(limit) => tracing::warn!(limit, wanted = rings, "RLIMIT_MEMLOCK cannot be raised (no CAP_SYS_RESOURCE); the rings are locked as root, but after the drop nothing more can be (see tuning/README.md, LimitMEMLOCK)"),
            Err(error) => tracing::warn!(%error, "cannot raise RLIMIT_MEMLOCK"),
        }
        // Files made from here on belong to the user (threads inherit it).
        crate::startup::run_as::assume_files(id).map_err(|error| crate::startup::run_as::RunAsError::Drop {
            name: id.name.clone(),
            step: "setfsuid",
            error,
        })?;
    }
    let root = config.spool_root();
    crate::files::create_private_dir_all(&root).map_err(|error| BootError::DataDir { path: root.clone(), error })?;
    warn_if_readable_by_others(&config.data_dir);
    // Stamp before loading, so a change made while we start is not missed.
    let users_stamp = file_stamp(config.users_path());
    let users = Arc::new(UserDb::load(config.users_path())?);
    tracing::info!(users = users.len(), file = %config.users_path().display(), "users loaded");
    // A fresh install without users has nowhere to deliver anything yet.
    let problem = if users.is_empty() { None } else { config.address_map.postmaster_problem(&|a| users.contains(a)) };
    if let Some(problem) = problem {
        tracing::warn!(problem = %problem, "mail to postmaster@ and abuse@ will be refused; set `postmaster` to a user or an alias");
    }

    let tokens = Arc::new(Tokens::load(config.http_tokens_path())?);
    if config.listen.http.is_some() {
        tracing::info!(tokens = tokens.len(), file = %config.http_tokens_path().display(), "HTTP API tokens loaded");
    }
    let tls_files = crate::net::tls::TlsFiles::resolve(&config)?;
    let tls = tls_files.load()?;
    let signers = Arc::new(Signers::load(&config.dkim)?);
    if !signers.is_empty() {
        tracing::info!(keys = config.dkim.sign.len(), "DKIM signing keys loaded");
    }
    let verifier = Verifier::start(dns_server).map_err(BootError::Verifier)?;
    // Checked by the preflight; read once here for every core.
    let roots = crate::outbound::tls::load_roots(config.relay.ca_file.as_deref())
        .map_err(|e| BootError::Preflight { problems: vec![e.to_string()] })?;
    let roots = Arc::new(roots);
    // Decided once for the process; the probe runs on a thread of its own.
    let dane = crate::outbound::dane_mode::DaneSwitch::start(config.relay.dane, &config.relay.dnssec_probe, dns_server);
    let screening = Arc::new(crate::screen::Shared::open(&config).map_err(BootError::Greylist)?);
    let sites = Arc::new(Sites::new(load_shaping(&config).map_err(|e| BootError::Preflight { problems: vec![e] })?));
    // Phase 1: only where each core's appends resume; the rest of the
    // spool is recovered behind the serving cores (see `spool::phased`).
    let started = std::time::Instant::now();
    let opened = spool::phased::open_tails(&root, 0..cores as u16).map_err(BootError::Recovery)?;
    log_spool_damage(&opened.torn, &opened.damaged);
    tracing::info!(
        cores,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "spool tails open; recovering the rest behind"
    );
    let recovery = Arc::new(super::recovery::Shared::default());
    let (adoptions, inits): (Vec<_>, Vec<_>) = (0..cores as u16)
        .map(|dir| {
            let (tx, rx) = crossbeam_channel::bounded(1);
            let tail = opened.tails.get(&dir).copied().flatten();
            (tx, CoreInit { tail, last_queue_id: opened.last_queue_ids.get(&dir).copied(), adoption: rx })
        })
        .unzip();

    let config = Arc::new(config);
    let mut feeds =
        Feeds { users: Vec::new(), tls: Vec::new(), config: Vec::new(), dkim: Vec::new(), tokens: Vec::new() };
    let lifecycle = Lifecycle::default();
    let recovery_failed = spawn_recovery(RecoverBehind {
        root: root.clone(),
        boundaries: opened.tails,
        reported: opened.damaged,
        relay: config.relay.clone(),
        shared: recovery.clone(),
        adoptions,
        stopping: lifecycle.stopping.clone(),
    });
    let limits = Arc::new(super::limits::Limits::default());
    let balancer = Arc::new(crate::net::balance::Balancer::new(cores));
    let loads = Arc::new(crate::outbound::lend::CoreLoads::new(cores));
    let mesh = MeshBuilder::full(cores, 1024);
    let (ready_tx, ready_rx) = mpsc::channel::<Result<usize, String>>();
    let mut handles = Vec::new();
    for (core, init) in inits.into_iter().enumerate() {
        let (utx, users_rx) = crossbeam_channel::unbounded();
        feeds.users.push(utx);
        let (ttx, tls_rx) = crossbeam_channel::unbounded();
        feeds.tls.push(ttx);
        let (ctx, config_rx) = crossbeam_channel::unbounded();
        feeds.config.push(ctx);
        let (dtx, dkim_rx) = crossbeam_channel::unbounded();
        feeds.dkim.push(dtx);
        let (ktx, tokens_rx) = crossbeam_channel::unbounded();
        feeds.tokens.push(ktx);
        let updates = Updates { users: users_rx, tls: tls_rx, config: config_rx, dkim: dkim_rx, tokens: tokens_rx };
        let (signers, verifier, sites, recovery) = (signers.clone(), verifier.clone(), sites.clone(), recovery.clone());
        let loads = loads.clone();
        let roots = roots.clone();
        let dane = dane.clone();
        let screening = screening.clone();
        let (config, users, tls, mesh, ready, listeners, lifecycle) = (
            config.clone(),
            users.clone(),
            tls.clone(),
            mesh.clone(),
            ready_tx.clone(),
            listeners.clone(),
            lifecycle.clone(),
        );
        let limits = limits.clone();
        let balancer = balancer.clone();
        let tokens = tokens.clone();
        let placement = match cpus.get(core % cpus.len().max(1)) {
            Some(&cpu) if config.cores == 0 || cores <= cpus.len() => Placement::Fixed(cpu),
            _ => Placement::Unbound,
        };
        let handle = LocalExecutorBuilder::new(placement)
            .name(&format!("ringmail-core-{core}"))
            .io_memory(config.runtime.io_memory)
            .spawn(move || async move {
                crate::logging::buffer_this_thread();
                glommio::spawn_local(crate::logging::flusher()).detach();
                let start = CoreStart {
                    core,
                    cores,
                    config,
                    users,
                    tls,
                    updates,
                    init,
                    listeners,
                    dns_server,
                    dane,
                    lifecycle,
                    limits,
                    balancer,
                    signers,
                    verifier,
                    sites,
                    loads,
                    recovery,
                    roots,
                    screening,
                    tokens,
                };
                if let Err(reason) = core_main(start, mesh, ready.clone()).await {
                    let _ = ready.send(Err(format!("core {core}: {reason}")));
                }
            })
            .map_err(|e| BootError::Core { core, reason: e.to_string() })?;
        handles.push(handle);
    }
    drop(ready_tx);
    for _ in 0..cores {
        match ready_rx.recv() {
            Ok(Ok(_)) => {}
            Ok(Err(reason)) => return Err(BootError::Core { core: 0, reason }),
            Err(_) => return Err(BootError::Core { core: 0, reason: "executor exited during start-up".into() }),
        }
    }
    if let Some(id) = &run_as {
        crate::startup::run_as::drop_to(id)?;
        tracing::info!(user = %id.name, uid = id.uid, gid = id.gid, "dropped root: every thread runs as run_as, without capabilities");
    }
    lifecycle.serving.store(true, Ordering::Release);
    let mut addrs: Vec<String> = listeners.iter().map(|(p, a)| format!("{}={a}", p.name())).collect();
    addrs.extend(config.listen.metrics.map(|a| format!("metrics={a}")));
    addrs.extend(config.listen.http.map(|a| format!("http={a}")));
    tracing::info!(cores, listen = %addrs.join(" "), "ringmail ready");
    spawn_users_watcher(config.users_path().to_path_buf(), users_stamp, feeds.users.clone());
    spawn_signal_handler(Reload { config: config.clone(), path: config_path, tls: tls_files, sites }, feeds, lifecycle);
    // After the signal handler: a SIGHUP that systemd sends once it reads
    // READY would otherwise end the process.
    crate::startup::notify::ready();
    for h in handles {
        let _ = h.join();
    }
    if let Some(e) = recovery_failed.lock().ok().and_then(|mut f| f.take()) {
        return Err(BootError::Recovery(e));
    }
    tracing::info!("ringmail stopped");
    Ok(())
}

/// One warning when the data dir (mail, password hashes) is open to the
/// group or everyone: ringmail makes it 0700, but an operator's mkdir or a
/// package may not have.
fn warn_if_readable_by_others(data_dir: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = std::fs::metadata(data_dir) {
        let mode = m.permissions().mode() & 0o7777;
        if crate::files::readable_by_others(mode) {
            tracing::warn!(
                dir = %data_dir.display(),
                mode = %format!("{mode:04o}"),
                "data_dir is readable by group or others (it holds mail and password hashes): chmod 700 it"
            );
        }
    }
}

/// Everything one executor starts from.
struct CoreStart {
    core: usize,
    cores: usize,
    config: Arc<Config>,
    users: Arc<UserDb>,
    tls: Arc<rustls::ServerConfig>,
    updates: Updates,
    init: CoreInit,
    listeners: Vec<(Protocol, SocketAddr)>,
    dns_server: SocketAddr,
    /// DANE on or off, shared by every core.
    dane: Arc<crate::outbound::dane_mode::DaneSwitch>,
    lifecycle: Lifecycle,
    /// The server-wide abuse limits, one table for every core.
    limits: Arc<super::limits::Limits>,
    /// Sessions open per core, to place new ones.
    balancer: Arc<crate::net::balance::Balancer>,
    /// DKIM keys (replaced on SIGHUP) and the inbound checks' thread.
    signers: Arc<Signers>,
    verifier: Verifier,
    /// The server-wide site table and shaping rules (replaced on SIGHUP).
    sites: Arc<Sites>,
    /// How busy each core is, for lending (`outbound::lend`).
    loads: Arc<crate::outbound::lend::CoreLoads>,
    /// Recovery progress, shared by every core.
    recovery: Arc<super::recovery::Shared>,
    /// The roots certificate checks trust (`relay.ca_file` or webpki).
    roots: Arc<rustls::RootCertStore>,
    /// Client screening's shared state (greylist, disabled DNS lists).
    screening: Arc<crate::screen::Shared>,
    /// The HTTP API tokens (replaced on SIGHUP).
    tokens: Arc<Tokens>,
}

/// Why one core could not start (sent to the main thread as text).
#[derive(Debug, thiserror::Error)]
enum CoreError {
    #[error("joining the core mesh failed")]
    Mesh,
    #[error(transparent)]
    Spool(#[from] spool::SpoolError),
    #[error("control socket: {0}")]
    Control(std::io::Error),
    #[error("bind {addr}: {error}")]
    Bind { addr: SocketAddr, error: String },
}

async fn core_main(
    start: CoreStart,
    mesh: MeshBuilder<ShardMsg, glommio::channels::channel_mesh::Full>,
    ready: mpsc::Sender<Result<usize, String>>,
) -> Result<(), CoreError> {
    let CoreStart {
        core,
        cores,
        config,
        users,
        tls,
        updates,
        init,
        listeners,
        dns_server,
        dane,
        lifecycle,
        limits,
        balancer,
        signers,
        verifier,
        sites,
        loads,
        recovery,
        roots,
        screening,
        tokens,
    } = start;
    let (senders, mut receivers) = mesh.join().await.map_err(|_| CoreError::Mesh)?;
    let dir = core as u16;
    let store = DirStore::open(&config.spool_root(), dir)?;
    let segment_size = config.spool.segment_size as u32; // validated < 4 GiB
    let spool = Spool::new(store, dir, SpoolConfig { segment_size }, init.tail)?;
    let write_segment = spool.write_position().segment;
    let shard = Rc::new(Shard {
        id: core,
        cores,
        config: RefCell::new(Arc::new(Config::clone(&config))),
        config_updates: updates.config,
        users: RefCell::new(users),
        users_updates: updates.users,
        auth_cache: Default::default(),
        spool,
        write_segment: Cell::new(write_segment),
        maps: RefCell::new(SegmentMaps::new(config.spool_root())),
        ledger: RefCell::new(Ledger::behind()),
        queue_ids: RefCell::new(QueueIdGen::new(core as u16, init.last_queue_id)),
        mailboxes: RefCell::new(MailboxIndex::default()),
        queue: RefCell::new(QueueShard::new(config.relay.active_limit)),
        mesh: Mesh::new(core, senders),
        next_session: Cell::new(0),
        outbound: crate::outbound::Outbound::new(
            dns_server,
            roots,
            dane,
            &config.data_dir,
            signers,
            updates.dkim,
            crate::outbound::ServerWide { sites, loads },
        ),
        verifier,
        screening,
        tls: RefCell::new(tls),
        tls_updates: updates.tls,
        limits,
        balancer,
        metrics: crate::metrics::CoreMetrics::default(),
        stop: super::Stop::default(),
        background: Cell::new(0),
        over_quota: RefCell::new(Default::default()),
        suppressions: RefCell::new(Default::default()),
        recovery: Recovery::pending(recovery),
        backup_pins: Cell::new(0),
        forward: RefCell::new(Default::default()),
        finalizing: RefCell::new(Default::default()),
        spool_full: Cell::new(false),
        spool_measure: Cell::new(Default::default()),
        held_reclaim: RefCell::new(Vec::new()),
        checkpoints: Default::default(),
        settling: RefCell::new(vec![Vec::new(); cores]),
    });
    for (_, rx) in receivers.streams() {
        let shard = shard.clone();
        glommio::spawn_local(async move {
            while let Some(msg) = rx.recv().await {
                shard.handle(msg);
            }
        })
        .detach();
    }
    // Bind everything while still privileged (ports below 1024); serve
    // nothing and start no work until the main thread has dropped root.
    let control = match core {
        0 => Some(net::control::bind(&config.data_dir).map_err(CoreError::Control)?),
        _ => None,
    };
    let bind = |addr: SocketAddr| {
        glommio::net::TcpListener::bind(addr).map_err(|e| CoreError::Bind { addr, error: e.to_string() })
    };
    let mut bound = Vec::new();
    for (proto, addr) in listeners {
        bound.push((proto, bind(addr)?));
    }
    let metrics = match config.listen.metrics {
        Some(addr) => Some(bind(addr)?),
        None => None,
    };
    let http = match config.listen.http {
        Some(addr) => Some(bind(addr)?),
        None => None,
    };
    let http_state = Rc::new(crate::http::HttpState::new(tokens, updates.tokens));
    let _ = ready.send(Ok(core));
    while !lifecycle.serving.load(Ordering::Acquire) {
        glommio::timer::sleep(Duration::from_millis(2)).await;
    }
    let dead = shard.ledger.borrow_mut().set_write_segment(spool::SegmentKey { dir, seq: write_segment });
    shard.reclaim(dead).await;
    shard.tls_load().await;
    // The relay, sweepers and compaction start once the recovered part is
    // adopted (see `recovery`).
    glommio::spawn_local(shard.clone().adopt(init.adoption)).detach();
    shard.check_spool_room();
    glommio::spawn_local(shard.clone().spool_watch()).detach();
    glommio::spawn_local(shard.clone().sample_history()).detach();
    if let Some(control) = control {
        glommio::spawn_local(net::control::serve(shard.clone(), control)).detach();
    }
    for (proto, listener) in bound {
        glommio::spawn_local(net::accept_loop(shard.clone(), listener, proto)).detach();
    }
    for (listener, kind) in [(metrics, crate::http::Listener::Metrics), (http, crate::http::Listener::Api)] {
        if let Some(listener) = listener {
            glommio::spawn_local(crate::http::accept_loop(shard.clone(), listener, kind, http_state.clone())).detach();
        }
    }
    // Sessions and mesh loops run as tasks until the stop.
    watch_for_stop(&shard, &lifecycle.stopping).await;
    drain(&shard, &lifecycle).await;
    Ok(())
}

/// Raise this core's stop latch when the signal thread raises the flag.
async fn watch_for_stop(shard: &Shard, stopping: &AtomicBool) {
    while !stopping.load(Ordering::Acquire) {
        glommio::timer::sleep(Duration::from_millis(50)).await;
    }
    shard.stop.trigger();
}

/// After the stop: accept loops have ended and idle sessions said goodbye;
/// wait (up to `runtime.drain_timeout`) for sessions inside DATA or a
/// commit and for relay connections finishing a message, sync the spool,
/// then wait for the other cores so none exits under a peer's request.
async fn drain(shard: &Rc<Shard>, lifecycle: &Lifecycle) {
    let timeout = shard.config().runtime.drain_timeout.get();
    let deadline = std::time::Instant::now() + timeout;
    let busy =
        || shard.metrics.sessions_open() as usize + shard.queue.borrow().open_connections() + shard.background.get();
    while busy() > 0 && std::time::Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(20)).await;
    }
    let left = busy();
    if left > 0 {
        tracing::warn!(
            core = shard.id,
            sessions = left,
            "drain timeout: cutting sessions still open (their mail was not acknowledged)"
        );
    }
    if let Err(e) = shard.spool.flush().await {
        tracing::error!(core = shard.id, error = %e, "final spool sync failed");
    }
    // So that the next start reads little more than this checkpoint.
    shard.checkpoint(super::checkpoints::IfTaking::Wait).await;
    shard.tls_flush().await;
    lifecycle.drained.fetch_add(1, Ordering::AcqRel);
    let grace = std::time::Instant::now() + Duration::from_secs(5);
    while lifecycle.drained.load(Ordering::Acquire) < shard.cores && std::time::Instant::now() < grace {
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
    if shard.id == 0 {
        let _ = std::fs::remove_file(net::control::socket_path(&shard.config().data_dir));
    }
    tracing::info!(core = shard.id, "core stopped");
}

/// glommio has no epoll fallback and, when io_uring is blocked, panics
/// with a misleading "kernel too old"; ask the kernel directly first.
fn probe_io_uring() -> Result<(), std::io::Error> {
    // struct io_uring_params is 120 bytes; zeroed is a valid request.
    let mut params = [0u8; 120];
    // SAFETY: io_uring_setup reads/writes `params` only; we close the fd.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 2u32, params.as_mut_ptr()) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    unsafe { libc::close(fd as i32) };
    Ok(())
}
