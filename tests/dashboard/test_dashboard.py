"""The Streamlit dashboard: every page through streamlit.testing.v1.AppTest against the results of
a real smoke sweep (tables equal the report's, charts present, selectors change the view; empty,
partly written and damaged roots give friendly pages), and `lico-tune dashboard` end to end in a
headless Chromium."""
import io
import json
import shutil
import sys

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from lico_tune.results import experiment_report, load_results, pareto_mask
from lico_tune.results.report import SEP, default_metrics
from ray_helpers import REPO

APP = REPO / "dashboards" / "app.py"
# One definition of the session fixtures for every module (an import would make one per module).
pytest_plugins = ["results_fixtures"]

EXP = "ablation-smoke"
sys.path.insert(0, str(REPO / "dashboards"))


def open_page(root, monkeypatch, page: str = "experiments") -> AppTest:
    monkeypatch.setenv("LICO_TUNE_STORAGE", str(root))
    at = AppTest.from_file(str(APP), default_timeout=120).run()
    if page != "experiments":
        at.switch_page(f"views/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == page.capitalize()
    return at


def charts(at: AppTest) -> list:
    return list(at.get("vega_lite_chart"))


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def test_experiments_page(results_root, monkeypatch):
    at = open_page(results_root, monkeypatch)
    overview = at.dataframe[0].value
    assert overview.iloc[0][["experiment", "trials", "finished", "errored"]].tolist() == [EXP, 12, 8, 4]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Finished"] == "8" and metrics["Errored"] == "4" and metrics["Running"] == "0"
    assert overview.iloc[0]["state"] == "finished" and overview.iloc[0]["interrupted"] == 0
    # No headline selects on test: this experiment has no validation split, so it headlines nothing.
    assert not [k for k in metrics if "test/" in k] and not [c for c in overview.columns if "test/" in c]
    assert "would select on test" in texts(at.info)
    assert "None" not in overview.astype(str).to_numpy().ravel().tolist()
    assert len(at.error) == 4 and all("TrialDiverged: Loss became nan" in e.value for e in at.error)
    trials = at.dataframe[1].value
    assert len(trials) == 12 and set(trials["status"]) == {"finished", "errored"}
    # The searched epsilon is shown; the grid axes that repeat dataset and seed are not (1400 px).
    assert "lico.ot.epsilon" in trials.columns and not {"data.name", "train.seed"} & set(trials.columns)
    # Where each started trial ran: this machine, one Ray node (its id cut to 10 characters).
    import socket
    ran = trials[trials["status"] == "finished"]
    assert set(ran["host"]) == {socket.gethostname()} and ran["node"].str.fullmatch("[0-9a-f]{10}").all()
    assert "error" in trials.columns                         # 4 errored trials: their reasons are shown
    assert overview.iloc[0]["created"][:4].isdigit() and len(overview.iloc[0]["created"]) <= 16
    spec = texts(at.code)
    assert "name: ablation-smoke" in spec and "lico.ot.epsilon" in spec and "broken" in spec


def test_ablations_page_shows_the_reports_numbers(results_root, monkeypatch):
    at = open_page(results_root, monkeypatch, "ablations")
    assert [s.value for s in at.subheader][:1] == ["Ablation table"]
    res = load_results(results_root)
    rep = experiment_report(res, EXP, metrics=default_metrics(res.experiment(EXP), EXP), baseline="ce")
    shown = at.dataframe[0].value
    expected = rep.ablation_table().T          # rows: dataset · metric; columns: arms (never cut off)
    assert list(shown.columns) == list(expected.columns) and list(shown.index) == list(expected.index)
    assert shown.to_numpy().tolist() == expected.to_numpy().tolist()
    assert len(charts(at)) >= 2 * len(rep.metrics), "a bar chart per dataset and metric"
    paired, expected_paired = at.dataframe[1].value, rep.paired_table()
    notes = set(expected_paired.pop("note")) - {""}
    says_something = [c for c in expected_paired.columns if not (expected_paired[c].astype(str) == "–").all()]
    assert "p (Wilcoxon)" not in says_something      # n = 2: Wilcoxon not run, a column of '–' (left out)
    assert sorted(paired.columns) == sorted(says_something)           # no note column: it would not fit 1400 px
    assert list(paired.columns).index("verdict") == list(paired.columns).index("mean diff") + 1
    for c in paired.columns:
        assert paired[c].tolist() == expected_paired[c].tolist(), c
    captions = " ".join(c.value for c in at.caption)
    import common
    assert notes and all(f"Note: {common.md(n)}" in captions for n in notes)     # the notes, as sentences below (as text)
    assert any("Small n" in w.value and "df = 1" in w.value for w in at.warning), "n = 2 seeds: a small-n warning"

    at.text_input(key="abl_margin").set_value("test/acc=50").run()
    assert not at.exception
    assert "p (TOST)" in at.dataframe[1].value.columns
    at.text_input(key="abl_margin").set_value("test/acc=wide").run()
    assert any("METRIC=NUMBER" in e.value for e in at.error)
    at.text_input(key="abl_margin").set_value("").run()

    at.selectbox(key="abl_dataset").set_value("digits").run()
    assert not at.exception
    table = at.dataframe[0].value
    assert list(table.index) == [c for c in expected.index if c.startswith(f"digits{SEP}")]
    assert set(at.dataframe[1].value["dataset"]) == {"digits"}
    at.multiselect(key="abl_metrics").set_value(["test/acc"]).run()
    assert list(at.dataframe[0].value.index) == [f"digits{SEP}test/acc"]


def test_hyperparameters_page(results_root, monkeypatch):
    at = open_page(results_root, monkeypatch, "hyperparameters")
    heads = [s.value for s in at.subheader]
    assert heads[0] == "test/acc against each searched parameter" and "Parameter importance" in heads
    # One dataset at a time (digits first): the dataset is no parameter, nor is the seed in the importance.
    assert at.selectbox(key="hp_dataset").value == "digits" and at.selectbox(key="hp_dataset").options == \
        ["digits", "fashion_mnist"]
    n = len(charts(at))
    assert n == 3, "one parameter plot (lico.ot.epsilon), the importance and the Pareto front"
    (pc,) = at.get("plotly_chart")
    pc_spec = json.loads(pc.proto.spec)
    dims = pc_spec["data"][0]["dimensions"]
    assert [d["label"] for d in dims] == ["lico.ot.epsilon (log)", "test/acc"] and pc_spec["data"][0]["type"] == "parcoords"
    # epsilon is searched loguniform: its axis is log10, its ticks read as the values.
    eps = load_results(results_root).usable.query("dataset == 'digits'")["lico.ot.epsilon"]
    import base64

    import numpy as np
    values = dims[0]["values"]              # plotly >= 6 sends arrays as {dtype, bdata (base64)}
    if isinstance(values, dict):
        values = np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"]).tolist()
    assert sorted(values) == pytest.approx(sorted(np.log10(eps)))
    assert dims[0]["ticktext"] == [f"{10.0 ** k:.3g}" for k in dims[0]["tickvals"]] and "0.1" in dims[0]["ticktext"]
    importance = next(c.value for c in at.caption if c.value.startswith("Importance of"))
    assert importance.startswith("Importance of lico.ot.epsilon (") and "data.name" not in importance
    # epsilon cannot act in the CE arm (no OT): that arm is left out of its plot and of the importance.
    assert "Left out: arm ce, where a parameter cannot change training." in importance
    assert any(c.value.startswith("Left out: arm ce, where lico.ot.epsilon cannot change training") for c in at.caption)
    import pyarrow as pa
    plotted = [pa.ipc.open_stream(d.data.data).read_all().to_pandas() for d in charts(at)[0].proto.datasets]
    arms = {a for df in plotted if "arm" in df.columns for a in df["arm"]}
    assert arms == {"lico"}, arms                  # the trials' points, means and bands: lico only
    at.checkbox(key="hp_seed").check().run()
    assert len(charts(at)) == n + 1, "the seed becomes one more parameter plot"
    importance = next(c.value for c in at.caption if c.value.startswith("Importance of"))
    assert importance.startswith("Importance of lico.ot.epsilon ("), "the seed is never a hyperparameter"
    at.selectbox(key="hp_metric").set_value("saliency/gradcam/overall").run()
    assert at.subheader[0].value == "saliency/gradcam/overall against each searched parameter"

    # The Pareto front of the chosen dataset's trials only.
    usable = load_results(results_root).usable
    for ds in ("digits", "fashion_mnist"):
        at.selectbox(key="hp_dataset").set_value(ds).run()
        u = usable[usable["dataset"] == ds]
        front = u[pareto_mask(u, {"test/acc": "max", "saliency/gradcam/overall": "max"})]
        shown = at.dataframe[-1].value
        assert set(shown["dataset"]) == {ds} and sorted(shown["trial_id"]) == sorted(front["trial_id"])


def test_importance_says_the_objective_does_not_vary(results_root, tmp_path, monkeypatch):
    """Every trial at one test/acc (as 6 trials over an epsilon that could not act were): no number."""
    shutil.copytree(results_root / EXP, tmp_path / EXP)
    for result in (tmp_path / EXP).glob("trial_*/result.json"):
        rows = [json.loads(line) for line in result.read_text().splitlines() if line.strip()]
        result.write_text("".join(json.dumps({**r, **({"test/acc": 82.5784} if "test/acc" in r else {})}) + "\n"
                                  for r in rows))
    at = open_page(tmp_path, monkeypatch, "hyperparameters")
    assert any("No importance: the objective does not vary (test/acc is the same in all 2 trials)" in i.value
               for i in at.info), texts(at.info)
    assert not any(c.value.startswith("Importance of") for c in at.caption)


def test_a_root_that_does_not_answer_never_blocks_the_next(results_root, monkeypatch):
    monkeypatch.setenv("LICO_TUNE_CLOUD_TIMEOUT_S", "3")
    at = open_page(results_root, monkeypatch)
    at.sidebar.text_input(key="root_box").set_value("gs://lico-tune-no-such-bucket-for-tests/root").run()
    assert any("did not answer" in e.value or "cannot be reached" in e.value for e in at.error), texts(at.error)
    import common
    assert not common.watchable("gs://lico-tune-no-such-bucket-for-tests/root"), "live update never watches it"
    at.sidebar.text_input(key="root_box").set_value(str(results_root)).run()     # the next root loads at once
    assert not at.exception and at.header[0].value == EXP and not any("did not answer" in e.value for e in at.error)
    assert at.dataframe[0].value["experiment"].tolist() == [EXP]


def test_saliency_page_compares_the_same_images(results_root, monkeypatch):
    at = open_page(results_root, monkeypatch, "saliency")
    res = load_results(results_root).experiment(EXP)
    finished = res.trials[res.trials["status"] == "finished"]
    # It opens on the largest images (Fashion-MNIST 28 x 28, not digits 8 x 8).
    assert at.selectbox(key="sal_dataset").value == "fashion_mnist"
    spec = json.loads(charts(at)[0].proto.spec)
    enc = spec.get("encoding") or spec["layer"][0]["encoding"]
    assert enc["shape"]["scale"]["range"] == ["circle", "square"], "insertion and deletion markers differ"
    at.selectbox(key="sal_dataset").set_value("digits").run()
    scores = at.dataframe[0].value
    digits0 = finished[(finished["dataset"] == "digits") & (finished["seed"] == 0)].set_index("arm")
    assert sorted(scores["arm"]) == ["ce", "lico"]
    for _, row in scores.iterrows():
        assert row["overall"] == pytest.approx(digits0.loc[row["arm"], "saliency/gradcam/overall"])
        assert row["pointing"] == pytest.approx(digits0.loc[row["arm"], "saliency/gradcam/pointing"])
    at.selectbox(key="sal_seed").set_value(1).run()
    assert not at.exception and set(at.dataframe[0].value["seed"]) == {1}
    at.radio(key="sal_by").set_value("Trials").run()
    one = at.multiselect(key="sal_trials").options[0]
    at.multiselect(key="sal_trials").set_value([one]).run()
    assert len(at.dataframe[0].value) == 1

    # The overlays: the same 3 gallery images for each chosen trial, and their curves.
    assert finished["gallery"].notna().all(), (
        "finished trials have no gallery/ in their Tune trial directory: the trainable must copy the "
        "gallery that train_trial writes (out_dir/gallery) into the trial directory")
    assert len(at.image) == 3 and charts(at)
    at.radio(key="sal_by").set_value("Arms").run()
    assert len(at.image) == 2 * 3, "arms ce and lico, 3 gallery images each"
    assert any("Insertion and deletion curves" == s.value for s in at.subheader) and charts(at)


def test_trial_page(results_root, monkeypatch):
    at = open_page(results_root, monkeypatch, "trial")
    res = load_results(results_root).experiment(EXP)
    lico = res.trials[(res.trials["arm"] == "lico") & (res.trials["status"] == "finished")].iloc[0]
    label = next(o for o in at.selectbox(key="trial_pick").options if o.startswith(lico["trial_id"]))
    at.selectbox(key="trial_pick").set_value(label).run()
    assert not at.exception
    # learning curves (2 charts), then the LICO health curves: tau, MM_ref, gradient fractions, doses,
    # text cosines, OT's between-class/image cosines, Sinkhorn error and iterations (8 charts; the
    # older runs' gradient shares are not drawn for a trial that does not report them)
    assert [s.value for s in at.subheader][:2] == ["Learning curves", "Health of the LICO terms"]
    assert len(charts(at)) == 10
    spec = (results_root / EXP / lico["trial_dir"] / "trial_spec.yaml").read_text()
    code = [c.value for c in at.code]
    assert spec.strip() in [c.strip() for c in code] and lico["checkpoint"] in code
    assert {m.label: m.value for m in at.metric}["test/acc"] == f"{lico['test/acc']:.4g}"
    per_epoch = at.dataframe[-1].value                 # saliency metrics come at the last epoch only
    cells = per_epoch.astype(str).to_numpy().ravel().tolist()
    assert "None" not in cells and "nan" not in cells and "–" in cells

    broken = res.trials[res.trials["status"] == "errored"].iloc[0]
    label = next(o for o in at.selectbox(key="trial_pick").options if o.startswith(broken["trial_id"]))
    at.selectbox(key="trial_pick").set_value(label).run()
    assert "TrialDiverged" in at.error[0].value and any("No checkpoint" in i.value for i in at.info)


@pytest.mark.parametrize("page", ["experiments", "ablations", "hyperparameters", "saliency", "trial"])
def test_missing_empty_and_partly_written_roots_give_friendly_pages(page, tmp_path, monkeypatch, results_root):
    at = open_page(tmp_path / "nowhere", monkeypatch, page)
    assert "No results at" in at.info[0].value
    at = open_page(tmp_path, monkeypatch, page)
    assert "holds no experiment yet" in at.info[0].value

    # An experiment still starting: lico_run.yaml, one trial with half an epoch line, no Tune state.
    part = tmp_path / "part" / "starting"
    part.mkdir(parents=True)
    shutil.copy2(results_root / EXP / "lico_run.yaml", part / "lico_run.yaml")
    src = sorted((results_root / EXP).glob("trial_*_lico"))[0]
    (part / src.name).mkdir()
    shutil.copy2(src / "params.json", part / src.name / "params.json")
    (part / src.name / "result.json").write_text((src / "result.json").read_text()[:50])
    at = open_page(tmp_path / "part", monkeypatch, page)
    assert not at.error or page == "experiments"


def test_damaged_root_lists_the_damaged_trials_and_shows_the_rest(damaged_root, monkeypatch):
    root, cut, bare = damaged_root
    at = open_page(root, monkeypatch)
    warning = texts(at.warning)
    assert "2 damaged trial(s)" in warning and cut in warning and bare in warning
    assert "result.json is truncated" in warning and "no checkpoint" in warning
    at = open_page(root, monkeypatch, "ablations")
    assert list(at.dataframe[0].value.columns) == ["ce", "lico"] and cut in texts(at.warning)
    assert "(n=1)" in at.dataframe[0].value.to_string()


@pytest.mark.starts_server
def test_lico_tune_dashboard_renders_in_headless_chromium(results_root, tmp_path):
    """One server, one browser: markup in a trial's files shows as text and fetches nothing (a local
    HTTP server of this test counts the requests; without the escaping the browser fetched
    /pixel.png), a new experiment written after the page loaded appears without a reload (live
    update), the host/node column is there, and the Ablations page draws."""
    import http.server
    import threading
    import time

    from screenshot import Browser, serve
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("chromium is not installed: `apt-get install -y chromium` (CI's .ci/run installs it); this "
                    "end-to-end test needs a real browser")
    from PIL import Image
    hits: list[str] = []

    class Count(http.server.BaseHTTPRequestHandler):
        def do_GET(self):                     # noqa: N802 (http.server's name)
            hits.append(self.path)
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args):
            pass
    spy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Count)
    threading.Thread(target=spy.serve_forever, daemon=True).start()
    port = spy.server_address[1]
    markup = f"![x](http://127.0.0.1:{port}/pixel.png) **bold** <img src=http://127.0.0.1:{port}/raw.png>"
    root = tmp_path / "root"
    shutil.copytree(results_root / EXP, root / EXP)
    params = sorted((root / EXP).glob("trial_*_broken"))[0] / "params.json"
    params.write_text(json.dumps({**json.loads(params.read_text()), "data.name": markup}))
    try:
        with serve(str(root)) as url, Browser(chromium, width=1280, height=900) as b:
            b.open(url, "Errors (4)")                    # the first load also compiles the app
            text = b.eval("document.body.innerText")
            dom = b.dom()
            assert f"dataset {markup}" in text and "**bold**" in text, text[:3000]   # shown as typed
            assert "pixel.png" not in (b.eval("[...document.images].map(i => i.src).join(' ')") or "")
            assert "<strong>bold</strong>" not in dom and f"127.0.0.1:{port}/raw.png\">" not in dom
            assert f"127.0.0.1:{port}" not in (b.eval("[...document.links].map(a => a.href).join(' ')") or "")
            assert "node: the first 10 characters of its Ray node id" in text      # the host/node columns
            assert "1 experiment(s), 12 trial(s)" in text
            # A new experiment arrives under the root (written elsewhere, then moved in at once).
            shutil.copytree(results_root / EXP, tmp_path / "arrived")
            (tmp_path / "arrived").rename(root / "arrived")
            deadline = time.time() + 90
            while "2 experiment(s), 24 trial(s)" not in (b.eval("document.body.innerText") or ""):
                assert time.time() < deadline, "live update never showed the new experiment: " + \
                    (b.eval("document.body.innerText") or "")[-1500:]
                time.sleep(1)
            b.open(f"{url}/ablations", "Best configuration per metric")   # the last section: the page is complete
            dom = b.dom()
            png = b.screenshot(full=False)
    finally:
        spy.shutdown()
        spy.server_close()
    assert hits == [], f"the browser fetched {hits} from a URL inside a trial's files"
    assert "Ablation table" in dom and "Paired differences against ce" in dom and "lico − ce" in dom
    img = Image.open(io.BytesIO(png)).convert("RGB")
    assert img.size == (1280, 900)
    colours = img.getcolors(maxcolors=1 << 20) or []
    dark = sum(n for n, (r, g, b_) in colours if r + g + b_ < 200)
    assert len(colours) > 100 and dark > 500, "the screenshot is blank (a skeleton or an empty page)"


def test_compare_page_puts_two_experiments_side_by_side_and_overlays_learning_curves(results_root, monkeypatch):
    at = open_page(results_root, monkeypatch, "compare")
    res = load_results(results_root)
    table = at.dataframe[0].value           # rows: dataset · arm · metric; columns: the two experiments
    assert at.selectbox(key="cmp_a").value == at.selectbox(key="cmp_b").value == EXP   # one experiment here
    assert list(table.columns) == [f"left: {EXP}", f"right: {EXP}"]
    u = res.usable
    lico = u[(u["dataset"] == "digits") & (u["arm"] == "lico")]["test/acc"]
    assert table.loc["digits · lico · test/acc", f"left: {EXP}"] == \
        f"{lico.mean():.4g} ± {lico.std(ddof=1):.2g} (n={len(lico)})"
    assert (table[f"left: {EXP}"] == table[f"right: {EXP}"]).all()
    assert {i.split(" · ")[0] for i in table.index} == {"digits", "fashion_mnist"}
    # Learning curves: one line per chosen trial, the points the trials' histories hold.
    picked = at.multiselect(key="cmp_trials").value
    assert len(picked) == min(12, len(at.multiselect(key="cmp_trials").options)) >= 2
    (chart,) = charts(at)
    at.multiselect(key="cmp_trials").set_value(picked[:2]).run()
    assert not at.exception
    caption = next(c.value for c in at.caption if "trial(s); one line per trial" in c.value)
    assert caption.startswith("2 trial(s)")


def test_live_update_follows_a_running_experiment_and_the_newest_is_the_default(results_root, tmp_path, monkeypatch):
    import time

    import yaml
    from lico_tune.results.liveness import driver_record, read_driver, write_driver
    from lico_tune.storage import Storage
    root = tmp_path / "live"
    shutil.copytree(results_root / EXP, root / EXP)
    newer = root / "newer"                          # the same experiment, created later and running
    shutil.copytree(results_root / EXP, newer)
    run = yaml.safe_load((newer / "lico_run.yaml").read_text())
    run["created"] = "2999-01-01T00:00:00"
    (newer / "lico_run.yaml").write_text(yaml.safe_dump(run))
    store = Storage(str(newer))
    write_driver(store, str(newer), driver_record())     # its driver: this test's own process
    at = open_page(root, monkeypatch)
    assert at.header[0].value == "newer", "the newest experiment is shown first"
    assert at.toggle(key="live").value is True, "live update is on while an experiment runs"
    state = lambda: at.dataframe[0].value.set_index("experiment")["state"].to_dict()   # noqa: E731
    assert state() == {EXP: "finished", "newer": "running"}
    assert "Live update" in texts(at.info)

    rec = read_driver(store, str(newer))                  # the driver ends...
    write_driver(store, str(newer), {**rec, "ended": time.time(), "outcome": "SIGINT"})
    at.run()                                              # ...and the next tick of live update shows it
    assert state()["newer"] == "interrupted"
    assert set(at.dataframe[1].value["status"]) == {"finished", "errored"}   # finished trials stay finished

    at.toggle(key="live").set_value(False).run()          # without live update the view stays cached
    write_driver(store, str(newer), driver_record())
    at.run()
    assert state()["newer"] == "interrupted"


def test_trial_filter_narrows_the_trials_table(results_root, monkeypatch):
    at = open_page(results_root, monkeypatch)
    assert len(at.dataframe[1].value) == 12
    at.multiselect(key="exp_f_status").set_value(["finished"]).run()
    assert set(at.dataframe[1].value["status"]) == {"finished"} and len(at.dataframe[1].value) == 8
    at.multiselect(key="exp_f_arm").set_value(["lico"]).run()
    assert set(at.dataframe[1].value["arm"]) == {"lico"} and len(at.dataframe[1].value) == 4
    at.selectbox(key="exp_f_metric").set_value("test/acc").run()
    lo, hi = at.slider(key="exp_f_range").value
    cut = (lo + hi) / 2
    at.slider(key="exp_f_range").set_value((cut, hi)).run()
    shown = at.dataframe[1].value
    assert 0 < len(shown) < 4 and (pd.to_numeric(shown["test/acc"]) >= cut).all()
    at.switch_page("views/trial.py").run()
    at.multiselect(key="trial_f_arm").set_value(["broken"]).run()
    assert all(" · broken · " in o for o in at.selectbox(key="trial_pick").options)
