"""The CI gate: budgets, allow-lists, baselines, their evaluation against a
report, and report-to-report diffs (``looptools check``)."""
