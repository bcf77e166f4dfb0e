//! The GPU cold-start counts of `segadapt bench --cold`, on whatever Vulkan adapter the machine
//! has (Mesa's lavapipe in CI): one matrix product is one autotuned key, and with the persistent
//! kernel cache a second process runs none of its candidates again (without the `autotune`
//! feature, neither process tunes anything).

use std::process::Command;

use serde_json::Value;

#[test]
fn second_launch_reuses_the_autotune_result_of_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("cold.json");
    let out = Command::new(env!("CARGO_BIN_EXE_segadapt"))
        .args(["--device", "gpu", "bench", "--cold", "matmul", "--cold-dir"])
        .arg(dir.path())
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("no usable GPU adapter")
        && std::env::var_os("SEGADAPT_REQUIRE_GPU").is_none()
    {
        eprintln!("skipped: no Vulkan adapter on this machine (install mesa-vulkan-drivers)");
        return;
    }
    assert!(out.status.success(), "bench --cold failed: {stderr}");
    let report: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let records = report["records"].as_array().unwrap();
    let launch = |name: &str| {
        records
            .iter()
            .find(|r| r["launch"] == name)
            .unwrap_or_else(|| panic!("no {name} launch in {report}"))
    };
    let (first, second) = (launch("first"), launch("second"));
    if !cfg!(feature = "autotune") {
        // Every op takes its default kernel: nothing is tuned in either process.
        for l in [first, second] {
            assert_eq!(l["autotune_keys"], 0, "{l}");
            assert_eq!(l["autotune_candidates"], 0, "{l}");
            assert!(l["kernels_compiled"].as_u64().unwrap() >= 1, "{l}");
        }
        return;
    }
    // One matmul of one shape: exactly one tuned key, several candidates tried for it.
    assert_eq!(first["autotune_keys"], 1, "{first}");
    assert!(
        first["autotune_candidates"].as_u64().unwrap() > 1,
        "{first}"
    );
    assert!(first["kernels_compiled"].as_u64().unwrap() >= 1, "{first}");
    if cfg!(feature = "kernel-cache") {
        assert_eq!(second["autotune_keys"], 0, "{second}");
        assert_eq!(second["autotune_candidates"], 0, "{second}");
    } else {
        // Nothing persists: the second process tunes the same key again.
        assert_eq!(second["autotune_keys"], 1, "{second}");
        assert_eq!(
            second["autotune_candidates"], first["autotune_candidates"],
            "{second}"
        );
    }
}
