"""Alert rules: the YAML a user edits, its loader, and the evaluator that turns observations into alerts."""
