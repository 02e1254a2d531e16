"""The dashboard's pure logic, without a server or results: escaping of user text, the parallel
coordinates' category labels, default metrics, the importance guard and inert arms, a trial's host
and node, and the loopback default of `lico-tune dashboard` (the pages: test_dashboard.py)."""
import sys

import pandas as pd

from ray_helpers import REPO

sys.path.insert(0, str(REPO / "dashboards"))

MARKUP = ("![x](http://127.0.0.1:9/pixel.png) **bold** <img src=x> $x$ :red[r] # h https://a.b/c www.d.e f@g.h "
          "_em_ trial_00001\n1. item\n- dash")


def test_md_shows_user_text_literally():
    import common
    from markdown_it import MarkdownIt          # a CommonMark parser (Streamlit's frontend is CommonMark + GFM)
    html = MarkdownIt("commonmark").render(common.md(MARKUP))   # GFM's bare-URL links: the Chromium test
    assert "<img" not in html and "<strong>" not in html and "<h1>" not in html and "<ol>" not in html
    assert "<ul>" not in html and "<a " not in html and "<em>" not in html and "&lt;img src=x&gt;" in html
    text = html.replace("<br />", "").replace("<p>", "").replace("</p>", "").replace("&lt;", "<") \
        .replace("&gt;", ">").replace("&amp;", "&").replace("\n", "")
    assert text == MARKUP.replace("\n", "")                     # every character shown, as typed
    assert common.md(None) == common.MISSING and common.md("ablation-smoke") == "ablation-smoke"


def test_parallel_coordinates_show_category_values_as_text():
    from charts import parallel_coordinates
    t = pd.DataFrame({"arm": ["<a href='http://x'>ce</a>", "lico & co"], "test/acc": [1.0, 2.0]})
    dims = parallel_coordinates(t, ["arm", "test/acc"], "test/acc").to_dict()["data"][0]["dimensions"]
    assert dims[0]["ticktext"] == ["&lt;a href='http://x'>ce&lt;/a>", "lico &amp; co"]


def test_defaults_follow_the_searchs_own_metrics():
    import common
    options = ["saliency/gradcam/overall", "test/acc", "val/acc", "val/saliency/gradcam/overall"]
    assert options[common.preferred(options, {"val/saliency/gradcam/overall": "max"})] == "val/saliency/gradcam/overall"
    assert options[common.preferred(options, {})] == "val/acc"           # no declaration: a val metric, never test
    assert options[common.preferred(options, ["test/acc"])] == "test/acc"   # a search that chose test keeps it
    assert common.preferred(["test/acc"], {}) == 0


def test_importance_guard_and_inert_arms():
    import common
    t = pd.DataFrame({"arm": ["ce", "ce", "lico", "lico"], "lico.ot.epsilon": [0.1, 0.5, 0.1, 0.5],
                      "val/acc": [82.5784] * 4})
    assert not common.objective_varies(t, "val/acc") and not common.objective_varies(t, "no/such")
    assert common.objective_varies(t.assign(**{"val/acc": [1.0, 2.0, 1.0, 1.0]}), "val/acc")
    kept, out = common.inert_left_out(t, {"lico.ot.epsilon": ["ce", "broken"]}, "lico.ot.epsilon")
    assert out == ["ce"] and set(kept["arm"]) == {"lico"}                 # broken has no trial here
    assert common.inert_left_out(t, {}, "lico.ot.epsilon")[1] == []


def test_trials_carry_the_host_and_node_they_ran_on():
    from lico_tune.results.table import build_results
    rec = {"experiment": "e", "trial_id": "a", "arm": "lico", "params": {}, "final": {},
           "provenance": {"node_id": "ab" * 28, "hostname": "worker-1"}}
    row = build_results("/r", [], [rec, {**rec, "trial_id": "b", "provenance": None}]).trials
    assert row[["host", "node"]].values.tolist()[0] == ["worker-1", "ab" * 28]
    assert row[["host", "node"]].isna().values.tolist()[1] == [True, True]     # not started: no provenance yet


def test_dashboard_binds_to_loopback_by_default():
    from lico_tune.cli import build_parser
    args = build_parser().parse_args(["dashboard"])
    assert (args.host, args.port, args.storage) == ("127.0.0.1", 8501, "~/lico-tune-results")
