"""Streamlit-only helpers shared by Home.py and the pages (lib/ stays free of Streamlit)."""
