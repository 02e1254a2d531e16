"""A real S3 server for tests: moto's server (the dev extra) on 127.0.0.1, started and stopped by
PID; every lico-tune process and Ray worker a test starts reaches it through AWS_ENDPOINT_URL,
as pyarrow's S3 filesystem (lico_tune/storage, Ray Tune) and boto3 both read it.

    with moto_s3(tmp_path, buckets=["lico"]) as env:   # env: the AWS_* variables to pass on
        lico_tune([... "--storage", "s3://lico/res"], ray_tmp, **env)
"""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

from ray_helpers import free_port


@contextlib.contextmanager
def moto_s3(log_dir: Path, buckets=("lico",)) -> Iterator[dict]:
    port = free_port()
    log = open(log_dir / f"moto-{port}.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_EC2_METADATA_DISABLED": "true"}
    try:
        deadline = time.time() + 60
        while True:                  # wait for the port (moto imports Flask and its models first)
            assert proc.poll() is None, (log_dir / f"moto-{port}.log").read_text()[-3000:]
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            assert time.time() < deadline, "moto's S3 server did not open its port within 60 s"
            time.sleep(0.2)
        import boto3
        s3 = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
        for b in buckets:
            s3.create_bucket(Bucket=b)
        yield env
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        log.close()


def bucket_files(env: dict, bucket: str, prefix: str = "") -> dict[str, bytes]:
    """Every object under s3://bucket/prefix -> its bytes (read with boto3, not lico-tune's own reader)."""
    import boto3
    s3 = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            out[obj["Key"]] = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
    return out
