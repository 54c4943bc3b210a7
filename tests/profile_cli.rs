//! `edge profile list | show | detect | calibrate` end to end: the real binary, with
//! `EDGE_HOME` (and so the user profile dir `$EDGE_HOME/profiles`) in a temp dir.

mod common;

use std::path::Path;
use std::process::Output;

use common::*;
use edge::profile::{find_profile, DeviceProfile, BUILTIN};

fn profile_cmd(home: &Path, args: &[&str]) -> Output {
    edge()
        .env("EDGE_HOME", home)
        .arg("profile")
        .args(args)
        .output()
        .expect("spawn edge")
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status,
        stdout(o),
        stderr(o)
    );
    stdout(o)
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_str(&ok(o)).expect("JSON on stdout")
}

#[test]
fn list_shows_every_shipped_profile() {
    let home = tempfile::tempdir().unwrap();
    let text = ok(&profile_cmd(home.path(), &["list"]));
    assert_eq!(BUILTIN.len(), 15);
    for (name, _) in BUILTIN {
        assert!(
            text.lines().any(|l| l.starts_with(&format!("{name} "))),
            "{name} missing:\n{text}"
        );
    }
    let rows = json(&profile_cmd(home.path(), &["list", "--json"]));
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), BUILTIN.len());
    for r in rows {
        assert_eq!(r["origin"], "builtin");
        assert!(r["ram_bytes"].as_u64().unwrap() > 0);
        assert!(!r["description"].as_str().unwrap().is_empty());
    }
    let h100 = rows.iter().find(|r| r["name"] == "h100-80gb").unwrap();
    assert_eq!(h100["vram_bytes"].as_u64(), Some(80 << 30));
    let mac = rows
        .iter()
        .find(|r| r["name"] == "macbook-air-m2-16gb")
        .unwrap();
    assert_eq!(mac["unified"], true);
    assert_eq!(mac["vram_bytes"].as_u64(), Some(0));
}

#[test]
fn show_round_trips_through_json_and_toml() {
    let home = tempfile::tempdir().unwrap();
    for name in ["rtx4090-24gb", "jetson-orin-nano-8gb", "raspberry-pi5-8gb"] {
        let want = find_profile(name, None).unwrap();
        let o = profile_cmd(home.path(), &["show", name, "--json"]);
        let got: DeviceProfile = serde_json::from_str(&ok(&o)).unwrap();
        assert_eq!(got, want);
        let o = profile_cmd(home.path(), &["show", name, "--toml"]);
        assert_eq!(DeviceProfile::parse(name, &ok(&o)).unwrap(), want);
        let text = ok(&profile_cmd(home.path(), &["show", name]));
        assert!(text.starts_with(&format!("{name} (builtin)")), "{text}");
    }
}

#[test]
fn unknown_profile_fails_cleanly() {
    let home = tempfile::tempdir().unwrap();
    let o = profile_cmd(home.path(), &["show", "no-such-device"]);
    assert_clean_failure(
        &o,
        "unknown profile 'no-such-device' (see `edge profile list`)",
    );
}

#[test]
fn a_broken_user_profile_fails_cleanly_naming_the_file() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("profiles");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("broken.toml"), "name = \"broken\"\n[memory\n").unwrap();
    let o = profile_cmd(home.path(), &["list"]);
    assert_clean_failure(&o, "broken.toml");
    let o = profile_cmd(home.path(), &["show", "rtx4060-8gb"]);
    assert_clean_failure(&o, "broken.toml");
}

#[test]
fn a_user_profile_shadows_the_shipped_one() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("profiles");
    std::fs::create_dir_all(&dir).unwrap();
    let (_, text) = BUILTIN.iter().find(|(n, _)| *n == "rtx4060-8gb").unwrap();
    let mine = text.replace(
        "description = \"Desktop RTX 4060",
        "description = \"My own RTX 4060",
    );
    assert_ne!(&mine, text);
    std::fs::write(dir.join("rtx4060-8gb.toml"), mine).unwrap();

    let rows = json(&profile_cmd(home.path(), &["list", "--json"]));
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), BUILTIN.len(), "shadowed, not added");
    let r = rows.iter().find(|r| r["name"] == "rtx4060-8gb").unwrap();
    assert_eq!(r["origin"], "user");
    assert!(r["description"].as_str().unwrap().starts_with("My own"));
    let text = ok(&profile_cmd(home.path(), &["show", "rtx4060-8gb"]));
    assert!(text.starts_with("rtx4060-8gb (user)"), "{text}");
    assert!(text.contains("My own RTX 4060"), "{text}");
}

fn meminfo_total() -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap();
    let line = text.lines().find(|l| l.starts_with("MemTotal:")).unwrap();
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb * 1024
}

#[test]
fn detect_describes_this_machine() {
    let home = tempfile::tempdir().unwrap();
    let d = json(&profile_cmd(home.path(), &["detect", "--json"]));
    let total = meminfo_total();
    let ram = d["profile"]["memory"]["ram_bytes"].as_u64().unwrap();
    assert!(ram > 0 && ram <= total, "{ram} vs MemTotal {total}");
    assert!(d["profile"]["cpu"]["cores"].as_u64().unwrap() >= 1);
    assert_eq!(d["origin"], "detected");
    assert_eq!(d["calibrated"], false);
    let avail = d["ram_available_bytes"].as_u64().unwrap();
    assert!(avail <= total);
    // The JSON profile is a valid profile.
    let p: DeviceProfile = serde_json::from_value(d["profile"].clone()).unwrap();
    assert!(p.cpu.mem_bandwidth_gbs > 0.0);
    let text = profile_cmd(home.path(), &["detect"]);
    assert!(stderr(&text).contains("uncalibrated"), "{}", stderr(&text));
}

#[test]
fn calibrate_quick_saves_this_machine() {
    let home = tempfile::tempdir().unwrap();
    let model = smollm2();
    let held_out = synth_model(edge::synth::SynthArch::Llama4);
    let o = profile_cmd(
        home.path(),
        &[
            "calibrate",
            "--quick",
            "--model",
            model.to_str().unwrap(),
            "--validate",
            held_out.to_str().unwrap(),
        ],
    );
    let out = ok(&o);
    assert!(
        out.contains(
            "| model | layers | graph nodes | read/token | measured tok/s | predicted tok/s | error |"
        ),
        "{out}"
    );
    // The held-out model is timed and checked against `edge plan`, not fitted.
    let held_row = out
        .lines()
        .find(|l| l.contains("(held out)"))
        .unwrap_or_else(|| panic!("no held-out row:\n{out}"));
    assert!(held_row.contains("| 4 | 170 |"), "{held_row}");
    assert!(out.contains("held-out models: `edge plan` within"), "{out}");
    let smol_row = out
        .lines()
        .find(|l| l.starts_with("| smollm2-135m-instruct-q4_1.gguf |"))
        .unwrap_or_else(|| panic!("no SmolLM2 row:\n{out}"));
    assert!(smol_row.trim_end().ends_with("% |"), "{smol_row}");
    assert!(
        out.lines().any(|l| l.starts_with("| synth qwen3moe |")),
        "{out}"
    );

    let path = home.path().join("profiles/this-machine.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("# Sources:"), "{text}");
    let p = DeviceProfile::parse("this-machine", &text).unwrap();
    assert_eq!(p.name, "this-machine");
    assert!(p.cpu.mem_bandwidth_gbs > 0.0);
    assert!(p.ssd.seq_read_gbs > 0.0 && p.ssd.rand_read_gbs > 0.0);
    assert!(p.efficiency.cpu_bandwidth > 0.0 && p.efficiency.cpu_bandwidth <= 1.5);
    // Nothing left behind next to the model store.
    let leftovers: Vec<_> = std::fs::read_dir(home.path())
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".edge-calibrate")
        })
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // The calibration is now this machine's profile.
    let text = ok(&profile_cmd(home.path(), &["show", "this-machine"]));
    assert!(text.starts_with("this-machine (user)"), "{text}");
    let d = json(&profile_cmd(home.path(), &["detect", "--json"]));
    assert_eq!(d["calibrated"], true);
    assert_eq!(
        d["profile"]["cpu"]["mem_bandwidth_gbs"].as_f64(),
        Some(p.cpu.mem_bandwidth_gbs)
    );
}
