//! The milter wire format (Sendmail libmilter's, protocol version 6): a
//! frame is a 4-byte big-endian length, then that many bytes: a one-byte
//! command or reply code and its data. Strings are NUL-terminated.
//!
//! This file encodes what the MTA sends ([`Command`]) and decodes what a
//! milter answers ([`Reply`]); it keeps no state and does no I/O.

use std::net::IpAddr;

/// The largest frame accepted from a milter (length field included in no
/// way: this bounds the code byte plus its data). libmilter sends body
/// chunks of at most 64 KiB (1 MiB with `SMFIP_MDS_1M`); anything bigger
/// is a broken or hostile peer, refused before any memory is taken.
pub const MAX_FRAME: usize = 1024 * 1024 + 1024;

/// The largest body chunk we send (libmilter's `MILTER_CHUNK_SIZE`).
pub const MAX_BODY_CHUNK: usize = 65535;

/// Action flags (`SMFIF_*`): what a milter may change.
pub mod action {
    pub const ADDHDRS: u32 = 0x01;
    pub const CHGBODY: u32 = 0x02;
    pub const ADDRCPT: u32 = 0x04;
    pub const DELRCPT: u32 = 0x08;
    pub const CHGHDRS: u32 = 0x10;
    pub const QUARANTINE: u32 = 0x20;
    pub const CHGFROM: u32 = 0x40;
    pub const ADDRCPT_PAR: u32 = 0x80;
    pub const SETSYMLIST: u32 = 0x100;
    /// Everything we apply (SETSYMLIST is not offered: we send a fixed
    /// set of macros).
    pub const OFFERED: u32 = ADDHDRS | CHGBODY | ADDRCPT | DELRCPT | CHGHDRS | QUARANTINE | CHGFROM | ADDRCPT_PAR;
}

/// Protocol flags (`SMFIP_*`): steps a milter does not want (`NO*`) or
/// will not answer (`NR_*`).
pub mod protocol {
    pub const NOCONNECT: u32 = 0x1;
    pub const NOHELO: u32 = 0x2;
    pub const NOMAIL: u32 = 0x4;
    pub const NORCPT: u32 = 0x8;
    pub const NOBODY: u32 = 0x10;
    pub const NOHDRS: u32 = 0x20;
    pub const NOEOH: u32 = 0x40;
    pub const NR_HDR: u32 = 0x80;
    pub const NOUNKNOWN: u32 = 0x100;
    pub const NODATA: u32 = 0x200;
    pub const SKIP: u32 = 0x400;
    pub const RCPT_REJ: u32 = 0x800;
    pub const NR_CONN: u32 = 0x1000;
    pub const NR_HELO: u32 = 0x2000;
    pub const NR_MAIL: u32 = 0x4000;
    pub const NR_RCPT: u32 = 0x8000;
    pub const NR_DATA: u32 = 0x10000;
    pub const NR_UNKN: u32 = 0x20000;
    pub const NR_EOH: u32 = 0x40000;
    pub const NR_BODY: u32 = 0x80000;
    pub const HDR_LEADSPC: u32 = 0x100000;
    /// Everything we honour. RCPT_REJ (also show rejected recipients) is
    /// not offered: a data-stage replay has only accepted ones.
    pub const OFFERED: u32 = NOCONNECT
        | NOHELO
        | NOMAIL
        | NORCPT
        | NOBODY
        | NOHDRS
        | NOEOH
        | NR_HDR
        | NOUNKNOWN
        | NODATA
        | SKIP
        | NR_CONN
        | NR_HELO
        | NR_MAIL
        | NR_RCPT
        | NR_DATA
        | NR_UNKN
        | NR_EOH
        | NR_BODY
        | HDR_LEADSPC;
}

/// The protocol version we speak.
pub const VERSION: u32 = 6;

/// What the MTA sends (`SMFIC_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command<'a> {
    /// `O`: version, actions and protocol flags we offer.
    OptNeg { version: u32, actions: u32, protocol: u32 },
    /// `D`: macros for the command `for_cmd`, as (name, value) pairs.
    Macro { for_cmd: u8, macros: &'a [(&'a str, String)] },
    /// `C`: the client's name, address and port.
    Connect { hostname: &'a str, addr: IpAddr, port: u16 },
    /// `H`: the HELO/EHLO argument.
    Helo(&'a str),
    /// `M`: `<sender>` then ESMTP arguments.
    Mail(&'a [String]),
    /// `R`: `<recipient>` then ESMTP arguments.
    Rcpt(&'a [String]),
    /// `T`: DATA.
    Data,
    /// `L`: one header field: its name and value.
    Header { name: &'a [u8], value: &'a [u8] },
    /// `N`: end of headers.
    Eoh,
    /// `B`: a body chunk of at most [`MAX_BODY_CHUNK`] bytes.
    Body(&'a [u8]),
    /// `E`: end of the message.
    BodyEob,
    /// `A`: forget this message, keep the connection.
    Abort,
    /// `Q`: close the connection.
    Quit,
}

impl Command<'_> {
    /// The code byte of this command.
    pub fn code(&self) -> u8 {
        match self {
            Command::OptNeg { .. } => b'O',
            Command::Macro { .. } => b'D',
            Command::Connect { .. } => b'C',
            Command::Helo(_) => b'H',
            Command::Mail(_) => b'M',
            Command::Rcpt(_) => b'R',
            Command::Data => b'T',
            Command::Header { .. } => b'L',
            Command::Eoh => b'N',
            Command::Body(_) => b'B',
            Command::BodyEob => b'E',
            Command::Abort => b'A',
            Command::Quit => b'Q',
        }
    }

    /// Append this command as one frame to `out`. NUL bytes inside a
    /// string (which a peer could smuggle into a HELO) are dropped so the
    /// milter cannot be made to see a different field split.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0, 0, 0, 0, self.code()]);
        match self {
            Command::OptNeg { version, actions, protocol } => {
                for v in [version, actions, protocol] {
                    out.extend_from_slice(&v.to_be_bytes());
                }
            }
            Command::Macro { for_cmd, macros } => {
                out.push(*for_cmd);
                for (name, value) in macros.iter() {
                    cstr(out, name.as_bytes());
                    cstr(out, value.as_bytes());
                }
            }
            Command::Connect { hostname, addr, port } => {
                cstr(out, hostname.as_bytes());
                out.push(match addr {
                    IpAddr::V4(_) => b'4',
                    IpAddr::V6(_) => b'6',
                });
                out.extend_from_slice(&port.to_be_bytes());
                cstr(out, addr.to_string().as_bytes());
            }
            Command::Helo(helo) => cstr(out, helo.as_bytes()),
            Command::Mail(args) | Command::Rcpt(args) => {
                for a in args.iter() {
                    cstr(out, a.as_bytes());
                }
            }
            Command::Header { name, value } => {
                cstr(out, name);
                cstr(out, value);
            }
            Command::Body(chunk) => out.extend_from_slice(chunk),
            Command::Data | Command::Eoh | Command::BodyEob | Command::Abort | Command::Quit => {}
        }
        // Commands are built from bounded pieces (a body chunk, a header
        // within the message limit), far below 4 GiB.
        let len = (out.len() - start - 4) as u32;
        out[start..start + 4].copy_from_slice(&len.to_be_bytes());
    }
}

fn cstr(out: &mut Vec<u8>, s: &[u8]) {
    out.extend(s.iter().copied().filter(|&b| b != 0));
    out.push(0);
}

/// What a milter answers (`SMFIR_*`), decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `O`: the milter's version, the actions it wants and the protocol
    /// flags it asks for (macro lists after them are ignored).
    OptNeg { version: u32, actions: u32, protocol: u32 },
    /// `a`: accept the message; this milter is done with it.
    Accept,
    /// `c`: go on.
    Continue,
    /// `d`: accept, then throw the message away.
    Discard,
    /// `r`: refuse permanently.
    Reject,
    /// `t`: refuse for now.
    Tempfail,
    /// `y`: refuse with this SMTP reply (code, then enhanced code and text).
    ReplyCode { code: u16, text: String },
    /// `s`: no more body chunks wanted.
    Skip,
    /// `p`: still working; keep waiting.
    Progress,
    /// `q`: hold the message, for this reason.
    Quarantine(String),
    /// `h`: add a header field at the end.
    AddHeader { name: String, value: String },
    /// `m`: change the `index`th (1-based) field named `name`; an empty
    /// value deletes it.
    ChgHeader { index: u32, name: String, value: String },
    /// `i`: insert a field at position `index` (0 = first).
    InsHeader { index: u32, name: String, value: String },
    /// `+` and `2`: add a recipient (ESMTP arguments ignored).
    AddRcpt(String),
    /// `-`: remove a recipient.
    DelRcpt(String),
    /// `b`: a chunk of the replacement body.
    ReplBody(Vec<u8>),
    /// `e`: change the envelope sender (ESMTP arguments ignored).
    ChgFrom(String),
    /// `l`, `4`, `f` and any code we do not know: named so the session
    /// can say what the milter sent.
    Other(u8),
}

/// A milter frame that cannot be taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("milter frame of {len} bytes is over the {max}-byte limit")]
    TooLong { len: usize, max: usize },
    #[error("empty milter frame")]
    Empty,
    #[error("malformed milter reply {code:?}: {why}")]
    Malformed { code: char, why: &'static str },
}

/// Decode one reply from the front of `buf`: `Ok(None)` when the frame is
/// not all there yet (read more), else the reply and the bytes it took.
pub fn decode(buf: &[u8]) -> Result<Option<(Reply, usize)>, FrameError> {
    let Some(head) = buf.get(..4) else { return Ok(None) };
    let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::TooLong { len, max: MAX_FRAME });
    }
    if len == 0 {
        return Err(FrameError::Empty);
    }
    let Some(frame) = buf.get(4..4 + len) else { return Ok(None) };
    Ok(Some((parse(frame[0], &frame[1..])?, 4 + len)))
}

fn parse(code: u8, data: &[u8]) -> Result<Reply, FrameError> {
    let bad = |why| FrameError::Malformed { code: char::from(code), why };
    Ok(match code {
        b'O' => {
            let word = |i: usize| data.get(i * 4..i * 4 + 4).map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
            match (word(0), word(1), word(2)) {
                (Some(version), Some(actions), Some(protocol)) => Reply::OptNeg { version, actions, protocol },
                _ => return Err(bad("shorter than 12 bytes")),
            }
        }
        b'a' => Reply::Accept,
        b'c' => Reply::Continue,
        b'd' => Reply::Discard,
        b'r' => Reply::Reject,
        b't' => Reply::Tempfail,
        b's' => Reply::Skip,
        b'p' => Reply::Progress,
        b'y' => {
            let raw = strings(data, 1).ok_or_else(|| bad("no NUL-terminated reply"))?.remove(0);
            let code = raw
                .get(..3)
                .and_then(|c| c.parse::<u16>().ok())
                .filter(|c| (400..600).contains(c))
                .ok_or_else(|| bad("not a 4xx or 5xx reply"))?;
            // A multi-line reply ("550-5.7.1 a\r\n550 5.7.1 b") is kept
            // as one line: its lines' texts (after "NNN-" / "NNN ") joined.
            let text = raw
                .split('\n')
                .map(|l| l.trim_end_matches('\r').get(4..).unwrap_or("").trim())
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join(" ");
            Reply::ReplyCode { code, text }
        }
        b'q' => Reply::Quarantine(strings(data, 1).ok_or_else(|| bad("no reason"))?.remove(0)),
        b'h' => {
            let mut s = strings(data, 2).ok_or_else(|| bad("needs a name and a value"))?;
            let value = s.pop().unwrap_or_default();
            Reply::AddHeader { name: header_name(s.pop().unwrap_or_default()).ok_or_else(|| bad("bad name"))?, value }
        }
        b'm' | b'i' => {
            let index = data.get(..4).map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
            let index = index.ok_or_else(|| bad("no index"))?;
            let mut s = strings(&data[4..], 2).ok_or_else(|| bad("needs a name and a value"))?;
            let value = s.pop().unwrap_or_default();
            let name = header_name(s.pop().unwrap_or_default()).ok_or_else(|| bad("bad name"))?;
            if code == b'm' {
                Reply::ChgHeader { index, name, value }
            } else {
                Reply::InsHeader { index, name, value }
            }
        }
        b'+' | b'2' => Reply::AddRcpt(strings(data, 1).ok_or_else(|| bad("no address"))?.remove(0)),
        b'-' => Reply::DelRcpt(strings(data, 1).ok_or_else(|| bad("no address"))?.remove(0)),
        b'e' => Reply::ChgFrom(strings(data, 1).ok_or_else(|| bad("no address"))?.remove(0)),
        b'b' => Reply::ReplBody(data.to_vec()),
        other => Reply::Other(other),
    })
}

/// The first `n` NUL-terminated strings of `data` (lossy UTF-8); None if
/// there are fewer.
fn strings(data: &[u8], n: usize) -> Option<Vec<String>> {
    let mut out = Vec::with_capacity(n);
    let mut rest = data;
    while out.len() < n {
        let end = rest.iter().position(|&b| b == 0)?;
        out.push(String::from_utf8_lossy(&rest[..end]).into_owned());
        rest = &rest[end + 1..];
    }
    Some(out)
}

/// A header field name a milter may set: printable ASCII without a colon
/// (RFC 5322 §2.2), else the field could smuggle a second one.
fn header_name(name: String) -> Option<String> {
    let ok = !name.is_empty() && name.bytes().all(|b| (33..=126).contains(&b) && b != b':');
    ok.then_some(name)
}
