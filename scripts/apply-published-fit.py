#!/usr/bin/env python3
"""Writes the efficiency factors fitted to published llama-bench results into the shipped
profiles: `edge profile published --fit --json` (the fit), then each profile's
[efficiency] section gets the fitted factors of its group, under a comment that names
the fit. Factors the fit left at the research anchors (no rows pinned them) are not
written. Run from the repository root:  python3 scripts/apply-published-fit.py
"""
import json, re, subprocess, sys

EDGE = sys.argv[1] if len(sys.argv) > 1 else "target/release/edge"
ANCHORS = {"gpu_bandwidth": 0.7, "cpu_bandwidth": 0.55, "gpu_compute": 0.35, "cpu_compute": 0.5,
           "token_overhead_ms": 0.3, "gpu_node_overhead_ms": 0.0,
           "cpu_type_bandwidth (legacy quants)": 0.55, "cpu_type_bandwidth (floats)": 0.55}
out = subprocess.run([EDGE, "profile", "published", "--fit", "--json"], check=True,
                     capture_output=True, text=True).stdout
report = json.loads(out)
hold = report["holdout"]
MARK = "# Fitted to published llama-bench results"

def fmt(v):
    return f"{v:.4g}" if v >= 0.001 else f"{v:.6f}".rstrip("0")

for fit in report["fits"]:
    factors = {}
    for key, v in fit["factors"].items():
        if key in ANCHORS and abs(v - ANCHORS[key]) < 1e-9:
            continue
        factors[key] = v
    for name in fit["profiles"]:
        path = f"profiles/{name}.toml"
        text = open(path).read()
        head, sep, eff = text.partition("[efficiency]\n")
        assert sep, path
        lines = [l for l in eff.splitlines() if l and not l.startswith(MARK) and not l.startswith("#   ")]
        body = dict(l.split(" = ", 1) for l in lines if " = " in l and not l.startswith("["))
        tables = [l for l in lines if l.startswith("[") or "=" not in l]
        cpu_types = {}
        for key, v in factors.items():
            if key.startswith("cpu_type_bandwidth"):
                types = ["F32", "F16", "BF16"] if "float" in key else ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q8_1"]
                for t in types:
                    cpu_types[t] = v
            else:
                body[key] = fmt(v)
        note = (f"{MARK} (`edge profile published --fit`, group {fit['backend']}:\n"
                f"#   {fit['fit_rows']} fit rows of profiles/measured/llama-bench.csv; factors not listed\n"
                f"#   there stay at the research anchors).\n")
        new = note + "".join(f"{k} = {v}\n" for k, v in body.items())
        if cpu_types:
            new += "\n[efficiency.cpu_type_bandwidth]\n" + "".join(f'{k} = {fmt(v)}\n' for k, v in cpu_types.items())
        open(path, "w").write(head + sep + new)
        print(f"{path}: {', '.join(sorted(factors)) or 'nothing fitted'}")
print(f"held-out: decode {hold['decode']['within']}/{hold['decode']['rows']}, prefill {hold['prefill']['within']}/{hold['prefill']['rows']}")
