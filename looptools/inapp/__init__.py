"""Everything of looptools that runs inside the app it watches, apart from the
loop-kind plugins (``looptools.plugins``): the monitor, the hub between plugins
and detectors, the detectors, and the report writer.

Nothing here imports the readers (``looptools.report``, ``looptools.gate``,
``looptools.live.dashboard``, ``looptools.cli``): the app never pays for them.
"""
