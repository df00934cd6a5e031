//! The address-model keys: `[aliases]`, `aliases_file`, `local_domains_file`,
//! `recipient_delimiter` and `postmaster`, read into an
//! [`AddressMap`](crate::address_map::AddressMap).
//!
//! Owns: the file formats and their error messages (each names the file,
//! the line and the reason). Reading the two files happens with the rest
//! of the config, so a broken file stops start-up and `check-config`, and a
//! SIGHUP keeps the previous config.

use serde::Deserialize;
use std::path::Path;

/// One alias value: a single target or a list of them.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum AliasValue {
    One(String),
    Many(Vec<String>),
}

impl AliasValue {
    pub fn targets(&self) -> Vec<String> {
        match self {
            AliasValue::One(t) => vec![t.clone()],
            AliasValue::Many(ts) => ts.clone(),
        }
    }
}

/// Check an alias key (`user@domain` or `@domain` for a catch-all) and its
/// targets; `None` when they are fine, else the reason.
pub fn alias_problem(key: &str, targets: &[String]) -> Option<String> {
    let ok_domain = |d: &str| !d.is_empty() && !d.contains(|c: char| c.is_whitespace() || c == '@');
    let key_ok = match key.rsplit_once('@') {
        Some((local, domain)) => ok_domain(domain) && !local.contains(char::is_whitespace),
        None => false,
    };
    if !key_ok {
        return Some(format!("{key:?} is not an address or @domain"));
    }
    if targets.is_empty() {
        return Some(format!("{key:?} has no target (give a string or a non-empty list)"));
    }
    for t in targets {
        let ok = match t.rsplit_once('@') {
            Some((local, domain)) => !local.is_empty() && !local.contains(char::is_whitespace) && ok_domain(domain),
            None => false,
        };
        if !ok {
            return Some(format!("{key:?}: target {t:?} is not an address (user@domain)"));
        }
    }
    None
}

/// Read `path` as TOML `"key" = value` pairs. A missing file is empty
/// when `required` is false (the default `<data_dir>/aliases`). Errors
/// name the file and, where known, the line.
pub fn load_aliases_file(path: &Path, required: bool) -> Result<Vec<(String, Vec<String>)>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => return Ok(Vec::new()),
        Err(e) => return Err(format!("aliases_file {}: cannot read: {e}", path.display())),
    };
    let table: std::collections::BTreeMap<String, toml::Spanned<AliasValue>> = toml::from_str(&text)
        .map_err(|e| format!("aliases_file {}: {}", path.display(), e.to_string().trim_end().replace('\n', " ")))?;
    let mut out: Vec<(usize, String, Vec<String>)> = Vec::with_capacity(table.len());
    for (key, value) in table {
        let line = text[..value.span().start.min(text.len())].matches('\n').count() + 1;
        let targets = value.into_inner().targets();
        if let Some(reason) = alias_problem(&key, &targets) {
            return Err(format!("aliases_file {}: line {line}: {reason}", path.display()));
        }
        out.push((line, key, targets));
    }
    // File order, so that a reader of the expansion sees what they wrote.
    out.sort_by_key(|(line, ..)| *line);
    Ok(out.into_iter().map(|(_, k, t)| (k, t)).collect())
}

/// Read one domain per line; `#` starts a comment; blank lines are
/// skipped. Domains come back lowercased without a trailing dot.
pub fn load_domains_file(path: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("local_domains_file {}: cannot read: {e}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let d = line.split('#').next().unwrap_or_default().trim();
        if d.is_empty() {
            continue;
        }
        if d.contains(|c: char| c.is_whitespace() || c == '@') {
            return Err(format!("local_domains_file {}: line {}: {d:?} is not a domain name", path.display(), i + 1));
        }
        out.push(d.trim_end_matches('.').to_ascii_lowercase());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("ringmail-aliases-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn aliases_file_takes_strings_and_lists_in_file_order() {
        let p = write(
            "ok",
            "\"z@example.net\" = \"a@example.net\"\n\"@example.net\" = [\"b@example.net\", \"c@partner.org\"]\n",
        );
        let got = load_aliases_file(&p, true).unwrap();
        assert_eq!(
            got,
            vec![
                ("z@example.net".to_string(), vec!["a@example.net".to_string()]),
                ("@example.net".to_string(), vec!["b@example.net".to_string(), "c@partner.org".to_string()]),
            ]
        );
    }

    #[test]
    fn bad_target_names_file_line_and_reason() {
        let p = write("bad", "# aliases\n\"a@example.net\" = \"b@example.net\"\n\"c@example.net\" = [\"nope\"]\n");
        let e = load_aliases_file(&p, true).unwrap_err();
        assert!(
            e.contains(&p.display().to_string()) && e.contains("line 3") && e.contains("\"nope\" is not an address"),
            "{e}"
        );
    }

    #[test]
    fn syntax_error_names_the_line() {
        let p = write("syntax", "\"a@example.net\" = \"b@example.net\"\n\"c@example.net\" = 5\n");
        let e = load_aliases_file(&p, true).unwrap_err();
        assert!(e.contains(&p.display().to_string()) && e.contains("line 2"), "{e}");
    }

    #[test]
    fn missing_default_file_is_empty_but_a_named_one_is_an_error() {
        let p = std::env::temp_dir().join("ringmail-no-such-aliases-file");
        assert_eq!(load_aliases_file(&p, false).unwrap(), vec![]);
        assert!(load_aliases_file(&p, true).unwrap_err().contains("cannot read"));
    }

    #[test]
    fn domains_file_skips_comments_and_blank_lines() {
        let p = write("domains", "# ours\nExample.ORG.\n\n  b.test  # second\n");
        assert_eq!(load_domains_file(&p).unwrap(), vec!["example.org".to_string(), "b.test".to_string()]);
        let bad = write("domains-bad", "a.test\nnot a domain\n");
        assert!(load_domains_file(&bad).unwrap_err().contains("line 2"));
    }
}
