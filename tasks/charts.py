"""The wallboard's two charts as inline SVG geometry: pure functions from figures to coordinates.

The templates draw what these return (no script, no style attributes: colours come from classes in
static/css/supervisor.css), so the charts are rendered on the server with the rest of the fragment
and need nothing in the browser. The x axis always spans the tenant's whole day, so a line that
stops part-way shows at a glance how far the day has gone.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from tasks.metrics import Ratio

WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 76, 16, 18, 44  # room for the axis labels
TICK_HOURS = (0, 6, 12, 18)


@dataclass(frozen=True)
class Tick:
    at: float
    label: str


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    in_target: bool
    label: str


@dataclass
class Chart:
    summary: str  # what a screen reader hears, and the chart's tooltip
    width: int = WIDTH
    height: int = HEIGHT
    line: str = ""  # polyline points "x,y x,y …"
    area: str = ""  # the same, closed along the x axis
    bars: list[Bar] = field(default_factory=list)
    x_ticks: list[Tick] = field(default_factory=list)
    y_ticks: list[Tick] = field(default_factory=list)
    target_y: float | None = None
    target_label: str = ""
    left: int = LEFT
    right: int = WIDTH - RIGHT
    bottom: int = HEIGHT - BOTTOM


def _x(offset: timedelta, day_length: timedelta) -> float:
    return round(LEFT + (WIDTH - LEFT - RIGHT) * min(offset / day_length, 1), 1)


def _y(value: float, top_value: float) -> float:
    return round(HEIGHT - BOTTOM - (HEIGHT - TOP - BOTTOM) * min(value / top_value, 1), 1)


def _x_ticks(day_start: datetime, day_length: timedelta, zone: ZoneInfo) -> list[Tick]:
    return [
        Tick(
            _x(timedelta(hours=hours), day_length),
            (day_start + timedelta(hours=hours)).astimezone(zone).strftime("%H:%M"),
        )
        for hours in TICK_HOURS
    ]


def _axis_top(peak: int) -> int:
    """A round top for the depth axis: at least 4, then the next even number (so the middle tick is whole)."""
    top = max(peak, 4)
    return top + top % 2


def depth_chart(peaks: list[int], *, day_start: datetime, day_end: datetime, step: timedelta, zone: ZoneInfo) -> Chart:
    """Tasks waiting through the day: a step line of the peak of each `step` since midnight."""
    day_length = day_end - day_start
    top = _axis_top(max(peaks, default=0))
    points = []
    for index, peak in enumerate(peaks):
        y = _y(peak, top)
        points += [(_x(step * index, day_length), y), (_x(step * (index + 1), day_length), y)]
    now_waiting = peaks[-1] if peaks else 0
    busiest = max(range(len(peaks)), key=peaks.__getitem__, default=None)
    summary = f"Tasks waiting today: {now_waiting} in the last {int(step.total_seconds() // 60)} minutes"
    if busiest is not None and peaks[busiest]:
        at = (day_start + step * busiest).astimezone(zone).strftime("%H:%M")
        summary += f", at most {peaks[busiest]} (from {at})"
    chart = Chart(summary=summary + ".", x_ticks=_x_ticks(day_start, day_length, zone))
    chart.y_ticks = [Tick(_y(value, top), str(value)) for value in (0, top // 2, top)]
    if points:
        chart.line = " ".join(f"{x},{y}" for x, y in points)
        base = HEIGHT - BOTTOM
        chart.area = f"{points[0][0]},{base} {chart.line} {points[-1][0]},{base}"
    return chart


def service_level_chart(
    hours: list[Ratio], *, day_start: datetime, day_end: datetime, target_percent: int, zone: ZoneInfo
) -> Chart:
    """Service level through the day: one bar per hour with arrivals that counted, and the target."""
    day_length = day_end - day_start
    hour = timedelta(hours=1)
    width = _x(hour, day_length) - LEFT
    bars = []
    for index, ratio in enumerate(hours):
        if ratio.percent is None:
            continue
        x, y = _x(hour * index, day_length), _y(ratio.percent, 100)
        at = (day_start + hour * index).astimezone(zone).strftime("%H:%M")
        bars.append(
            Bar(
                x=x + 1,
                y=y,
                width=max(width - 2, 1),
                height=round(HEIGHT - BOTTOM - y, 1),
                in_target=ratio.percent >= target_percent,
                label=f"{at}: {ratio.percent:.0f}% ({ratio.hits} of {ratio.count} in target)",
            )
        )
    below = sum(not bar.in_target for bar in bars)
    summary = (
        f"Service level by hour today, target {target_percent}%: {len(bars)} hours measured, {below} below target."
    )
    chart = Chart(summary=summary, bars=bars, x_ticks=_x_ticks(day_start, day_length, zone))
    chart.y_ticks = [Tick(_y(value, 100), f"{value}%") for value in (0, 50, 100)]
    chart.target_y, chart.target_label = _y(target_percent, 100), f"target {target_percent}%"
    return chart
