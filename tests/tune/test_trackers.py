"""Trackers: one real smoke sweep (shared by the module) to s3:// storage on moto's real S3 server,
logging to a local MLflow store (SQLite) and to W&B in offline mode; both read back with the
libraries' own readers (MlflowClient; W&B's offline run files, taken from the bucket). Every run
holds the resolved config, per-epoch metrics, metrics.json's final metrics as its summary and, read
from the bucket, metrics.json, the trial spec, provenance and the gallery as artifacts; its
`artifacts_uri` keeps the s3:// scheme; each run is closed when its trial ends, not at the
experiment's end; W&B's offline run is copied into its trial directory in the bucket."""
import copy
import json
from pathlib import Path

import pytest
from ray_helpers import lico_tune, lico_tune_cleanly, write_spec
from s3_server import bucket_files, moto_s3


def wandb_records(data: bytes):
    """The protobuf records of a W&B run file (a LevelDB-style log: a 7-byte ':W&B' header, then
    32 KiB blocks of chunks with a 7-byte header: crc32, length, type FULL/FIRST/MIDDLE/LAST)."""
    import struct

    from wandb.proto import wandb_internal_pb2 as pb
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


EXPERIMENT = "res/trk"          # in the bucket `lico`


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """Two arms run one after the other (max_concurrent 1), 2 epochs each, into s3://lico/res/trk."""
    from conftest import TINY_TRIAL
    tmp = tmp_path_factory.mktemp("trk")
    tree = copy.deepcopy(TINY_TRIAL)
    tree["train"]["epochs"] = 2
    mlruns = f"sqlite:///{tmp / 'mlflow.db'}"
    spec = write_spec(tmp / "trk.yaml", tree, name="trk", search={"max_concurrent": 1},
                      ablation={"ce": {"lico.alpha": 0, "lico.beta": 0}, "lico": {}},
                      tracking={"mlflow": {"tracking_uri": mlruns, "experiment": "lico-trk"},
                                "wandb": {"project": "lico-trk", "mode": "offline", "dir": str(tmp / "wandb")}})
    with moto_s3(tmp) as env:
        out = lico_tune_cleanly(["run", str(spec), "--storage", "s3://lico/res", "--name", "trk"], timeout=420,
                                WANDB_SILENT="true", **env)
        files = bucket_files(env, "lico", EXPERIMENT + "/")
    assert out.returncode == 0, out.stdout[-5000:]
    trials = {}   # arm -> {name: bytes} of its trial directory in the bucket
    for key, data in files.items():
        trial, _, name = key.removeprefix(EXPERIMENT + "/").partition("/")
        if trial.startswith("trial_") and name:
            trials.setdefault(trial, {})[name] = data
    by_arm = {json.loads(f["params.json"])["arm"]: (t, f) for t, f in trials.items()}
    assert set(by_arm) == {"ce", "lico"}
    return {"tmp": tmp, "mlruns": mlruns, "trials": by_arm}


def test_each_mlflow_run_carries_its_trial_from_the_bucket(sweep):
    from mlflow.tracking import MlflowClient
    tmp, trials = sweep["tmp"], sweep["trials"]
    assert list((tmp / "mlartifacts").iterdir()), "artifacts beside the SQLite store, not in the working dir"
    client = MlflowClient(tracking_uri=sweep["mlruns"])
    runs = client.search_runs([client.get_experiment_by_name("lico-trk").experiment_id])
    assert len(runs) == 2
    for run in runs:
        arm = run.data.params["arm"]
        name, files = trials[arm]
        final = json.loads(files["metrics.json"])
        assert run.info.status == "FINISHED"
        assert run.data.tags["ray.trial_id"] in name
        # The scheme is kept: the tag names the trial directory in the bucket, not a local path.
        assert run.data.tags["artifacts_uri"] == f"s3://lico/{EXPERIMENT}/{name}"
        assert run.data.tags["ray.trial_dir"] == f"s3://lico/{EXPERIMENT}/{name}"
        # The resolved config, not only the searched values: the arm's alpha and the base's epsilon.
        assert float(run.data.params["lico.alpha"]) == (0.0 if arm == "ce" else 1.0)
        assert float(run.data.params["lico.ot.epsilon"]) == 0.1
        acc = client.get_metric_history(run.info.run_id, "test/acc")
        assert sorted(m.step for m in acc) == [1, 2]
        assert max(acc, key=lambda m: m.step).value == final["test/acc"]
        assert run.data.metrics["saliency/gradcam/overall"] == final["saliency/gradcam/overall"]
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"gallery", "trial_spec.yaml", "provenance.json", "metrics.json"} <= artifacts
        for artifact in ("metrics.json", "trial_spec.yaml", "provenance.json"):   # the bucket's bytes
            local = client.download_artifacts(run.info.run_id, artifact, str(tmp / run.info.run_id))
            assert Path(local).read_bytes() == files[artifact]
        gallery = {n for n in files if n.startswith("gallery/") and not n.endswith("/")}   # not folder markers
        assert any(n.endswith(".png") for n in gallery)
        assert set(_mlflow_files(client, run.info.run_id, "gallery")) == gallery


def _mlflow_files(client, run_id: str, path: str) -> list[str]:
    """Every artifact file under path, recursively (list_artifacts lists one level)."""
    out = []
    for a in client.list_artifacts(run_id, path):
        out += _mlflow_files(client, run_id, a.path) if a.is_dir else [a.path]
    return out


def test_each_tracker_run_is_closed_when_its_trial_ends_not_at_the_experiments_end(sweep):
    """The arms ran one after the other: the first trial's runs were closed while the second
    trial was still training (before its last epoch was logged), not when the experiment ended."""
    from mlflow.tracking import MlflowClient
    client = MlflowClient(tracking_uri=sweep["mlruns"])
    first, second = sorted(client.search_runs([client.get_experiment_by_name("lico-trk").experiment_id]),
                           key=lambda r: r.info.start_time)
    second_last_epoch = max(client.get_metric_history(second.info.run_id, "test/acc"), key=lambda m: m.step)
    assert second_last_epoch.step == 2
    assert first.info.end_time < second_last_epoch.timestamp, (first.info, second_last_epoch)
    # W&B: the first run ended (its start + its exit record's runtime) before the second run logged
    # its last epoch (that history row's _timestamp).
    records = _wandb_runs(sweep)
    first_recs, second_recs = records[first.data.params["arm"]], records[second.data.params["arm"]]
    (run,) = [r.run for r in first_recs if r.WhichOneof("record_type") == "run"]
    (exit_,) = [r.exit for r in first_recs if r.WhichOneof("record_type") == "exit"]
    assert exit_.exit_code == 0
    rows = [{i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
            for r in second_recs if r.WhichOneof("record_type") == "history"]
    last_epoch = max((r for r in rows if "epoch" in r), key=lambda r: r["epoch"])
    assert last_epoch["epoch"] == 2
    assert run.start_time.ToSeconds() + exit_.runtime <= last_epoch["_timestamp"], (exit_, last_epoch)


def _wandb_runs(sweep) -> dict[str, list]:
    """arm -> the records of its W&B offline run, read from the copy in its trial directory in the bucket."""
    out = {}
    for arm, (_, files) in sweep["trials"].items():
        run_files = [n for n in files if n.startswith("wandb/offline-run-") and n.endswith(".wandb")]
        assert len(run_files) == 1, sorted(files)
        out[arm] = list(wandb_records(files[run_files[0]]))
    return out


def test_each_wandb_run_is_in_the_bucket_with_typed_config_history_summary_and_artifacts(sweep):
    for arm, recs in _wandb_runs(sweep).items():
        (run,) = [r.run for r in recs if r.WhichOneof("record_type") == "run"]
        config = {i.key: json.loads(i.value_json) for i in run.config.update}
        assert config["arm"] == arm
        history = [{i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
                   for r in recs if r.WhichOneof("record_type") == "history"]
        history = [h for h in history if "epoch" in h]          # W&B adds rows of its own
        final = json.loads(sweep["trials"][arm][1]["metrics.json"])
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
        contents = {c.path for c in arts[0].manifest.contents}
        assert {"metrics.json", "trial_spec.yaml", "provenance.json"} <= contents
        assert any(p.endswith(".png") for p in contents - {"metrics.json", "trial_spec.yaml", "provenance.json"})


def test_a_tracker_store_that_cannot_open_is_refused_before_ray_starts(ray_tmp, tmp_path, tiny_trial_tree):
    spec = write_spec(tmp_path / "bad.yaml", copy.deepcopy(tiny_trial_tree), name="bad",
                      tracking={"mlflow": {"tracking_uri": "nosuchscheme://nowhere"}})
    out = lico_tune(["run", str(spec), "--storage", str(tmp_path / "res")], ray_tmp, timeout=120)
    assert out.returncode == 2, out.stdout[-3000:]
    assert "tracking.mlflow.tracking_uri 'nosuchscheme://nowhere'" in out.stdout
    assert "Traceback" not in out.stdout and not (tmp_path / "res").exists()


def test_a_tracker_that_fails_during_the_sweep_is_dropped_with_one_warning(tmp_path, monkeypatch, capsys):
    """After the preflight, a tracker may still fail (its server stopped): the callback drops that
    tracker with one warning naming it, and the sweep's other hooks go on (no exception into Tune).
    A real MlflowClient against a closed port (asked once: no retries)."""
    from types import SimpleNamespace

    from ray_helpers import free_port

    from lico_tune.spec import TrackingConfig
    from lico_tune.tune.trackers import TrackerCallback
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    tracking = TrackingConfig.model_validate({"mlflow": {"tracking_uri": f"http://127.0.0.1:{free_port()}"}})
    cb = TrackerCallback(tracking, "exp", str(tmp_path), resolve=dict)
    cb.setup()
    err = capsys.readouterr().err
    assert err.count("warning: MLflow logging stopped for this run") == 1, err
    assert str(tmp_path) in err and "Traceback" not in err
    assert cb._dropped == {"MLflow"}
    trial = SimpleNamespace(trial_id="t1", config={"arm": "a"}, last_result={})
    cb.on_trial_result(0, [], trial, {"test/acc": 0.5, "epoch": 1})     # no run, no error, no second warning
    cb.on_experiment_end([])
    assert capsys.readouterr().err == ""


def test_a_local_trial_directory_gives_the_same_artifacts_in_place(tmp_path):
    """Local storage (the sweep above is on s3://): the files are logged from the trial directory
    itself, nested gallery folders included; nothing is copied."""
    from lico_tune.tune.trackers import _artifact_files
    trial = tmp_path / "trial_1"
    (trial / "gallery" / "gradcam").mkdir(parents=True)
    (trial / "gallery" / "gradcam" / "000.png").write_bytes(b"png")
    for name in ("metrics.json", "trial_spec.yaml", "provenance.json"):
        (trial / name).write_text(name)
    files, gallery = _artifact_files(str(trial), tmp_path / "unused")
    assert sorted(f.name for f in files) == ["metrics.json", "provenance.json", "trial_spec.yaml"]
    assert all(f.parent == trial for f in files) and gallery == trial / "gallery"
    (trial / "metrics.json").unlink()
    import shutil
    shutil.rmtree(trial / "gallery")
    assert _artifact_files(str(trial), tmp_path / "unused") == ([trial / "trial_spec.yaml", trial / "provenance.json"], None)
    assert not (tmp_path / "unused").exists()
