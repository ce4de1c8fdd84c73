"""The CI gate: pure functions over report dicts (the JSON contract in
``schema/report.schema.json``); no click, no rich, no printing.  ``looptools check``,
``baseline`` and ``diff`` are thin layers over it.

The flow is one way::

    report dict --offenders()--> [Offender]  (stall culprits, blocking-call sites,
                                              slow callbacks, leaked tasks)
    budget file + flags --load_budget()--> Budget (limits, allow-list)
    baseline file --load_baseline()--> Baseline
    evaluate(report, budget, baseline) --> Evaluation (checks, violations, notes)
    diff_reports(before, after) --> Diff

in :mod:`.offenders`, :mod:`.limits` (with :mod:`.allow`), :mod:`.baseline`,
:mod:`.evaluate` and :mod:`.diff`.
"""
