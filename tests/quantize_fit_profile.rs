//! `edge quantize --fit PROFILE`: the planner sizes the file for a device profile, and
//! the result then plans as fitting on that device and still answers.

mod common;

use common::*;

const TINY_DEVICE: &str = r#"
# Sources: a made-up 520 MiB device for this test.
name = "tiny-dev"
description = "520 MiB CPU-only device"
backend = "cpu"
[memory]
ram_bytes = "520 MiB"
os_reserve_bytes = "200 MiB"
[cpu]
model = "test"
cores = 2
mem_bandwidth_gbs = 10.0
matmul_gflops = 50.0
[ssd]
seq_read_gbs = 1.0
rand_read_gbs = 0.5
[efficiency]
gpu_bandwidth = 0.7
cpu_bandwidth = 0.5
gpu_compute = 0.3
cpu_compute = 0.5
sync_ms = 0.1
"#;

#[test]
fn fit_profile_sizes_the_file_for_the_device() {
    let f16 = smollm2_as("F16");
    let home = scratch().join("fit-home");
    std::fs::create_dir_all(home.join("profiles")).unwrap();
    std::fs::write(home.join("profiles/tiny-dev.toml"), TINY_DEVICE).unwrap();
    let out = scratch().join("fit-tiny.gguf");
    let o = edge()
        .env("EDGE_HOME", &home)
        .args([
            "quantize",
            f16.to_str().unwrap(),
            out.to_str().unwrap(),
            "--fit",
            "tiny-dev",
            "--allow-requantize",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("tiny-dev holds"), "{}", stderr(&o));
    let size = std::fs::metadata(&out).unwrap().len();
    assert!(
        size < std::fs::metadata(&f16).unwrap().len() * 9 / 10,
        "not reduced: {size}"
    );

    // The F16 original does not fit the device; the fitted file does.
    let plan = |model: &std::path::Path| {
        edge()
            .env("EDGE_HOME", &home)
            .args([
                "plan",
                model.to_str().unwrap(),
                "--profile",
                "tiny-dev",
                "--json",
            ])
            .output()
            .unwrap()
    };
    assert!(!plan(&f16).status.success());
    let o = plan(&out);
    assert!(o.status.success(), "{}", stdout(&o));

    let o = run_edge(&[
        "run",
        out.to_str().unwrap(),
        "Name the capital of France.",
        "--temp",
        "0",
        "--max-tokens",
        "16",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("Paris"), "{}", stdout(&o));

    let o = edge()
        .env("EDGE_HOME", &home)
        .args([
            "quantize",
            f16.to_str().unwrap(),
            out.to_str().unwrap(),
            "--fit",
            "no-such-device",
        ])
        .output()
        .unwrap();
    assert_clean_failure(&o, "unknown profile 'no-such-device'");
}
