"""The Streamlit dashboard (app.py, views/), installed as the package `lico_tune_dashboard`; run it
with `lico-tune dashboard` (or `streamlit run dashboards/app.py` in a checkout)."""
