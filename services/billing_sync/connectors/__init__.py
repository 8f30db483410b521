"""Billing-system connectors: read a billing system (or a CSV file) and produce import shapes.

Framework-free: no nameko, no database. `stripe` reads a Stripe-compatible API, `csv_import` streams a CSV
upload (layout in docs/csv-import.md); both yield the shapes described in `shapes`, and fail with the types
in `errors`, so the sync workers write them through the same service functions as the Import API.
"""
