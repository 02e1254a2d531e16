"""What Ray Tune costs a lico-tune sweep, and the quick start's throughput on 1 node vs a 2-node
loopback cluster, measured in one run.

1. Overhead per trial: wall time of `Tuner.fit()` over N trivial trials (each reports one result,
   with and without a small checkpoint, as lico trials do each epoch), divided by N; `ray.init`
   is timed separately. Trials take 1 CPU, so they run as many at a time as the machine has cores.
2. Quick-start trials per hour: `lico-tune run search_spaces/quickstart.yaml` (8 trials) on a local
   Ray (1 node) and on a loopback cluster of two `ray start` nodes with 1 CPU each (the same 2
   cores, so a fair comparison of the cluster path, not of more hardware). `--workload short`
   (default) clamps every trial to 1 epoch on 1,024 images, so start-up and scheduling dominate;
   `--workload full` runs the quick start as shipped (several minutes per run). The two set-ups
   alternate `--repeats` times, so that load from other users of the machine hits both alike.

    python benchmarks/sweep.py                      # N=20 trivial trials + the short quick start, 2x each
    python benchmarks/sweep.py --workload full --repeats 1   # the full quick start on both
    python benchmarks/sweep.py --smoke-test         # N=4, the 2-trial smoke quick start

Each Ray instance lives in a private RAY_TMPDIR; only the processes started here are stopped.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from ray_helpers import free_port, kill_started, private_tmpdir, ray_env, result_rows, trial_dirs  # noqa: E402

OVERHEAD_CODE = r"""
import json, os, sys, tempfile, time
t0 = time.perf_counter()
import ray
from ray import tune
ray.init(num_cpus=int(sys.argv[2]), include_dashboard=False, logging_level="ERROR")
t_init = time.perf_counter() - t0
n, with_ckpt, storage, reuse = int(sys.argv[1]), sys.argv[3] == "1", sys.argv[4], sys.argv[5] == "1"

def trivial(config):
    if with_ckpt:
        d = tempfile.mkdtemp()
        with open(os.path.join(d, "checkpoint.pt"), "wb") as f:
            f.write(b"0" * 100_000)
        tune.report({"score": config["i"]}, checkpoint=tune.Checkpoint.from_directory(d))
    else:
        tune.report({"score": config["i"]})

t1 = time.perf_counter()
results = tune.Tuner(tune.with_resources(trivial, {"cpu": 1}), param_space={"i": tune.grid_search(list(range(n)))},
                     tune_config=tune.TuneConfig(reuse_actors=reuse),
                     run_config=tune.RunConfig(storage_path=storage, name="trivial", verbose=0)).fit()
wall = time.perf_counter() - t1
assert len(results) == n and not results.errors
print(json.dumps({"init_s": t_init, "fit_s": wall}))
ray.shutdown()
"""


def overhead(n: int, cpus: int, with_ckpt: bool, reuse: bool) -> dict:
    tmp, storage = private_tmpdir(), tempfile.mkdtemp(prefix="lico-bench-")
    try:
        out = subprocess.run([sys.executable, "-c", OVERHEAD_CODE, str(n), str(cpus), "1" if with_ckpt else "0",
                              storage, "1" if reuse else "0"], env=ray_env(tmp, RAY_AIR_NEW_OUTPUT="0"), capture_output=True, text=True,
                             timeout=1200)
        if out.returncode:
            raise SystemExit(f"trivial sweep failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
        import json
        return json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        kill_started([tmp])
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(storage, ignore_errors=True)


def start_loopback_cluster() -> tuple[str, list[str]]:
    head, worker = private_tmpdir(), private_tmpdir()
    port = free_port()
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--num-gpus=0", "--disable-usage-stats"]
    ray = [sys.executable, "-m", "ray.scripts.scripts", "start"]
    for tmp, extra in ((head, ["--head", f"--port={port}", "--include-dashboard=false"]),
                       (worker, [f"--address=127.0.0.1:{port}"])):
        out = subprocess.run([*ray, *common, f"--temp-dir={tmp}", f"--dashboard-agent-listen-port={free_port()}",
                              f"--metrics-export-port={free_port()}", *extra], env=ray_env(tmp),
                             capture_output=True, text=True, timeout=120)
        if out.returncode:
            kill_started([head, worker])
            raise SystemExit(f"ray start failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    time.sleep(3)  # the worker's raylet registers with the head
    return f"127.0.0.1:{port}", [head, worker]


def quickstart(workload: str, address: str | None, tmp: str) -> dict:
    storage = tempfile.mkdtemp(prefix="lico-bench-")
    spec = REPO / "search_spaces" / "quickstart.yaml"
    if workload == "short":   # 1 epoch on 1,024 training images per trial
        tree = yaml.safe_load(spec.read_text())
        tree["base"]["train"]["epochs"] = 1
        tree["base"]["data"]["train_subset"] = 1024
        spec = Path(storage) / "quickstart-short.yaml"
        spec.write_text(yaml.safe_dump(tree, sort_keys=False))
    args = ["run", str(spec), "--storage", storage, "--name", "qs"]
    if workload == "smoke":
        args.append("--smoke-test")
    if address:
        args += ["--address", address]
    try:
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "lico_tune.cli", *args], cwd=REPO, env=ray_env(tmp),
                             capture_output=True, text=True, timeout=3600)
        wall = time.perf_counter() - t0
        if out.returncode:
            raise SystemExit(f"quick start failed ({out.returncode}):\n{out.stdout[-4000:]}\n{out.stderr[-2000:]}")
        experiment = next(p for p in Path(storage).iterdir() if p.is_dir())
        trials = trial_dirs(experiment)
        # time_total_s: the trial function's own time (data, model, training), without actor start-up
        busy = sum(result_rows(t)[-1]["time_total_s"] for t in trials)
        summary = out.stdout[out.stdout.index("== Summary"):]
        return {"trials": len(trials), "wall_s": wall, "trials_per_hour": len(trials) / wall * 3600,
                "busy_s": busy, "summary": summary}
    finally:
        shutil.rmtree(storage, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=20, help="trivial trials for the overhead measurement")
    ap.add_argument("--workload", choices=["short", "full", "smoke"], default="short")
    ap.add_argument("--smoke-test", action="store_true", help="N=4 and the 2-trial smoke quick start")
    ap.add_argument("--repeats", type=int, default=2, help="quick-start runs per set-up, alternated")
    ap.add_argument("--skip-quickstart", action="store_true")
    a = ap.parse_args()
    if a.smoke_test:
        a.n, a.workload, a.repeats = 4, "smoke", 1
    import ray
    import torch
    cpus = os.cpu_count() or 1
    print(f"# {datetime.date.today()} | {platform.processor() or platform.machine()}, {cpus} CPU cores, "
          f"load average {os.getloadavg()[0]:.1f} | Python {platform.python_version()}, Ray {ray.__version__}, "
          f"torch {torch.__version__}")

    for ckpt, reuse in ((False, False), (True, False), (True, True)):
        r = overhead(a.n, cpus, ckpt, reuse)
        print(f"trivial trials{' + checkpoint' if ckpt else ''}{', actors reused' if reuse else ''}: "
              f"N={a.n}, ray.init {r['init_s']:.1f} s, "
              f"Tuner.fit {r['fit_s']:.1f} s -> overhead {r['fit_s'] / a.n:.2f} s per trial "
              f"({cpus} at a time; target <= 2 s)", flush=True)
    if a.skip_quickstart:
        return

    def one_node() -> dict:
        tmp = private_tmpdir()
        try:
            return quickstart(a.workload, None, tmp)
        finally:
            kill_started([tmp])
            shutil.rmtree(tmp, ignore_errors=True)

    def two_nodes() -> dict:
        address, dirs = start_loopback_cluster()
        try:
            return quickstart(a.workload, address, dirs[0])
        finally:
            kill_started(dirs)
            for d in dirs:
                shutil.rmtree(d, ignore_errors=True)

    # Alternate the two set-ups so that the machine's load (shared cores) hits both alike.
    runs: dict[str, list[dict]] = {"1 node (local Ray, 2 CPUs)": [], "2-node loopback cluster (1 CPU each)": []}
    for _ in range(a.repeats):
        for label, fn in zip(runs, (one_node, two_nodes)):
            load = os.getloadavg()[0]
            r = fn()
            r["load"] = load
            runs[label].append(r)
            print(f"quick start ({a.workload}) on {label}: {r['trials']} trials in {r['wall_s']:.0f} s "
                  f"-> {r['trials_per_hour']:.0f} trials/hour (load average {load:.1f} at start); trial "
                  f"functions busy {r['busy_s']:.0f} s of {2 * r['wall_s']:.0f} CPU-slot seconds "
                  f"({r['busy_s'] / (2 * r['wall_s']):.0%})", flush=True)
    med = {label: statistics.median(r["trials_per_hour"] for r in rs) for label, rs in runs.items()}
    (l1, m1), (l2, m2) = med.items()
    print(f"median of {a.repeats}: {l1} {m1:.0f} trials/hour, {l2} {m2:.0f} trials/hour, ratio {m2 / m1:.2f}")
    one = runs[l1][0]
    print("\nsummary of the 1-node run:" + one["summary"])


if __name__ == "__main__":
    main()
