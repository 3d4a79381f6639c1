"""Feed quality: great-expectations suites built from the feed contracts, batch-level checks
against history, data gaps, offline Data Docs and the per-department scorecard."""
