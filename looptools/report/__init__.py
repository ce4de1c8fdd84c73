"""Reading reports after the fact: loading and validating them (``load``), their
derived figures computed once (``model``), and rendering them as text, Markdown, HTML,
trace and speedscope (``render``)."""
