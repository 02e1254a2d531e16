"""Trackers: a real smoke sweep logs to a local MLflow store (SQLite) and to W&B in offline mode, and
both are read back with the libraries' own readers (MlflowClient; W&B's offline run files): every
run holds metrics.json (written after the trial's last report) and its final metrics as the run's
summary, and W&B's config keeps the values' types."""
import copy
import json
from pathlib import Path

import yaml
from ray_helpers import lico_tune, trial_dirs, write_spec


def wandb_records(path: Path):
    """The protobuf records of a W&B run file (a LevelDB-style log: a 7-byte ':W&B' header, then
    32 KiB blocks of chunks with a 7-byte header: crc32, length, type FULL/FIRST/MIDDLE/LAST)."""
    import struct

    from wandb.proto import wandb_internal_pb2 as pb
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, buf = 7, 32768, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:                    # a block's tail too short for a header
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        buf = chunk if kind in (1, 2) else buf + chunk
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(buf)
            yield record


def test_smoke_sweep_logs_params_metrics_and_gallery_to_mlflow_and_wandb(ray_tmp, tmp_path, tiny_trial_tree):
    from mlflow.tracking import MlflowClient

    tree = copy.deepcopy(tiny_trial_tree)
    tree["train"]["epochs"] = 2
    mlruns = f"sqlite:///{tmp_path / 'mlflow.db'}"
    spec = write_spec(tmp_path / "trk.yaml", tree, name="trk",
                      ablation={"ce": {"lico.alpha": 0, "lico.beta": 0}, "lico": {}},
                      tracking={"mlflow": {"tracking_uri": mlruns, "experiment": "lico-trk"},
                                "wandb": {"project": "lico-trk", "mode": "offline"}})
    out = lico_tune(["run", str(spec), "--storage", str(tmp_path / "res"), "--name", "trk"], ray_tmp,
                    timeout=300, WANDB_SILENT="true")
    assert out.returncode == 0, out.stdout[-5000:]
    assert list((tmp_path / "mlartifacts").iterdir()), "artifacts beside the SQLite store, not in the working dir"
    experiment = tmp_path / "res" / "trk"
    trials = {yaml.safe_load((t / "params.json").read_text())["arm"]: t for t in trial_dirs(experiment)}
    assert set(trials) == {"ce", "lico"}

    client = MlflowClient(tracking_uri=mlruns)
    exp = client.get_experiment_by_name("lico-trk")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 2
    for run in runs:
        arm = run.data.params["arm"]
        trial_dir = trials[arm]
        assert run.info.status == "FINISHED"
        assert run.data.tags["ray.trial_id"] in trial_dir.name
        # The resolved config, not only the searched values: the arm's alpha and the base's epsilon.
        assert float(run.data.params["lico.alpha"]) == (0.0 if arm == "ce" else 1.0)
        assert float(run.data.params["lico.ot.epsilon"]) == 0.1
        acc = client.get_metric_history(run.info.run_id, "test/acc")
        assert sorted(m.step for m in acc) == [1, 2]
        final = json.loads((trial_dir / "metrics.json").read_text())
        assert max(acc, key=lambda m: m.step).value == final["test/acc"]
        assert run.data.metrics["saliency/gradcam/overall"] == final["saliency/gradcam/overall"]
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"gallery", "trial_spec.yaml", "provenance.json", "metrics.json"} <= artifacts
        local = client.download_artifacts(run.info.run_id, "metrics.json", str(tmp_path / run.info.run_id))
        assert json.loads(Path(local).read_text())["test/acc"] == final["test/acc"]
        gallery = {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "gallery")}
        assert gallery and gallery == {p.name for p in (trial_dir / "gallery").iterdir()}

    wandb_runs = sorted((experiment / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(wandb_runs) == 2
    for run_file in wandb_runs:
        recs = list(wandb_records(run_file))
        (run,) = [r.run for r in recs if r.WhichOneof("record_type") == "run"]
        config = {i.key: json.loads(i.value_json) for i in run.config.update}
        history = [{i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
                   for r in recs if r.WhichOneof("record_type") == "history"]
        history = [h for h in history if "epoch" in h]          # W&B adds rows of its own
        final = json.loads((trials[config["arm"]] / "metrics.json").read_text())
        # Typed: a number stays a number (W&B makes a string a categorical axis).
        assert config["lico.ot.epsilon"] == 0.1 and isinstance(config["lico.ot.epsilon"], float)
        assert config["train.epochs"] == 2 and isinstance(config["train.epochs"], int)
        assert config["eval.cams"] == ["gradcam"]
        assert [h["epoch"] for h in history] == [1, 2]
        summary = {}
        for r in recs:
            if r.WhichOneof("record_type") == "summary":
                summary.update({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.summary.update})
        assert summary["test/acc"] == final["test/acc"] and summary["val/acc"] == final["val/acc"]
        assert history[-1]["test/acc"] == final["test/acc"]
        assert history[-1]["saliency/gradcam/overall"] == final["saliency/gradcam/overall"]
        arts = [r.artifact for r in recs if r.WhichOneof("record_type") == "artifact"]
        assert arts and arts[0].type == "saliency-gallery"
        assert {"metrics.json", "trial_spec.yaml", "provenance.json"} <= {c.path for c in arts[0].manifest.contents}


def test_a_tracker_store_that_cannot_open_is_refused_before_ray_starts(ray_tmp, tmp_path, tiny_trial_tree):
    spec = write_spec(tmp_path / "bad.yaml", copy.deepcopy(tiny_trial_tree), name="bad",
                      tracking={"mlflow": {"tracking_uri": "nosuchscheme://nowhere"}})
    out = lico_tune(["run", str(spec), "--storage", str(tmp_path / "res")], ray_tmp, timeout=120)
    assert out.returncode == 2, out.stdout[-3000:]
    assert "tracking.mlflow.tracking_uri 'nosuchscheme://nowhere'" in out.stdout
    assert "Traceback" not in out.stdout and not (tmp_path / "res").exists()
