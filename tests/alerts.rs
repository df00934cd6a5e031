//! The alerting rules in tuning/alerts.yml are valid and do what their
//! unit tests (tuning/alerts.test.yml) say: `promtool test rules`.

use std::path::Path;
use std::process::Command;

fn promtool(args: &[&str]) -> std::process::Output {
    Command::new("promtool")
        .args(args)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("tuning"))
        .output()
        .expect("promtool (Debian package prometheus; tests/run.sh installs it)")
}

fn assert_ok(out: &std::process::Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn alert_rules_pass_their_promtool_unit_tests() {
    assert_ok(&promtool(&["check", "rules", "alerts.yml"]), "promtool check rules");
    assert_ok(&promtool(&["test", "rules", "alerts.test.yml"]), "promtool test rules");
}

#[test]
fn every_alert_has_a_unit_test_and_a_readme_entry() {
    let tuning = Path::new(env!("CARGO_MANIFEST_DIR")).join("tuning");
    let rules = std::fs::read_to_string(tuning.join("alerts.yml")).unwrap();
    let tests = std::fs::read_to_string(tuning.join("alerts.test.yml")).unwrap();
    let readme = std::fs::read_to_string(tuning.join("README.md")).unwrap();
    let names: Vec<&str> = rules.lines().filter_map(|l| l.trim().strip_prefix("- alert: ")).collect();
    assert!(names.len() >= 10, "{names:?}");
    for name in names {
        assert!(tests.contains(&format!("alertname: {name}\n")), "{name} has no case in alerts.test.yml");
        assert!(readme.contains(&format!("`{name}`")), "{name} is not described in tuning/README.md");
    }
}
