//! Writes the seed corpus under fuzz/corpus/<target>/ (deterministic, a few
//! kB per target). Run from anywhere after changing the formats:
//!
//! ```sh
//! cargo run --manifest-path fuzz/Cargo.toml --example seeds
//! ```
//!
//! Stream targets take a control byte first (see `ringmail_fuzz`): the
//! seeds use printable ones, so each file reads as a transcript.

use std::fs;
use std::path::{Path, PathBuf};

use ringmail::config::EMBEDDED_DEFAULT;
use ringmail::spool::record::encode_into;
use ringmail::spool::{
    encode_message, encode_recipient_state, encode_tombstone, MessageRecord, Outcome, QueueId, RecipientEntry,
    RecipientState, RecordKind, Route, SegmentKey, SpoolRef, Tombstone,
};

/// A well-formed Argon2id PHC string (the users-file parser checks the form,
/// not the password), fixed so the corpus is reproducible.
const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$2mW2Rr0hGkrDAkkz3XH3Lw1Bqcp5rUNRZqznCCW3Hx8";

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    fs::write(dir.join(name), bytes).expect("write seed");
}

/// `control` then the transcript.
fn stream(control: u8, text: &[u8]) -> Vec<u8> {
    let mut out = vec![control];
    out.extend_from_slice(text);
    out
}

fn smtp_command(dir: &Path) {
    let session: &[u8] = b"EHLO client.example.org\r\n\
MAIL FROM:<bob@example.org> SIZE=120 BODY=8BITMIME\r\n\
RCPT TO:<jane@example.test>\r\n\
RCPT TO:<Jane@Example.Test.>\r\n\
RCPT TO:<someone@relay.test>\r\n\
RCPT TO:<xnobody@example.test>\r\n\
RCPT TO:<a@elsewhere.test>\r\n\
DATA\r\n\
Subject: hi\r\n\r\n..leading dot\r\nbody\r\n.\r\n\
QUIT\r\n";
    for control in [b'0', b'3', b'5', b'7'] {
        write(dir, &format!("session-chunks-{}", control as char), &stream(control, session));
    }
    write(
        dir,
        "pipelined-rset-and-errors",
        &stream(
            b'6',
            b"HELO x\r\nMAIL FROM:<>\r\nRCPT TO:<postmaster>\r\nRSET\r\nNOOP hi\r\nHELP\r\nVRFY jane\r\n\
MAIL FROM:<a@b.test>\r\nMAIL FROM:<a@b.test>\r\nDATA\r\nRCPT TO:<jane@example.test>\r\nDATA\r\n.\r\n\
MAIL FROM:<a@b.test>\r\nRCPT TO:<jane@example.test>\r\nDATA\r\nx\r\n.\r\nQUIT\r\n",
        ),
    );
    write(
        dir,
        "starttls-injection",
        &stream(b'7', b"EHLO x\r\nSTARTTLS\r\nMAIL FROM:<evil@attacker.test>\r\nRCPT TO:<jane@example.test>\r\n"),
    );
    write(dir, "starttls-off", &stream(0x87, b"EHLO x\r\nSTARTTLS\r\nQUIT\r\n"));
    write(
        dir,
        "relay-tests",
        &stream(
            b'7',
            b"EHLO x\r\nMAIL FROM:<a@b.test>\r\n\
RCPT TO:<user%remote.test@example.test>\r\n\
RCPT TO:<remote.test!user@example.test>\r\n\
RCPT TO:<@example.test,@mx.example.test:user@remote.test>\r\n\
RCPT TO:<\"user@remote.test\"@example.test>\r\n\
RCPT TO:<\"jane\"@example.test>\r\n\
RCPT TO:<\"a b\\\\c\"@example.test>\r\n\
RCPT TO:<user@[1.2.3.4]>\r\n\
RCPT TO:<user@[IPv6:2001:db8::1]>\r\n\
RCPT TO:<user@[tag:x]>\r\n\
RCPT TO:<user@relay.test.>\r\n\
RCPT TO:<USER@RELAY.TEST>\r\n\
RCPT TO: <user@example.test> \r\n\
RCPT TO:<user@ex_ample.test>\r\n\
RCPT TO:<caf\xc3\xa9@example.test>\r\n",
        ),
    );
    write(
        dir,
        "bad-syntax",
        &stream(
            b'4',
            b"EHLO\r\nMAIL FROM:a@b\r\nHELO x\r\nMAIL FROM:<a@b> SIZE=x\r\nMAIL FROM:<a@b> FOO=bar\r\n\
MAIL FROM:<a@b>\tX\r\nDATA x\r\nQUIT now\r\n\0\r\nBDAT 10\r\n",
        ),
    );
    write(
        dir,
        "bare-lf-commands",
        &stream(b'2', b"EHLO x\nMAIL FROM:<a@b.test>\nRCPT TO:<jane@example.test>\nDATA\n.\r\n"),
    );
    let mut long = b"EHLO ".to_vec();
    long.extend(std::iter::repeat_n(b'x', 100));
    long.extend_from_slice(b"\r\nNOOP\r\n");
    write(dir, "overlong-line", &stream(b'5', &long));
    write(
        dir,
        "data-smuggling",
        &stream(
            b'3',
            b"EHLO x\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<jane@example.test>\r\nDATA\r\n\
a\n.\nMAIL FROM:<evil@x.test>\r\nb\r.\r\nc\n.\r\nd\r\n.\nRCPT TO:<y@relay.test>\r\n.\r\nQUIT\r\n",
        ),
    );
    // AUTH (control '0'..'7': offered, passwords allowed in plaintext).
    write(
        dir,
        "auth-plain-initial",
        &stream(b'7', b"EHLO x\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\nMAIL FROM:<alice@example.test>\r\nRCPT TO:<a@remote.test>\r\nDATA\r\nx\r\n.\r\nAUTH PLAIN =\r\n"),
    );
    write(
        dir,
        "auth-exchanges",
        &stream(
            b'4',
            b"EHLO x\r\nAUTH LOGIN\r\nYWxpY2U=\r\nd3Jvbmc=\r\nAUTH PLAIN\r\n*\r\nAUTH PLAIN\r\nnot base64!\r\n\
AUTH PLAIN YWxpY2UAYWxpY2UAdGVtcA==\r\nAUTH PLAIN AGJvYgBsb2NrZWQ=\r\nAUTH CRAM-MD5\r\nAUTH\r\n\
AUTH LOGIN YWxpY2U=\r\nc2VjcmV0\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\nMAIL FROM:<other@example.test>\r\n",
        ),
    );
    write(dir, "auth-login", &stream(b'5', b"EHLO x\r\nAUTH LOGIN\r\nYWxpY2U=\r\nc2VjcmV0\r\nAUTH LOGIN\r\nQUIT\r\n"));
    // 'P' = 0x50: AUTH required (submission); MAIL before AUTH is refused.
    write(
        dir,
        "auth-required",
        &stream(b'P', b"EHLO x\r\nMAIL FROM:<a@b.test>\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\nMAIL FROM:<alice@example.test>\r\nRCPT TO:<a@remote.test>\r\nDATA\r\n.\r\n"),
    );
    // '8' = 0x38: no passwords before STARTTLS.
    write(
        dir,
        "auth-needs-tls",
        &stream(
            b'8',
            b"EHLO x\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\nSTARTTLS\r\nEHLO x\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n",
        ),
    );
    // An AUTH response line may be longer than a command line.
    let mut long_auth = b"EHLO x\r\nAUTH PLAIN\r\n".to_vec();
    long_auth.extend(std::iter::repeat_n(b'A', 400));
    long_auth.extend_from_slice(b"\r\nNOOP\r\n");
    write(dir, "auth-long-response", &stream(b'6', &long_auth));
    let mut big = b"EHLO x\r\nMAIL FROM:<a@b.test> SIZE=100000\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<jane@example.test>\r\nDATA\r\n"
        .to_vec();
    for _ in 0..8 {
        big.extend_from_slice(b"0123456789012345678901234567890123456789\r\n");
    }
    big.extend_from_slice(b".\r\nQUIT\r\n");
    write(dir, "oversized-message", &stream(b'6', &big));
}

fn smtp_bdat(dir: &Path) {
    // Control bytes: bits 0-2 the read splitting, bit 3 BODY=BINARYMIME,
    // bits 4-5 the limit (see the target). '0' = 0x30: reads of 1, text,
    // limit 4096; '8' = 0x38: reads of 1, BINARYMIME, limit 4096; '*' = 0x2a:
    // reads <= 3, BINARYMIME, limit 200; '\x17': whole, text, limit 16.
    let cases: &[(&str, u8, &[u8])] = &[
        ("chunks-then-last", b'0', b"BDAT 5\r\nhelloBDAT 7 LAST\r\n, world\r\nQUIT\r\n"),
        ("zero-last", b'0', b"BDAT 0 LAST\r\nQUIT\r\n"),
        ("binary-end-of-data", b'8', b"BDAT 12\r\na\r\n.\r\n\rb\n\0\xffBDAT 0 LAST\r\n"),
        (
            "pipelined-rset",
            b'*',
            b"BDAT 4\r\nRSETRSET\r\nMAIL FROM:<b@relay.test>\r\nRCPT TO:<x@example.test>\r\nBDAT 6 LAST\r\nQUIT\r\n",
        ),
        ("over-limit", 0x17, b"BDAT 10\r\n0123456789BDAT 10 LAST\r\nQUIT\r\nNOOPBDAT 3\r\nabcNOOP\r\n"),
        ("data-after-bdat", b'0', b"BDAT 1\r\nxDATA\r\nBDAT 1 LAST\r\ny"),
        ("bad-bdat", b'0', b"BDAT x LAST\r\nNOOP\r\n"),
    ];
    for (name, control, text) in cases {
        write(dir, name, &stream(*control, text));
    }
}

fn smtp_data(dir: &Path) {
    // Control bytes: bits 0-2 the chunking, bits 3-5 the limit (see the target):
    // '7' = 0x37: whole input, limit 1000; 'x' = 0x78: chunks of 1, limit 1 MiB;
    // '!' = 0x21: chunks <= 2, limit 5; 'A' = 0x41: chunks <= 2, limit 0.
    let cases: &[(&str, u8, &[u8])] = &[
        ("plain", b'7', b"Subject: x\r\n\r\nhello\r\n.\r\nQUIT\r\n"),
        ("empty-message", b'7', b".\r\nQUIT\r\n"),
        ("dot-stuffed", b'x', b"..one\r\n..two\n..three\r\n.\r\n"),
        ("lf-dot-lf", b'x', b"a\n.\nMAIL FROM:<evil@x.test>\r\n.\r\n"),
        ("lf-dot-crlf", b'x', b"a\n.\r\nb\r\n.\r\n"),
        ("cr-dot-cr", b'x', b"a\r.\rb\r\n.\r\n"),
        ("cr-dot-crlf", b'x', b"a\r.\r\nb\r\n.\r\n"),
        ("crlf-dot-lf", b'x', b"a\r\n.\nb\r\n.\r\n"),
        ("crlf-dot-cr-x", b'x', b"a\r\n.\rb\r\n.\r\r\n.\r\n"),
        ("eight-bit", b'7', b"caf\xc3\xa9 \xff\0\r\n.\r\n"),
        ("over-limit", b'!', b"0123456789\r\n0123456789\r\n.\r\nNOOP\r\n"),
        ("limit-zero", b'A', b"x\r\n.\r\n"),
        ("unterminated", b'7', b"no end\r\n.\n"),
    ];
    for (name, control, body) in cases {
        write(dir, name, &stream(*control, body));
    }
}

fn pop3_command(dir: &Path) {
    let session: &[u8] = b"CAPA\r\nUSER alice\r\nPASS secret\r\nSTAT\r\nLIST\r\nLIST 2\r\nUIDL\r\nUIDL 3\r\n\
RETR 2\r\nTOP 1 0\r\nTOP 2 1\r\nDELE 1\r\nDELE 1\r\nLIST 1\r\nRSET\r\nDELE 2\r\nNOOP\r\nQUIT\r\n";
    for control in [b'0', b'4', b'7'] {
        write(dir, &format!("session-chunks-{}", control as char), &stream(control, session));
    }
    write(
        dir,
        "login-failures",
        &stream(
            b'6',
            b"PASS x\r\nUSER alice\r\nPASS wrong\r\nUSER alice\r\nPASS inuse\r\nUSER alice\r\nPASS temp\r\n\
USER bob\r\nPASS nope\r\nUSER alice\r\nPASS  spaced secret \r\nSTAT\r\n",
        ),
    );
    write(dir, "stls-injection", &stream(b'7', b"STLS\r\nUSER alice\r\nPASS secret\r\n"));
    write(
        dir,
        "auth-plain",
        &stream(
            b'6',
            b"AUTH\r\nAUTH LOGIN\r\nAUTH PLAIN\r\n*\r\nAUTH PLAIN\r\n!!\r\nAUTH PLAIN YWxpY2UAYWxpY2UAdGVtcA==\r\n\
AUTH PLAIN =\r\nAUTH PLAIN\r\nAGFsaWNlAHNlY3JldA==\r\nSTAT\r\nQUIT\r\n",
        ),
    );
    // '8' = 0x38: no passwords before STLS.
    write(
        dir,
        "auth-needs-tls",
        &stream(b'8', b"CAPA\r\nUSER alice\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\nSTLS\r\nCAPA\r\n"),
    );
    write(dir, "stls-off", &stream(0x87, b"CAPA\r\nSTLS\r\nQUIT\r\n"));
    write(
        dir,
        "bad-arguments",
        &stream(
            b'5',
            b"USER alice\r\nPASS secret\r\nLIST x\r\nLIST 1 2\r\nRETR\r\nRETR 0\r\nRETR 99999999999999999999999\r\n\
TOP 1\r\nTOP 1 x\r\nTOP 1 99999999999\r\nDELE -1\r\nUSER bob\r\nSTLS\r\nAPOP a b\r\n\r\nquit\r\n",
        ),
    );
    write(dir, "bare-lf-and-cr", &stream(b'2', b"USER alice\nPASS secret\nST\rAT\r\nNO\0OP\r\nLIST \xff\r\nQUIT\n"));
    let mut long = b"USER ".to_vec();
    long.extend(std::iter::repeat_n(b'a', 80));
    long.extend_from_slice(b"\r\nQUIT\r\n");
    write(dir, "overlong-line", &stream(b'3', &long));
}

fn config(dir: &Path) {
    write(dir, "embedded-default.toml", EMBEDDED_DEFAULT.as_bytes());
    let full = r#"hostname = "mx1.example.net"
data_dir = "/var/lib/ringmail"
cores = 0
local_domains = ["example.net", "Example.ORG."]
users_file = "users"
max_message_size = 10485760

[listen]
smtp = "0.0.0.0:25"
pop3 = "[::1]:110"

[relay]
permit_relay_from = ["127.0.0.0/8", "::1/128"]
routes = { "example.org" = "127.0.0.1:2600", "*" = "[2001:db8::1]:25", "mail.example.com" = "lmtp:unix:/run/dovecot/lmtp", "store.example.com" = ["lmtp:127.0.0.1:24", "lmtp:[::1]:24"] }
dns_server = "127.0.0.53"
retry = ["1m", "5m", "15m", "30m", "1h", "2h", "4h"]
max_queue_lifetime = "5d"
delay_warning = "4h"
tls = "opportunistic"
max_connections_per_domain = 20
max_messages_per_connection = 100
mx_port = 25

[relay.timeouts]
connect = "30s"
greeting = "5m"
command = "5m"
data_init = "2m"
data_block = "3m"
data_done = "10m"

[spool]
segment_size = 67108864

[limits]
max_recipients = 1000
max_errors = 20
smtp_idle_timeout = "5m"
pop3_idle_timeout = "10m"

[auth]
failure_delay = "2s"
max_failures_per_connection = 10

[runtime]
io_memory = 10485760
"#;
    write(dir, "full.toml", full.as_bytes());
    write(
        dir,
        "invalid.toml",
        b"hostname = \"\"\nmax_message_size = 10\ncores = 999\n[spool]\nsegment_size = 4097\n[listen]\nsmtps = \"0.0.0.0:465\"\n[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n[relay]\nretry = []\ndns_server = \"x\"\nroutes = { a = \"nope\" }\ndelay_warning = \"30\"\n",
    );
    write(dir, "unknown-key.toml", b"hostnme = \"x\"\n[listen]\nsmtp = \"127.0.0.1:25\"\n");
    write(
        dir,
        "users",
        format!("# users\n\nAlice@Example.org:{{ARGON2ID}}{HASH}\nbob@example.org:{{ARGON2ID}}{HASH}:1000:1000::\n")
            .as_bytes(),
    );
    write(dir, "users-bad", b"carol@example.org:{PLAIN}secret\nnoatsign:{ARGON2ID}x\na@x:{ARGON2ID}garbage\n");
    write(dir, "users-duplicate", format!("a@x:{{ARGON2ID}}{HASH}\nA@x:{{ARGON2ID}}{HASH}\n").as_bytes());
}

/// A segment image holding a message, a recipient state and a tombstone.
fn segment(key: SegmentKey, room: usize) -> Vec<u8> {
    let body = b"Subject: hi\r\n\r\nhello\r\n";
    let message = MessageRecord {
        queue_id: QueueId(0x0661_5061_f57f_6c00),
        received_at_ms: 1_700_000_000_000,
        client: "192.0.2.1".into(),
        helo: "client.example.org".into(),
        sender: "bob@example.org".into(),
        recipients: vec![
            RecipientEntry::new("jane@example.test", Route::Local { user: "jane".into() }),
            RecipientEntry::new("x@remote.test", Route::Remote { domain: "remote.test".into() }),
        ],
        ext: Default::default(),
        body,
    };
    let mut bytes = Vec::new();
    encode_into(&mut bytes, RecordKind::Message, key, &[&encode_message(&message).expect("small")]);
    let target = SpoolRef { dir: key.dir, segment: key.seq, offset: 0 };
    let state = RecipientState {
        target,
        recipient: 1,
        seq: 1,
        attempts: 1,
        next_attempt_ms: 1_700_000_060_000,
        warned: false,
        held: false,
        last_error: "451 4.3.0 try later".into(),
    };
    encode_into(&mut bytes, RecordKind::RecipientState, key, &[&encode_recipient_state(&state).expect("short")]);
    let tombstone = Tombstone { target, recipient: 0, outcome: Outcome::Delivered };
    encode_into(&mut bytes, RecordKind::Tombstone, key, &[&encode_tombstone(&tombstone)]);
    bytes.resize(bytes.len() + room, 0);
    bytes
}

/// Raw mode (byte 0 even): image count - 1, then per image dir, seq, and
/// (except for the last) its length / 8.
fn raw_seed(images: &[(SegmentKey, Vec<u8>)]) -> Vec<u8> {
    let mut out = vec![0, (images.len() - 1) as u8];
    for (i, (key, bytes)) in images.iter().enumerate() {
        out.push(key.dir as u8);
        out.push(key.seq as u8);
        if i + 1 < images.len() {
            assert!(bytes.len() % 8 == 0 && bytes.len() / 8 < 256);
            out.push((bytes.len() / 8) as u8);
        }
        out.extend_from_slice(bytes);
    }
    out
}

fn spool_record(dir: &Path) {
    let k00 = SegmentKey { dir: 0, seq: 0 };
    let k01 = SegmentKey { dir: 0, seq: 1 };
    let k10 = SegmentKey { dir: 1, seq: 0 };
    write(dir, "raw-one-segment", &raw_seed(&[(k00, segment(k00, 64))]));
    write(
        dir,
        "raw-three-segments",
        &raw_seed(&[(k00, segment(k00, 0)), (k01, segment(k01, 32)), (k10, segment(k10, 24))]),
    );
    let mut torn = segment(k00, 64);
    let len = torn.len();
    torn[len - 80] ^= 0x40; // inside the tombstone: bad crc
    write(dir, "raw-torn-tombstone", &raw_seed(&[(k00, torn)]));
    let mut stale = segment(k01, 8);
    stale.extend_from_slice(b"RMSP\x01\x01stale bytes");
    write(dir, "raw-stale-tail", &raw_seed(&[(k01, stale)]));
    write(dir, "raw-misplaced", &raw_seed(&[(k01, segment(k00, 32))]));
    // Built mode (byte 0 odd): the generator in the target reads the rest.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for n in 0..6 {
        let mut bytes = vec![1u8];
        for _ in 0..200 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            bytes.push(seed as u8);
        }
        write(dir, &format!("built-{n}"), &bytes);
    }
}

fn mail_headers(dir: &Path) {
    write(dir, "plain", b"From: Joe <joe@example.org>\r\nSubject: hi\r\n\r\nbody\r\n");
    write(dir, "folded-and-two-from", b"From: a@x.example,\r\n b@x.example\r\nFrom: c@y.example\r\n\r\n");
    write(
        dir,
        "quoted-comments",
        b"From: \"a@evil, \\\"x\" (c (nested) @) <joe@Example.ORG.>\r\nTo: x\r\n\r\nFrom: body@z.example\r\n",
    );
    write(
        dir,
        "forged-results",
        b"Authentication-Results: (c) MX.TEST 1; dkim=pass\r\n x=y\r\nAuthentication-Results: other; spf=pass\r\nSubject: s\r\n\r\n",
    );
    write(dir, "bare-lf-and-junk", b"From:\xff@\xfe.\x80\nX: \x00\n \n\nbody");
}

fn shaping_rules(dir: &Path) {
    write(
        dir,
        "full",
        br#"[site.default]
max_connections = 20
max_deliveries_per_connection = 100
[[site.default.backoff]]
match = "4\\.7\\.0|rate limit|try again later"
action = "suspend"
duration = "15m"

[site."google.com"]
mx_suffix = ["googlemail.com"]
max_connections = 20
max_message_rate = "500/min"
connection_rate = "60/min"
retry = ["5m", "15m", "1h"]
[[site."google.com".backoff]]
match = "4\\.7\\.28|reputation"
action = "halve-rate"
"#,
    );
    write(dir, "bad-rate", b"[site.\"x.test\"]\nmax_message_rate = \"5 per minute\"\n");
    write(dir, "bad-regex", b"[[site.default.backoff]]\nmatch = \"(\"\naction = \"defer\"\n");
    write(dir, "tiny-rate", b"[site.default]\nmax_message_rate = \"1/d\"\nconnection_rate = \"4294967295/s\"\n");
}

/// A milter reply frame: length, code, data.
fn milter_frame(code: u8, data: &[u8]) -> Vec<u8> {
    let mut f = ((data.len() + 1) as u32).to_be_bytes().to_vec();
    f.push(code);
    f.extend_from_slice(data);
    f
}

/// Replies a milter sends to the conversation of the `milter_reply`
/// target (two recipients, two header fields, one body chunk): the
/// negotiation asking for every change, then `steps` CONTINUEs, then `end`.
fn milter_reply(dir: &Path) {
    let optneg = |actions: u32, protocol: u32| {
        let mut d = 6u32.to_be_bytes().to_vec();
        d.extend_from_slice(&actions.to_be_bytes());
        d.extend_from_slice(&protocol.to_be_bytes());
        milter_frame(b'O', &d)
    };
    let cont = |n: usize| (0..n).flat_map(|_| milter_frame(b'c', b"")).collect::<Vec<u8>>();
    let mut chg = 1u32.to_be_bytes().to_vec();
    chg.extend_from_slice(b"Subject\0changed\0");
    let mut ins = 0u32.to_be_bytes().to_vec();
    ins.extend_from_slice(b"X-Top\0a\n\nEvil: 1\0");
    let changes = [
        milter_frame(b'h', b"X-Spam\0no\0"),
        milter_frame(b'm', &chg),
        milter_frame(b'i', &ins),
        milter_frame(b'+', b"<w@mx.test>\0"),
        milter_frame(b'-', b"<u@mx.test>\0"),
        milter_frame(b'e', b"<new@b.test>\0"),
        milter_frame(b'b', b"new\nbody\r\n"),
        milter_frame(b'q', b"held\0"),
        milter_frame(b'p', b""),
        milter_frame(b'a', b""),
    ]
    .concat();
    let cases: Vec<(&str, u8, Vec<u8>)> = vec![
        ("every-change", b'7', [optneg(0xff, 0), cont(10), changes.clone()].concat()),
        ("every-change-bytewise", b'0', [optneg(0xff, 0), cont(10), changes].concat()),
        ("reply-code", b'3', [optneg(0, 0), cont(2), milter_frame(b'y', b"550-5.7.1 a\r\n550 5.7.1 b\0")].concat()),
        (
            "no-reply-steps",
            b'5',
            [optneg(0x01, 0x1000 | 0x2000 | 0x4000 | 0x8000 | 0x80 | 0x80000), cont(3), milter_frame(b't', b"")]
                .concat(),
        ),
        ("skip-body", b'2', [optneg(0, 0x400), cont(9), milter_frame(b's', b""), milter_frame(b'd', b"")].concat()),
        ("oversized-frame", b'6', [optneg(0, 0), 0x7fff_ffffu32.to_be_bytes().to_vec()].concat()),
    ];
    for (name, control, replies) in cases {
        let mut bytes = vec![control];
        bytes.extend(replies);
        write(dir, name, &bytes);
    }
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus");
    type Writer = fn(&Path);
    let targets: [(&str, Writer); 9] = [
        ("smtp_command", smtp_command),
        ("smtp_bdat", smtp_bdat),
        ("smtp_data", smtp_data),
        ("pop3_command", pop3_command),
        ("config", config),
        ("spool_record", spool_record),
        ("mail_headers", mail_headers),
        ("shaping_rules", shaping_rules),
        ("milter_reply", milter_reply),
    ];
    for (name, make) in targets {
        let dir = root.join(name);
        fs::create_dir_all(&dir).expect("create corpus dir");
        make(&dir);
    }
    println!("seeds written under {}", root.display());
}
