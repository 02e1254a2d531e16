"""The trackers a run writes to, checked before Ray starts, each within a bound.

`check_trackers(tracking)` (called by preflight.py, before Ray starts): for the spec's `tracking` section
- MLflow: the library is installed and its store opens (one search); a store over the network
  (a server, a database host) must answer within cloud_timeout_s() ($LICO_TUNE_CLOUD_TIMEOUT_S),
  asked once: a server on a closed port or an unreachable host is refused in seconds (MLflow's
  own client retries for minutes);
- W&B online: the library is installed, an API key is found where W&B looks for one
  (WANDB_API_KEY, WANDB_IDENTITY_TOKEN_FILE, ~/.netrc for the server's host), and the server
  (WANDB_BASE_URL, default https://api.wandb.ai) answers within the same bound. Offline and
  disabled modes need neither.
Storage roots are checked by userpaths.check_reachable (the endpoint answers, the bucket exists).
Raises SpecError naming the spec field, what failed and the fix (the CLI exits 2). No Ray import.
"""
from __future__ import annotations

import os
import re
import threading
from typing import Callable, Optional

from ..errors import SpecError
from ..storage.userpaths import cloud_timeout_s

WANDB_DEFAULT_URL = "https://api.wandb.ai"
LOCAL_STORES = ("", "file", "sqlite")        # MLflow tracking URIs without a network (a path has no scheme)


def check_trackers(tracking) -> None:
    if tracking.mlflow is not None:
        check_mlflow(tracking.mlflow)
    if tracking.wandb is not None:
        check_wandb(tracking.wandb)


def _scheme(uri: str) -> str:
    return uri.split(":", 1)[0].lower() if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", uri) else ""


def _bounded(call: Callable[[], None], timeout_s: Optional[float]) -> Optional[str]:
    """Run call in a daemon thread; None when it returned within timeout_s (None: no bound), else why
    not (its error's first line, or that it did not answer). A client blocked in a connect cannot
    hold the driver longer."""
    result: list[Optional[str]] = [f"no answer within {timeout_s:g} s" if timeout_s is not None else "no answer"]

    def run() -> None:
        try:
            call()
            result[0] = None
        except Exception as exc:   # any store error: a bad URI, a refused connection, a 403
            text = str(exc).strip()
            result[0] = (text.splitlines()[0][:300] if text else type(exc).__name__)

    t = threading.Thread(target=run, daemon=True, name="lico-tune-tracker-check")
    t.start()
    t.join(timeout_s)
    return result[0]


def check_mlflow(cfg) -> None:
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise SpecError("tracking.mlflow: MLflow is not installed; pip install 'lico-tune[mlflow]', "
                        "or remove the tracking.mlflow section.") from None
    uri = cfg.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    # A local store (a file path, file:, sqlite:) has no network to wait for, but may take a while to
    # create its tables: it is opened without a bound; any other store within the bound.
    timeout = cloud_timeout_s() if uri and _scheme(uri) not in LOCAL_STORES else None
    # One try, cut at the bound: MLflow's client reads these at each request (rest_utils.http_request).
    saved = {k: os.environ.get(k) for k in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")}
    if timeout is not None:
        os.environ.update(MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT=str(max(1, int(timeout))))
    try:
        why = _bounded(lambda: MlflowClient(tracking_uri=cfg.tracking_uri).search_experiments(max_results=1),
                       timeout)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    if why is not None:
        where = f"tracking.mlflow.tracking_uri {uri!r}" if cfg.tracking_uri else (
            f"MLFLOW_TRACKING_URI {uri!r}" if uri else "tracking.mlflow (MLflow's default store)")
        waited = f"; asked once, waited at most {timeout:g} s" if timeout is not None else ""
        raise SpecError(f"{where}: MLflow cannot open this store ({why}{waited}). "
                        f"Start the server or check the host and port, or use a local database "
                        f"(sqlite:////abs/path/mlflow.db). ($LICO_TUNE_CLOUD_TIMEOUT_S sets the wait.)")


def wandb_api_key_source(base_url: str) -> Optional[str]:
    """Where W&B would find credentials for base_url (an environment variable or ~/.netrc), or None."""
    for name in ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE"):
        if os.environ.get(name):
            return name
    try:
        from wandb.sdk.lib.wbauth.wbnetrc import read_netrc_auth
        return "netrc" if read_netrc_auth(host=base_url) else None
    except ImportError:           # another W&B version: the standard netrc lookup W&B itself makes
        import netrc
        from urllib.parse import urlsplit
        try:
            return "netrc" if netrc.netrc(os.environ.get("NETRC")).authenticators(urlsplit(base_url).hostname) else None
        except (OSError, netrc.NetrcParseError):
            return None
    except Exception:             # a key W&B itself would refuse (malformed): let wandb.init say so
        return "netrc"


def _answers(url: str, timeout_s: float) -> None:
    """Raises unless the server at url answers an HTTP request (any status: it is there)."""
    import urllib.error
    import urllib.request
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD", headers={"User-Agent": "lico-tune"}),
                               timeout=timeout_s).close()
    except urllib.error.HTTPError:
        pass


def check_wandb(cfg) -> None:
    try:
        import wandb  # noqa: F401
    except ImportError:
        raise SpecError("tracking.wandb: W&B is not installed; pip install 'lico-tune[wandb]', "
                        "or remove the tracking.wandb section.") from None
    if cfg.mode != "online":
        return
    base_url = os.environ.get("WANDB_BASE_URL") or WANDB_DEFAULT_URL
    offline = "or set tracking.wandb.mode: offline (runs are kept for a later `wandb sync`)"
    if wandb_api_key_source(base_url) is None:
        raise SpecError(f"tracking.wandb.mode online: no W&B API key for {base_url} (WANDB_API_KEY is not set and "
                        f"~/.netrc has none for that host). Run `wandb login` or set WANDB_API_KEY, {offline}.")
    timeout = cloud_timeout_s()
    why = _bounded(lambda: _answers(base_url, timeout), timeout)
    if why is not None:
        raise SpecError(f"tracking.wandb.mode online: the W&B server {base_url} cannot be reached ({why}). "
                        f"Check the network (or WANDB_BASE_URL), {offline}. ($LICO_TUNE_CLOUD_TIMEOUT_S sets the wait.)")
