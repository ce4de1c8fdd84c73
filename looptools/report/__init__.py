"""Reading reports after the fact: loading and validating them, and rendering
them as text, Markdown, HTML, trace and speedscope."""
