"""Charts as inline SVG, drawn on the server: no chart library, no script, no CDN.

Horizontal positions are percentages of the chart's width and vertical ones pixels, so
a chart stretches to any screen while its text keeps its size (a scaled viewBox would
shrink the labels to nothing on a phone). Colours come from the stylesheet through class
names; every bar carries a ``<title>`` (the hover text), and each chart a label for
screen readers. Pages put the same figures in a table beside each chart.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from markupsafe import Markup

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(frozen=True)
class Series:
    name: str  # in hover texts: "12 rejected"
    values: Sequence[int]
    css: str  # the stylesheet's class for its colour


def short_day(day: str) -> str:
    """``2026-03-04`` → ``Mar 4``."""
    parsed = date.fromisoformat(day)
    return f"{_MONTHS[parsed.month - 1]} {parsed.day}"


def number(value: int) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:.1f}M".replace(".0M", "M")
    if value >= 10_000:
        return f"{value / 1000:.0f}k"
    return f"{value:,}"


def nice_ticks(maximum: int, count: int = 4) -> list[int]:
    """Gridline values from 0 to at least ``maximum`` in steps of 1, 2 or 5 times a power of ten."""
    if maximum <= 0:
        return [0, 1]
    rough = maximum / count
    magnitude = 10 ** math.floor(math.log10(rough)) if rough >= 1 else 1
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= rough)
    top = math.ceil(maximum / step) * step
    return list(range(0, int(top) + 1, int(step)))


def _pct(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".") + "%"


def _px(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0")


def el(name: str, *children: Markup | str, **attrs: object) -> Markup:
    """An SVG element. Attribute values and text are escaped; ``class_`` is ``class``
    and other underscores become hyphens (``text_anchor`` → ``text-anchor``)."""
    attributes = Markup("").join(
        Markup(' {}="{}"').format(key.rstrip("_").replace("_", "-"), value)
        for key, value in attrs.items()
    )
    if not children:
        return Markup("<{}{}/>").format(name, attributes)
    return Markup("<{0}{1}>{2}</{0}>").format(name, attributes, Markup("").join(children))


def _svg(label: str, height: int, *children: Markup, css: str = "chart") -> Markup:
    return el(
        "svg",
        *children,
        class_=css,
        width="100%",
        height=height,
        role="img",
        aria_label=label,
        focusable="false",
    )


def _label_indexes(n: int, most: int = 5) -> list[int]:
    """Which days get a date under the axis: evenly spaced, always the last (today)."""
    step = max(1, math.ceil(n / most))
    return sorted(range(n - 1, -1, -step))


def bar_chart(
    days: Sequence[str],
    series: Sequence[Series],
    *,
    label: str,
    unit: str,
    height: int = 200,
) -> Markup:
    """Stacked bars per day; ``series[0]`` sits at the bottom. Hover texts read
    "Mar 4: 120 requests, 3 rejected" (the first series gives the total)."""
    n = len(days)
    top, bottom = 18, 24
    plot = height - top - bottom
    totals = [sum(s.values[i] for s in series) for i in range(n)]
    ticks = nice_ticks(max(totals, default=0))
    ceiling = ticks[-1]

    def y(value: float) -> str:
        return _px(top + plot * (1 - value / ceiling))

    parts = [el("line", class_="grid", x1=0, x2="100%", y1=y(t), y2=y(t)) for t in ticks]
    slot = 100 / n if n else 100
    width = slot * 0.62
    for i in range(n):
        hover = f"{short_day(days[i])}: {totals[i]:,} {unit}"
        hover += "".join(f", {s.values[i]:,} {s.name}" for s in series[1:] if s.values[i])
        bars = [el("title", hover), _hit_area(i * slot, slot, top, plot)]
        base = 0
        for s in series:
            if s.values[i] <= 0:
                continue
            y_top = top + plot * (1 - (base + s.values[i]) / ceiling)
            y_base = top + plot * (1 - base / ceiling)
            bars.append(
                el(
                    "rect",
                    class_=s.css,
                    x=_pct(i * slot + (slot - width) / 2),
                    y=_px(y_top),
                    width=_pct(width),
                    height=_px(max(y_base - y_top, 1)),
                )
            )
            base += s.values[i]
        parts.append(el("g", *bars))
    # Tick labels after the bars, outlined by the stylesheet, so a tall bar cannot hide one.
    for t in ticks[1:]:
        parts.append(el("text", number(t), class_="tick", x=0, y=_px(float(y(t)) - 4)))
    for i in _label_indexes(n):
        last = i == n - 1
        parts.append(
            el(
                "text",
                short_day(days[i]),
                class_="day",
                x=_pct((i + 1) * slot if last else (i + 0.5) * slot),
                y=height - 6,
                text_anchor="end" if last else "middle",
            )
        )
    return _svg(label, height, *parts)


def _hit_area(x: float, width: float, top: int, height: int) -> Markup:
    """The whole column of a day: hovering anywhere above a short bar shows its text."""
    return el("rect", class_="hit", x=_pct(x), y=top, width=_pct(width), height=height)


def hbar_list(items: Sequence[tuple[str, int]], *, label: str, css: str = "bar-danger") -> Markup:
    """One labelled horizontal bar per item (rejections by error code), longest first."""
    row = 38
    biggest = max((v for _, v in items), default=0) or 1
    rows = []
    for i, (name, value) in enumerate(items):
        top = i * row
        rows.append(
            el(
                "g",
                el("title", f"{name}: {value:,}"),
                el("text", name, class_="item", x=0, y=top + 14),
                el(
                    "text",
                    number(value),
                    class_="item-value",
                    x="100%",
                    y=top + 14,
                    text_anchor="end",
                ),
                el("rect", class_="track", x=0, y=top + 21, width="100%", height=8, rx=4),
                el(
                    "rect",
                    class_=css,
                    x=0,
                    y=top + 21,
                    width=_pct(100 * value / biggest),
                    height=8,
                    rx=4,
                ),
            )
        )
    return _svg(label, row * len(items), *rows)


def meter(value: int, maximum: int, *, label: str) -> Markup:
    """A bar showing ``value`` against ``maximum`` (live sockets against the peak)."""
    share = min(1.0, value / maximum) if maximum > 0 else 0.0
    return _svg(
        label,
        10,
        el("rect", class_="track", x=0, y=0, width="100%", height=10, rx=5),
        el("rect", class_="bar", x=0, y=0, width=_pct(100 * share), height=10, rx=5),
        css="chart meter",
    )


def spark_bars(days: Sequence[str], values: Sequence[int], *, label: str, unit: str) -> Markup:
    """A small bar chart without axes, for one key's requests per day."""
    height = 40
    biggest = max(values, default=0) or 1
    slot = 100 / len(values) if values else 100
    parts = [el("line", class_="grid", x1=0, x2="100%", y1=height - 0.5, y2=height - 0.5)]
    for i, value in enumerate(values):
        if value <= 0:
            continue
        bar = max(2.0, (height - 2) * value / biggest)
        parts.append(
            el(
                "rect",
                el("title", f"{short_day(days[i])}: {value:,} {unit}"),
                class_="bar",
                x=_pct(i * slot + slot * 0.15),
                y=_px(height - bar),
                width=_pct(slot * 0.7),
                height=_px(bar),
            )
        )
    return _svg(label, height, *parts, css="chart spark")
