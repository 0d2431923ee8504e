//! The CLI's view of the patch driver: `-v` lists every patch as it is applied, `--stop-after N`
//! applies the first N only and says so, and the output is still a valid model.

mod common;
use common::cli::{run, text, tm};
use std::ffi::OsStr;

fn patch_lines(s: &str) -> Vec<&str> {
    s.lines().filter(|l| l.starts_with("patch #")).collect()
}

#[test]
fn verbose_lists_the_patches_and_stop_after_applies_the_first_n() {
    let dir = tempfile::tempdir().unwrap();
    let model = tm("gpt2_ts14_fp32.onnx");
    let full = dir.path().join("full.onnx");
    let o = run(&[
        model.as_os_str(),
        OsStr::new("-o"),
        full.as_os_str(),
        OsStr::new("-v"),
        OsStr::new("--no-verify"),
    ]);
    let all = text(&o);
    assert_eq!(o.status.code(), Some(0), "{all}");
    let lines = patch_lines(&all);
    assert!(lines.len() > 3, "{all}");
    for (k, l) in lines.iter().enumerate() {
        assert!(l.starts_with(&format!("patch #{}: ", k + 1)), "{l}");
    }
    assert!(
        lines.iter().any(|l| l.contains("replace LayerNorm")),
        "{all}"
    );
    assert!(!all.contains("--stop-after"), "{all}");

    let part = dir.path().join("part.onnx");
    let o = run(&[
        model.as_os_str(),
        OsStr::new("-o"),
        part.as_os_str(),
        OsStr::new("-v"),
        OsStr::new("--stop-after"),
        OsStr::new("3"),
        OsStr::new("--no-verify"),
    ]);
    let some = text(&o);
    assert_eq!(o.status.code(), Some(0), "{some}");
    assert_eq!(patch_lines(&some), lines[..3].to_vec(), "{some}");
    assert!(
        some.contains("--stop-after 3: only the first 3 patch(es)"),
        "{some}"
    );
    // A valid model (loading checks the graph), different from the full rewrite.
    onnx_normopt::ir::Model::load(&part).unwrap();
    assert_ne!(std::fs::read(&part).unwrap(), std::fs::read(&full).unwrap());
}

#[test]
fn help_documents_the_driver_flags() {
    let o = run(&[OsStr::new("--help")]);
    let h = text(&o);
    for flag in ["--stop-after <N>", "--check-patches", "-v, --verbose"] {
        assert!(h.contains(flag), "{flag} missing from --help:\n{h}");
    }
}
