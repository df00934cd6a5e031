//! The control socket (`<data_dir>/control.sock`): one command line in,
//! the answer out, then close. A line starting `json ` asks for the JSON
//! form of a report; an answer starting `error: ` is a refusal, and is the
//! whole answer. Served by core 0; the admin CLI
//! (`ringmail queue ...`, `ringmail suppression ...`) is its client. Local and owner-only (mode 0600),
//! so only the operator can reach it.

use crate::admin::report::{emit, Format};
use crate::metrics::Status;
use crate::shard::admin::{AdminError, QueueOp};
use crate::shard::{Request, Shard};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

/// Where the control socket of a data dir lives.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("control.sock")
}

/// Bind the control socket, replacing a stale one left by a crash.
pub fn bind(data_dir: &Path) -> std::io::Result<UnixListener> {
    let path = socket_path(data_dir);
    if std::os::unix::net::UnixStream::connect(&path).is_ok() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            format!("{} is in use by a running server", path.display()),
        ));
    }
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

pub async fn serve(shard: Rc<Shard>, listener: UnixListener) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                glommio::spawn_local(handle(shard.clone(), stream)).detach();
            }
            Err(e) => {
                tracing::warn!(error = %e, "control socket accept failed");
                glommio::timer::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn handle(shard: Rc<Shard>, mut stream: UnixStream) {
    let mut line = Vec::new();
    let mut buf = [0u8; 512];
    while !line.contains(&b'\n') && line.len() < 4096 {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => line.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&line).into_owned();
    let text = text.lines().next().unwrap_or("").trim();
    if let Some(user) = text.strip_prefix("import ") {
        let first_len = line.iter().position(|&b| b == b'\n').map_or(line.len(), |i| i + 1);
        let rest = line[first_len..].to_vec();
        import(&shard, user.trim(), Conversation { stream, buf: rest, chunk: vec![0; 64 * 1024] }).await;
        return;
    }
    // `json COMMAND ...` asks for the JSON form of a report.
    let (format, text) = match text.strip_prefix("json ") {
        Some(rest) => (Format::Json, rest.trim()),
        None => (Format::Text, text),
    };
    if text == "backup begin" {
        backup(&shard, stream).await;
        return;
    }
    let answer = match command(&shard, text, format).await {
        Ok(answer) => answer,
        // The whole answer is the one error line: the client prints it on
        // stderr and exits non-zero, and nothing partial looks complete.
        Err(e) => format!("error: {e}\n"),
    };
    let _ = stream.write_all(answer.as_bytes()).await;
    let _ = stream.close().await;
}

/// One admin command line (without the `json` prefix): its answer, or
/// why it was refused.
async fn command(shard: &Rc<Shard>, text: &str, format: Format) -> Result<String, AdminError> {
    match text.split_once(' ').map_or(text, |(verb, _)| verb) {
        "queue" => {
            let op = QueueOp::parse(text.trim_start_matches("queue").trim())?;
            tracing::info!(command = %text, "control command");
            shard.queue_admin(op, format).await
        }
        "mailbox" => {
            tracing::info!(command = %text, "control command");
            shard.mailbox_admin(text.trim_start_matches("mailbox"), format).await
        }
        "suppression" => {
            tracing::info!(command = %text, "control command");
            shard.suppression_admin(text.trim_start_matches("suppression"), format).await
        }
        "tls-report" => shard.tls_report_admin(text.trim_start_matches("tls-report")).await,
        "status" => Ok(emit(&Status::from_snapshots(&shard.gather_metrics().await), format)),
        other => Err(AdminError::UnknownCommand(other.to_string())),
    }
}

/// `backup begin`: pin every core's spool, answer where each ends (`tail
/// DIR SEGMENT OFFSET` lines, then `ready`), and hold the pin until the
/// client hangs up.
async fn backup(shard: &Rc<Shard>, mut stream: UnixStream) {
    tracing::info!("backup: spool pinned");
    let mut answer = String::new();
    let mut pinned = Vec::new();
    for core in 0..shard.cores {
        match shard.ask(core, |answer| Request::Pin { answer }).await {
            Ok(end) => {
                pinned.push(core);
                answer.push_str(&format!("tail {} {} {}\n", end.dir, end.segment, end.offset));
            }
            Err(e) => answer.push_str(&format!("error: core {core}: {e}\n")),
        }
    }
    answer.push_str("ready\n");
    // Hold the pin while the client copies; it hangs up when done
    // (or dies: the read ends either way).
    if stream.write_all(answer.as_bytes()).await.is_ok() {
        let mut sink = [0u8; 64];
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
    }
    for core in pinned {
        let _ = shard.ask(core, |answer| Request::Unpin { answer }).await;
    }
    tracing::info!("backup: spool released");
    let _ = stream.close().await;
}

/// A control connection with bytes read ahead.
struct Conversation {
    stream: UnixStream,
    buf: Vec<u8>,
    /// Read buffer, allocated once.
    chunk: Vec<u8>,
}

impl Conversation {
    /// Read until `buf` holds at least `n` bytes; false at EOF first.
    async fn fill_to(&mut self, n: usize) -> bool {
        while self.buf.len() < n {
            match self.stream.read(&mut self.chunk).await {
                Ok(0) | Err(_) => return false,
                Ok(k) => self.buf.extend_from_slice(&self.chunk[..k]),
            }
        }
        true
    }

    /// The next line (without its LF), at most 1 KiB; None at EOF.
    async fn line(&mut self) -> Option<String> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                return Some(String::from_utf8_lossy(&line).trim().to_string());
            }
            if self.buf.len() > 1024 || !self.fill_to(self.buf.len() + 1).await {
                return None;
            }
        }
    }

    async fn say(&mut self, text: &str) -> bool {
        self.stream.write_all(text.as_bytes()).await.is_ok()
    }
}

/// `import USER`, answered `ready` (or `error: ...`), then
/// `message LEN RECEIVED_MS` + LEN bytes (CRLF line
/// ends) per message, each answered `stored QUEUE_ID` once durable, until
/// `end`. A LEN over `max_message_size` is answered `error: ...` before its
/// body is read, and ends the import. See `admin::maildir::import`.
async fn import(shard: &Rc<Shard>, user: &str, mut conv: Conversation) {
    let user = user.to_ascii_lowercase();
    if !shard.users().contains(&user) {
        conv.say(&format!("error: {user} is not a user\n")).await;
        return;
    }
    // The client sends nothing before this, so a refusal above is read,
    // not lost to a broken pipe.
    if !conv.say("ready\n").await {
        return;
    }
    // The same limit as SMTP: an import is no way around max_message_size.
    // (A record must also fit a segment with its envelope; config
    // validation keeps 64 KiB of room for that above max_message_size.)
    let max = usize::try_from(shard.config().max_message_size).unwrap_or(usize::MAX);
    let mut count = 0usize;
    while let Some(line) = conv.line().await {
        let words: Vec<&str> = line.split_whitespace().collect();
        let (len, received_ms) = match words.as_slice() {
            ["end"] => break,
            ["message", len, ms] => match (len.parse::<usize>(), ms.parse::<u64>()) {
                (Ok(len), Ok(ms)) if len <= max => (len, ms),
                (Ok(len), Ok(_)) => {
                    conv.say(&format!("error: message of {len} bytes is larger than max_message_size ({max})\n")).await;
                    return;
                }
                _ => {
                    conv.say(&format!("error: bad message line {line:?}\n")).await;
                    return;
                }
            },
            _ => {
                conv.say(&format!("error: unexpected {line:?}\n")).await;
                return;
            }
        };
        if !conv.fill_to(len).await {
            return; // the client went away mid-message: nothing stored
        }
        let body: Vec<u8> = conv.buf.drain(..len).collect();
        let answer = match shard.import_message(&user, &body, received_ms).await {
            Ok(id) => {
                count += 1;
                format!("stored {id}\n")
            }
            Err(e) => format!("error: {e}\n"),
        };
        if !conv.say(&answer).await || answer.starts_with("error") {
            return;
        }
    }
    tracing::info!(user = %user, messages = count, "import finished");
    let _ = conv.stream.close().await;
}
