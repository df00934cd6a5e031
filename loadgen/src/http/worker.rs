//! One core's part of an `http` run: its workers, each keeping one
//! connection busy with one request at a time (send, read the whole
//! reply, count), reconnecting after a failure or a `Connection: close`.

use super::{CoreStats, Plan, CONNECT, METRICS, REQUEST};
use crate::live::Live;
use crate::net::stream::{self, ReadBuf, Stream};
use crate::proto::http;
use crate::stats::{LatencySet, Tally, Timeline};
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

const READ_BUF: usize = 16 * 1024;
const BACKOFF: Duration = Duration::from_millis(50);

struct Core {
    plan: Arc<Plan>,
    live: Arc<Live>,
    idx: usize,
    stats: RefCell<CoreStats>,
}

/// Runs the workers of core `idx` (worker w runs on core w % cores).
pub async fn run_core(plan: Arc<Plan>, live: Arc<Live>, idx: usize, cores: usize) -> CoreStats {
    let stats = CoreStats {
        lat: LatencySet::new(METRICS),
        requests: 0,
        accepted: 0,
        rejected: 0,
        failed: 0,
        recipients: 0,
        messages: 0,
        connections: 0,
        statuses: Tally::default(),
        errors: Tally::default(),
        timeline: Timeline::default(),
        start: Instant::now(),
        last_done: None,
    };
    let core = Rc::new(Core { plan: plan.clone(), live, idx, stats: RefCell::new(stats) });
    let tasks: Vec<_> =
        (idx..plan.connections).step_by(cores).map(|w| glommio::spawn_local(worker(core.clone(), w as u64))).collect();
    for t in tasks {
        t.await;
    }
    let stats = core.stats.borrow().clone();
    stats
}

/// Why a connection was given up.
enum Failure {
    Connect(std::io::Error),
    Io(std::io::Error),
    Protocol(String),
}

impl Failure {
    fn kind(&self) -> String {
        match self {
            Failure::Connect(e) => format!("connect: {}", e.kind()),
            Failure::Io(e) => format!("io: {}", e.kind()),
            Failure::Protocol(p) => format!("protocol: {p}"),
        }
    }
}

async fn worker(core: Rc<Core>, w: u64) {
    let plan = core.plan.clone();
    let quota = plan.quota.as_ref().map(|q| q[w as usize]);
    if quota == Some(0) {
        core.live.worker_had_no_work();
        return;
    }
    let mut conn: Option<(Stream, ReadBuf)> = None;
    let mut first = true;
    let mut seq = 0u64;
    loop {
        let done = quota.is_some_and(|q| seq >= q) || plan.deadline.is_some_and(|d| Instant::now() >= d);
        if done || core.live.stopping() {
            break;
        }
        if conn.is_none() {
            let t = Instant::now();
            match stream::connect(plan.target.addr, plan.timeout).await {
                Ok(s) => {
                    core.stats.borrow_mut().lat.record(CONNECT, t.elapsed());
                    core.stats.borrow_mut().connections += 1;
                    core.live.setup_succeeded();
                    first = false;
                    conn = Some((Stream::Plain(s), ReadBuf::new(READ_BUF)));
                }
                Err(e) => {
                    let f = Failure::Connect(e);
                    if first {
                        core.live.first_attempt_failed(f.kind());
                        first = false;
                    }
                    core.stats.borrow_mut().errors.bump(&f.kind());
                    glommio::timer::sleep(BACKOFF).await;
                    continue;
                }
            }
        }
        let Some((s, rbuf)) = conn.as_mut() else { continue };
        let body = plan.request_body(w, seq);
        let request = http::post_json(&plan.path, &plan.target.host, &plan.token, &body);
        seq += 1;
        let t = Instant::now();
        match exchange(s, rbuf, &request).await {
            Ok(response) => {
                let close = response.close;
                record(&core, &response, t);
                if close {
                    conn = None;
                }
            }
            Err(f) => {
                let mut st = core.stats.borrow_mut();
                st.requests += 1;
                st.failed += 1;
                st.errors.bump(&f.kind());
                core.live.slots[core.idx].errors.fetch_add(1, Relaxed);
                conn = None;
            }
        }
    }
}

async fn exchange(s: &mut Stream, rbuf: &mut ReadBuf, request: &[u8]) -> Result<http::Response, Failure> {
    s.send(request).await.map_err(Failure::Io)?;
    loop {
        match http::parse_response(rbuf.data()) {
            Ok(Some((r, used))) => {
                rbuf.consume(used);
                return Ok(r);
            }
            Ok(None) => {}
            Err(e) => return Err(Failure::Protocol(e.to_string())),
        }
        match rbuf.fill(s).await {
            Ok(0) => return Err(Failure::Io(std::io::ErrorKind::UnexpectedEof.into())),
            Ok(_) => {}
            Err(e) => return Err(Failure::Io(e)),
        }
    }
}

fn record(core: &Core, r: &http::Response, started: Instant) {
    let now = Instant::now();
    let plan = &core.plan;
    let mut st = core.stats.borrow_mut();
    st.requests += 1;
    st.lat.record(REQUEST, now - started);
    st.statuses.bump(&r.status.to_string());
    let slot = &core.live.slots[core.idx];
    if r.status == 200 {
        st.accepted += 1;
        let rcpts = http::success_count(&r.body);
        let messages = if plan.personal { rcpts } else { u64::from(rcpts > 0) };
        st.recipients += rcpts;
        st.messages += messages;
        let since = now.saturating_duration_since(st.start);
        st.timeline.add(since, messages);
        slot.done.fetch_add(1, Relaxed);
        slot.bytes.fetch_add(messages * plan.message_bytes, Relaxed);
    } else {
        st.rejected += 1;
        slot.errors.fetch_add(1, Relaxed);
    }
    st.last_done = Some(now);
}
