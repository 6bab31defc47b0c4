"""Shipped tables (tdp.csv). A package so setup.py's `*.csv` package_data ships it in wheels."""
