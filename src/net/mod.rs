//! glommio drivers: accept connections and run the sans-I/O protocol state
//! machines over them. Drivers are boring loops — read, feed, perform the
//! actions the machine asks for, write — and hold no protocol logic.

mod conn;
pub mod control;
mod pop3_driver;
mod smtp_driver;

use crate::config::Config;
use crate::shard::Shard;
use glommio::net::TcpListener;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

/// What a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Smtp,
    Pop3,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Smtp => "smtp",
            Protocol::Pop3 => "pop3",
        }
    }
}

/// The listeners this build serves, from `[listen]`.
pub fn listeners(config: &Config) -> Vec<(Protocol, SocketAddr)> {
    let mut v = Vec::new();
    if let Some(a) = config.listen.smtp {
        v.push((Protocol::Smtp, a));
    }
    if let Some(a) = config.listen.pop3 {
        v.push((Protocol::Pop3, a));
    }
    v
}

/// Accept connections forever, one task per session on this core.
pub async fn accept_loop(shard: Rc<Shard>, listener: TcpListener, proto: Protocol) {
    let smtp = Rc::new(smtp_driver::server_config(&shard.config));
    let pop3 = Rc::new(pop3_driver::server_config(&shard.config));
    loop {
        match listener.accept().await {
            Ok(stream) => {
                let peer = match stream.peer_addr() {
                    Ok(p) => p,
                    Err(_) => continue, // already gone
                };
                let _ = stream.set_nodelay(true);
                let conn = conn::Conn::new(stream, peer);
                let shard = shard.clone();
                match proto {
                    Protocol::Smtp => {
                        glommio::spawn_local(smtp_driver::run(shard, conn, smtp.clone())).detach();
                    }
                    Protocol::Pop3 => {
                        glommio::spawn_local(pop3_driver::run(shard, conn, pop3.clone())).detach();
                    }
                }
            }
            Err(e) => {
                // EMFILE/ENFILE and friends: back off instead of spinning.
                tracing::warn!(core = shard.id, proto = proto.name(), error = %e, "accept failed");
                glommio::timer::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
