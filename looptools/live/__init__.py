"""The running app's stream (written in the app, read by ``looptools dashboard``
and ``looptools profile``) and the dashboard that reads it."""
