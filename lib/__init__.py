"""BMC Hub: everything that is not drawing. Nothing in here imports streamlit."""

__version__ = "1.0.0"
