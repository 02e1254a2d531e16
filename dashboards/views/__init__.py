"""The dashboard's pages (st.navigation runs them as scripts)."""
