"""Every tracker and storage target is checked before Ray starts, within a bound: the real CLI in
a subprocess (with its own timeout, so a hang fails the test), against a real closed port, a real
S3 server (moto) without the bucket, and an S3 endpoint that does not answer. Each case: exit 2,
one paragraph naming the culprit, no traceback, Ray never started, nothing written."""
import copy
import socket

import pytest
from ray_helpers import free_port, lico_tune, write_spec
from s3_server import moto_s3

BOUND = {"LICO_TUNE_CLOUD_TIMEOUT_S": "3"}


def refused(out, *culprits: str) -> str:
    """The run ended with exit 2 and one paragraph (an `error:` line) that names every culprit."""
    lines = [ln for ln in out.stdout.splitlines() if ln.strip()]
    assert out.returncode == 2, out.stdout[-3000:]
    assert "Traceback" not in out.stdout
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stdout[-3000:]
    for c in culprits:
        assert c in lines[0], lines[0]
    return lines[0]


def ray_not_started(ray_tmp: str) -> None:
    import os
    assert not os.listdir(ray_tmp), f"Ray started (its session files in {ray_tmp}) before the refusal"


@pytest.fixture
def closed_port():
    """A port on 127.0.0.1 that nothing listens on (bound once, then closed)."""
    return free_port()


def test_mlflow_server_on_a_closed_port_is_refused_in_seconds(ray_tmp, tmp_path, tiny_trial_tree, closed_port):
    uri = f"http://127.0.0.1:{closed_port}"
    spec = write_spec(tmp_path / "s.yaml", copy.deepcopy(tiny_trial_tree), name="m",
                      tracking={"mlflow": {"tracking_uri": uri}})
    out = lico_tune(["run", str(spec), "--storage", str(tmp_path / "res")], ray_tmp, timeout=90, **BOUND)
    line = refused(out, f"tracking.mlflow.tracking_uri '{uri}'", "cannot open")
    assert "asked once" in line
    ray_not_started(ray_tmp)
    assert not (tmp_path / "res").exists()


def test_mlflow_server_that_never_answers_is_refused_within_the_bound(ray_tmp, tmp_path, tiny_trial_tree):
    """A server that accepts the connection and then says nothing (a firewall's black hole, a hung
    server): MLflow's own client would wait and retry for minutes."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        uri = f"http://127.0.0.1:{silent.getsockname()[1]}"
        spec = write_spec(tmp_path / "s.yaml", copy.deepcopy(tiny_trial_tree), name="m",
                          tracking={"mlflow": {"tracking_uri": uri}})
        out = lico_tune(["run", str(spec), "--storage", str(tmp_path / "res")], ray_tmp, timeout=90, **BOUND)
    refused(out, f"tracking.mlflow.tracking_uri '{uri}'", "3 s", "LICO_TUNE_CLOUD_TIMEOUT_S")
    ray_not_started(ray_tmp)


def test_wandb_online_without_an_api_key_is_refused_before_ray(ray_tmp, tmp_path, tiny_trial_tree):
    spec = write_spec(tmp_path / "s.yaml", copy.deepcopy(tiny_trial_tree), name="w",
                      tracking={"wandb": {"project": "p", "mode": "online"}})
    out = lico_tune(["run", str(spec), "--storage", str(tmp_path / "res")], ray_tmp, timeout=90,
                    WANDB_API_KEY="", WANDB_IDENTITY_TOKEN_FILE="", WANDB_MODE="", NETRC=str(tmp_path / "no-netrc"),
                    **BOUND)
    refused(out, "tracking.wandb.mode online", "WANDB_API_KEY", "wandb login", "mode: offline")
    ray_not_started(ray_tmp)
    assert not (tmp_path / "res").exists()


def test_wandb_online_with_a_server_that_cannot_be_reached_is_refused_before_ray(ray_tmp, tmp_path, tiny_trial_tree,
                                                                                 closed_port):
    server = f"http://127.0.0.1:{closed_port}"
    spec = write_spec(tmp_path / "s.yaml", copy.deepcopy(tiny_trial_tree), name="w",
                      tracking={"wandb": {"project": "p", "mode": "online"}})
    out = lico_tune(["run", str(spec), "--storage", str(tmp_path / "res")], ray_tmp, timeout=90,
                    WANDB_API_KEY="k" * 40, WANDB_BASE_URL=server, **BOUND)
    refused(out, f"the W&B server {server} cannot be reached", "WANDB_BASE_URL")
    ray_not_started(ray_tmp)


def test_run_into_a_missing_bucket_is_refused_before_ray_naming_the_bucket(ray_tmp, tmp_path, tiny_trial_tree):
    spec = write_spec(tmp_path / "s.yaml", copy.deepcopy(tiny_trial_tree), name="b")
    with moto_s3(tmp_path, buckets=["lico"]) as env:
        out = lico_tune(["run", str(spec), "--storage", "s3://no-such-bucket/res"], ray_tmp, timeout=90,
                        **env, **BOUND)
        refused(out, "--storage 's3://no-such-bucket/res'", "the bucket 'no-such-bucket' does not exist",
                "aws s3 mb s3://no-such-bucket")
        ray_not_started(ray_tmp)
        assert "no AWS credentials" not in out.stdout
        # Without credentials (moto answers unsigned requests; a real bucket would refuse them) the
        # paragraph says none were found.
        no_creds = {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "",
                    "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"), "AWS_CONFIG_FILE": str(tmp_path / "none")}
        out = lico_tune(["run", str(spec), "--storage", "s3://no-such-bucket/res"], ray_tmp, timeout=90,
                        **{**env, **no_creds}, **BOUND)
        refused(out, "the bucket 'no-such-bucket' does not exist", "no AWS credentials were found")
        # The check tells an existing bucket apart: the same run into `lico` gets past it (to the
        # tracker check, which refuses the closed port: no sweep needed to show it).
        spec2 = write_spec(tmp_path / "s2.yaml", copy.deepcopy(tiny_trial_tree), name="b",
                           tracking={"mlflow": {"tracking_uri": f"http://127.0.0.1:{free_port()}"}})
        out = lico_tune(["run", str(spec2), "--storage", "s3://lico/res"], ray_tmp, timeout=90, **env, **BOUND)
        refused(out, "tracking.mlflow.tracking_uri")


@pytest.mark.parametrize("command", ["trust", "resume"])
def test_trust_and_resume_behind_an_endpoint_that_does_not_answer_say_so_within_the_bound(
        ray_tmp, tmp_path, command):
    """An S3 endpoint that accepts connections and never answers: the command says the endpoint does
    not answer (not that the directory 'has no lico_run.yaml'), within the bound."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
        out = lico_tune([command, "s3://lico/res/exp"], ray_tmp, timeout=90, AWS_ENDPOINT_URL=endpoint,
                        AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1",
                        AWS_EC2_METADATA_DISABLED="true", **BOUND)
    line = refused(out, "EXPERIMENT_DIR 's3://lico/res/exp'", "did not answer within 3 s", endpoint)
    assert "lico_run.yaml" not in line
    ray_not_started(ray_tmp)


def test_the_checks_pass_what_works(tmp_path, monkeypatch):
    """The other side of each refusal: W&B online with a key and a server that answers (any HTTP
    status: a real HTTP server on loopback that refuses HEAD with 501), W&B offline with neither,
    and a new local MLflow store (no bound: creating its tables may take seconds)."""
    import http.server
    import threading

    from lico_tune.plan.targets import check_trackers
    from lico_tune.spec import TrackingConfig
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{server.server_port}")
        monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
        monkeypatch.setenv("LICO_TUNE_CLOUD_TIMEOUT_S", "3")
        check_trackers(TrackingConfig.model_validate({"wandb": {"project": "p", "mode": "online"}}))
    finally:
        server.shutdown()
        server.server_close()
    monkeypatch.delenv("WANDB_API_KEY")
    monkeypatch.setenv("NETRC", str(tmp_path / "none"))
    check_trackers(TrackingConfig.model_validate({
        "wandb": {"project": "p", "mode": "offline"},
        "mlflow": {"tracking_uri": f"sqlite:///{tmp_path / 'new.db'}"}}))
    assert (tmp_path / "new.db").is_file()
