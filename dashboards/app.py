"""The lico-tune dashboard: `lico-tune dashboard [STORAGE] [--port N]` starts it
(or `streamlit run dashboards/app.py -- --storage STORAGE`).

The pages live in views/, not pages/: a pages/ directory next to the entry script switches a
Streamlit server to its older multipage mode, which ignores st.navigation (titles, order, URLs)."""
import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

st.set_page_config(page_title="lico-tune", page_icon=":material/science:", layout="wide")

pages = [
    st.Page("views/experiments.py", title="Experiments", icon=":material/list:", url_path="experiments", default=True),
    st.Page("views/ablations.py", title="Ablations", icon=":material/bar_chart:", url_path="ablations"),
    st.Page("views/hyperparameters.py", title="Hyperparameters", icon=":material/tune:", url_path="hyperparameters"),
    st.Page("views/saliency.py", title="Saliency", icon=":material/image:", url_path="saliency"),
    st.Page("views/trial.py", title="Trial", icon=":material/monitoring:", url_path="trial"),
    st.Page("views/compare.py", title="Compare", icon=":material/compare_arrows:", url_path="compare"),
]
nav = st.navigation(pages)
nav.run()
