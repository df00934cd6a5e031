//! `--json` on the admin commands, black-box: a real server, the real CLI,
//! and the JSON parsed and checked against the mail the test sent; the
//! `queue list` filters; and refusals on stderr with a non-zero exit.

mod common;

use common::*;
use serde_json::Value;
use std::time::Duration;

/// Run the CLI; its stdout parsed as JSON (the command must succeed).
fn json(server: &Server, args: &[&str]) -> Value {
    let out = server.cli(args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{args:?}: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {stdout}"))
}

/// The queue ids of a `queue list --json` answer, in order.
fn ids(list: &Value) -> Vec<String> {
    list["messages"].as_array().unwrap().iter().map(|m| m["queue_id"].as_str().unwrap().to_string()).collect()
}

/// Send one message; its queue id (from `250 ... queued as ID`).
fn send(server: &Server, to: &[&str], body: &[u8]) -> String {
    let mut c = server.smtp();
    c.expect("EHLO json.test", "250");
    let reply = c.send_mail("bob@localhost", to, body);
    assert!(reply.starts_with("250"), "{reply}");
    reply.rsplit(' ').next().unwrap().trim().to_string()
}

/// The entry of `id` in `queue list --json` once it has been tried.
fn tried(server: &Server, id: &str) -> Value {
    eventually(Duration::from_secs(15), || {
        let list = json(server, &["queue", "list", "--json"]);
        let entry = list["messages"].as_array().unwrap().iter().find(|m| m["queue_id"] == id)?.clone();
        (entry["attempts"].as_u64() >= Some(1)).then_some(entry)
    })
}

#[test]
fn queue_list_json_shows_deferred_mail_and_the_filters_select_it() {
    let closed = free_port(); // nobody listens: every attempt is deferred
    let server = Server::start_with(Options {
        relay: format!(
            "routes = {{ \"remote.test\" = \"127.0.0.1:{closed}\", \"other.test\" = \"127.0.0.1:{closed}\" }}\nretry = [\"1h\"]\n"
        ),
        ..Options::default()
    });
    let first = send(&server, &["far@remote.test", "near@remote.test"], b"Subject: one\r\n\r\nbody\r\n");
    let entry = tried(&server, &first);
    // The second arrives later, so `first` stays the oldest.
    let second = send(&server, &["x@other.test"], b"Subject: two\r\n\r\nbody\r\n");
    tried(&server, &second);
    let held = server.cli(&["queue", "hold", &second]);
    assert!(held.status.success(), "{}", String::from_utf8_lossy(&held.stderr));

    assert_eq!(entry["sender"], "bob@localhost");
    assert_eq!(entry["domain"], "remote.test");
    assert_eq!(entry["state"], "deferred");
    assert!(entry["attempts"].as_u64().unwrap() >= 1, "{entry}");
    let (arrived, next) = (entry["arrived_ms"].as_u64().unwrap(), entry["next_attempt_ms"].as_u64().unwrap());
    assert!(next > arrived + 30 * 60 * 1000, "retry is 1h: {entry}");
    assert!(!entry["last_reply"].as_str().unwrap().is_empty(), "{entry}");
    let rcpts: Vec<(&str, &str)> = entry["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["address"].as_str().unwrap(), r["state"].as_str().unwrap()))
        .collect();
    assert_eq!(rcpts, [("far@remote.test", "deferred"), ("near@remote.test", "deferred")]);
    assert!(entry.get("pool").is_some_and(Value::is_null), "no pools configured: {entry}");

    let all = json(&server, &["queue", "list", "--json"]);
    assert_eq!(ids(&all), [first.as_str(), second.as_str()], "oldest first: {all}");
    assert_eq!((all["count"].as_u64(), all["matched"].as_u64()), (Some(2), Some(2)));
    assert_eq!(all["messages"][1]["state"], "held");

    let by = |args: &[&str]| ids(&json(&server, &[&["queue", "list", "--json"], args].concat()));
    assert_eq!(by(&["--domain", "remote.test"]), [first.as_str()]);
    assert_eq!(by(&["--domain", "OTHER.test"]), [second.as_str()]);
    assert_eq!(by(&["--domain", "nowhere.test"]), Vec::<String>::new());
    assert_eq!(by(&["--state", "deferred"]), [first.as_str()]);
    assert_eq!(by(&["--state", "held"]), [second.as_str()]);
    assert_eq!(by(&["--state", "active"]), Vec::<String>::new());
    assert_eq!(by(&["--older-than", "1h"]), Vec::<String>::new());
    assert_eq!(by(&["--older-than", "1ms", "--domain", "other.test"]), [second.as_str()]);
    let limited = json(&server, &["queue", "list", "--json", "--limit", "1"]);
    assert_eq!(ids(&limited), [first.as_str()], "the limit keeps the oldest");
    assert_eq!((limited["count"].as_u64(), limited["matched"].as_u64()), (Some(1), Some(2)));

    // The text form renders the same list.
    let text = server.cli(&["queue", "list", "--limit", "1"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains(&first) && !text.contains(&second), "{text}");
    assert!(text.contains("to=far@remote.test") && text.contains("-- 1 queued message share(s) shown of 2"), "{text}");

    let status = json(&server, &["status", "--json"]);
    assert_eq!(status["cores"], 2);
    assert_eq!(status["queue"]["total"], 2, "{status}");
    assert_eq!(status["queue"]["deferred"], 1, "{status}");
    assert_eq!(status["queue"]["held"], 1, "{status}");
    assert_eq!(status["since_start"]["received"], 2, "{status}");
    // Spool use is measured off the executor every 250 ms, and a fast run
    // may ask before the first measurement after the segments were made.
    let used = |s: &Value| s["spool"]["used_bytes"].as_u64().unwrap();
    if used(&status) == 0 {
        // Fails the test (with a timeout) if the spool's bytes never show.
        eventually(Duration::from_secs(5), || (used(&json(&server, &["status", "--json"])) > 0).then_some(()));
    }
    assert_eq!(status["spool"]["full"], false);
    assert!(status["recovery"]["complete"].is_boolean(), "{status}");
    assert!(status["sessions"]["by_protocol"]["smtp"].is_u64(), "{status}");

    let sites = json(&server, &["queue", "sites", "--json"]);
    let sites = sites["sites"].as_array().unwrap();
    let queued: u64 = sites.iter().map(|s| s["queued"].as_u64().unwrap()).sum();
    assert_eq!(queued, 2, "{sites:?}");
    // Both domains are routed to the same closed port: one site, whose
    // source saw the refused connection.
    let site = sites.iter().find(|s| s["site"] == format!("127.0.0.1:{closed}").as_str()).expect("the route's site");
    assert_eq!(site["queued"], 2, "{sites:?}");
    assert!(site["sources"][0]["last_reply"].as_str().unwrap().contains("refused"), "{sites:?}");

    let trace = json(&server, &["trace", &first, "--json"]);
    let m = &trace["messages"][0];
    assert_eq!(m["queue_id"], first.as_str());
    assert_eq!(m["sender"], "bob@localhost");
    for r in m["recipients"].as_array().unwrap() {
        assert_eq!(r["route"], "relay");
        assert_eq!(r["destination"], "remote.test");
        assert_eq!(r["status"], "queued");
        let state = &r["states"][0];
        assert_eq!(state["attempts"], 1, "{r}");
        assert!(state["next_attempt_ms"].as_u64().unwrap() > arrived, "{r}");
        assert!(state["last_reply"].is_string(), "{r}");
    }
}

#[test]
fn mailbox_and_suppression_lists_in_json() {
    let server = Server::start();
    let id = send(&server, &["alice@localhost"], b"Subject: json me\r\n\r\nhello\r\n");
    let list = json(&server, &["mailbox", "list", "alice@localhost", "--json"]);
    assert_eq!(list["user"], "alice@localhost");
    assert_eq!(list["count"], 1);
    let m = &list["messages"][0];
    assert_eq!(m["subject"], "json me");
    assert_eq!(m["sender"], "bob@localhost");
    assert_eq!(m["queue_id"], id.as_str());
    assert!(m["uid"].as_str().unwrap().starts_with(&id), "{m}");
    assert_eq!(m["size"], list["bytes"]);
    assert!(m["size"].as_u64().unwrap() > 20, "{m}");

    let empty = json(&server, &["suppression", "list", "--json"]);
    assert_eq!(empty["count"], 0);
    let added = server.cli(&["suppression", "add", "Gone@Remote.test"]);
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    let list = json(&server, &["suppression", "list", "--json"]);
    assert_eq!(list["count"], 1);
    let e = &list["entries"][0];
    assert_eq!(e["address"], "gone@remote.test");
    assert_eq!(e["class"], "manual");
    assert!(e["until_ms"].as_u64().unwrap() > e["since_ms"].as_u64().unwrap(), "{e}");
}

#[test]
fn refusals_go_to_stderr_with_a_non_zero_exit_and_nothing_on_stdout() {
    let server = Server::start();
    for (args, says) in [
        (&["mailbox", "list", "nobody@localhost", "--json"][..], "nobody@localhost is not a user"),
        (&["mailbox", "list", "nobody@localhost"][..], "nobody@localhost is not a user"),
        (&["mailbox", "delete", "alice@localhost", "0000000000000001.0"][..], "no message 0000000000000001.0"),
        (&["queue", "delete", "0000000000000001"][..], "no queued message 0000000000000001"),
        (&["queue", "hold", "not-an-id"][..], "bad queue id \"not-an-id\""),
        (&["suppression", "delete", "never@remote.test"][..], "never@remote.test"),
        (&["queue", "list", "--older-than", "90"][..], "unit"),
        (&["queue", "list", "--state", "stuck"][..], "stuck"),
        (&["queue", "list", "--limit", "0"][..], "at least 1"),
    ] {
        let out = server.cli(args);
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(!out.status.success(), "{args:?} succeeded: {stdout}");
        assert!(stdout.is_empty(), "{args:?} printed on stdout: {stdout}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}
