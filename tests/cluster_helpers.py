"""Ray nodes on loopback for the cluster tests: `ray start` with a private temp dir (so that
ray_helpers.kill_started finds every process it and its autoscaler start), and the nodes alive."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from ray_helpers import free_port, ray_env

RAY = [sys.executable, "-m", "ray.scripts.scripts"]


def start_node(tmpdir: str, *args: str, cpus: int = 1, **env: str) -> None:
    cmd = [*RAY, "start", "--node-ip-address=127.0.0.1", f"--num-cpus={cpus}", "--num-gpus=0",
           f"--temp-dir={tmpdir}", "--disable-usage-stats", f"--dashboard-agent-listen-port={free_port()}",
           f"--metrics-export-port={free_port()}", *args]
    out = subprocess.run(cmd, env=ray_env(tmpdir, **env), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]


def alive_nodes(address: str, tmpdir: str) -> list[dict]:
    code = ("import json, ray; ray.init(address=%r, logging_level='ERROR'); "
            "print(json.dumps([{'id': n['NodeID'], 'cpu': n['Resources'].get('CPU', 0), "
            "'gpu': n['Resources'].get('GPU', 0)} for n in ray.nodes() if n['Alive']]))" % address)
    out = subprocess.run([sys.executable, "-c", code], env=ray_env(tmpdir), capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def pids_naming(text: str) -> list[int]:
    """Processes whose command line names `text` (e.g. a test's temp dir): none may outlive a test."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found
