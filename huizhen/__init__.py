"""Huizhen (会诊): an integration server for remote medical consultation."""

__version__ = "0.1.0"
