"""How every view writes a duration, a share and a count: one formatter each.

Shared by both sides and standard library only: the exit summary inside a monitored app
(``looptools.inapp.writer``) uses it as the readers do (the report model and renderers,
the dashboard), so that one value reads the same everywhere (``1.60 ms``, never ``1.6 ms``
in one view and ``1.60 ms`` in another).
"""

from __future__ import annotations

__all__ = ["fmt_ms", "fmt_pct", "fmt_s", "plural"]


def fmt_ms(ms: float | None) -> str:
    """Milliseconds to three significant figures in the unit a reader expects:
    ``0.42 ms``, ``12.3 ms``, ``812 ms``, ``1.81 s``; ``-`` for no value.

    The precision is chosen after rounding, so 9.999 is ``10.0 ms`` and 999.7 ``1.00 s``.
    """
    if ms is None:
        return "-"
    value = float(ms)
    size = abs(value)
    if size >= 999.5:
        return f"{value / 1000:.2f} s"
    if size >= 99.95:
        return f"{value:.0f} ms"
    if size >= 9.995:
        return f"{value:.1f} ms"
    return f"{value:.2f} ms"


def fmt_s(seconds: float | None) -> str:
    """A duration or an age given in seconds: ``3.21 s``, ``12.7 s``, ``4 min 12 s``."""
    if seconds is None:
        return "-"
    if seconds >= 120:
        minutes, rest = divmod(seconds, 60)
        return f"{minutes:.0f} min {rest:.0f} s"
    if seconds >= 9.995:
        return f"{seconds:.1f} s"
    return f"{seconds:.2f} s"


def fmt_pct(fraction: float | None) -> str:
    """A fraction in 0..1 as a percentage with one decimal: ``37.2%``; ``-`` for none."""
    if fraction is None:
        return "-"
    return f"{float(fraction) * 100:.1f}%"


def plural(n: int, word: str, many: str | None = None) -> str:
    """``1 stall``, ``3 stalls`` (``many`` for an irregular plural)."""
    return f"{n} {word if n == 1 else (many or word + 's')}"
