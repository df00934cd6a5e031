//! Stamps the binary with the git commit it is built from
//! (`RINGMAIL_COMMIT`, shown by `ringmail_build_info`): `git rev-parse
//! --short HEAD`, or "unknown" where there is no git or no checkout (a
//! source tarball).

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    (out.status.success() && !text.is_empty()).then(|| text.to_string())
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let commit = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".into());
    // Rebuild when HEAD moves: HEAD itself (a checkout), the branch it
    // names and packed-refs (a commit). Only existing files are named:
    // cargo treats a missing one as always changed.
    if let Some(git_dir) = git(&["rev-parse", "--git-dir"]) {
        let common = git(&["rev-parse", "--git-common-dir"]).unwrap_or_else(|| git_dir.clone());
        let mut watch = vec![Path::new(&git_dir).join("HEAD"), Path::new(&common).join("packed-refs")];
        if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
            watch.push(Path::new(&common).join(&branch));
            watch.push(Path::new(&git_dir).join(&branch));
        }
        for path in watch.iter().filter(|p| p.exists()) {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    println!("cargo:rustc-env=RINGMAIL_COMMIT={commit}");
}
