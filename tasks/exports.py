"""The reports as CSV tables: one header row, then plain values (seconds, counts, percentages)."""

import csv
from collections.abc import Callable, Iterable

from contactcenter.spreadsheets import spreadsheet_cell
from tasks.metrics import TeamReport


def _cell(value) -> object:
    return round(value, 1) if isinstance(value, float) else spreadsheet_cell(value)


def _agents(report: TeamReport) -> Iterable[list]:
    yield [
        "agent", "username", "handled", "handled_per_day", "avg_handle_seconds", "avg_first_response_seconds",
        "avg_resolution_seconds", "resolution_rate_percent", "csat_sent", "csat_ratings", "csat_average",
        "csat_satisfied_percent", "offers_accepted", "offers_declined", "offers_timed_out", "avg_seconds_to_accept",
        "available_seconds", "unavailable_seconds", "unavailable_by_reason", "offline_seconds", "occupancy_percent",
    ]  # fmt: skip
    for row in report.agents:
        status = row.status
        yield [
            row.member.display_name, row.member.user.get_username(), row.handled, row.handled_per_day,
            row.work.handle_time.value, row.first_response.value, row.resolution_time.value,
            row.work.resolution_rate.percent, row.csat.sent, row.csat.rated, row.csat.average,
            row.csat.satisfied_percent, row.offers.accepted, row.offers.declined, row.offers.timed_out,
            row.offers.time_to_accept.value, status.available, status.unavailable_total,
            "; ".join(f"{reason}: {round(seconds)}" for reason, seconds in status.unavailable_by_reason),
            status.offline, status.occupancy_percent,
        ]  # fmt: skip


def _queues(report: TeamReport) -> Iterable[list]:
    yield [
        "queue", "arrived", "answered", "abandoned", "service_level_percent", "target_percent", "target_seconds",
        "avg_wait_to_answer_seconds",
    ]  # fmt: skip
    for service in report.queues:
        yield [
            service.queue.name, service.arrived, service.answered, service.abandoned, service.service_level.percent,
            service.queue.service_level_percent, service.queue.service_level_seconds, service.wait_to_answer.value,
        ]  # fmt: skip


def _dispositions(report: TeamReport) -> Iterable[list]:
    yield ["queue", "disposition", "count"]
    yield from ([queue, disposition, n] for queue, disposition, n in report.dispositions)


def _daily(report: TeamReport) -> Iterable[list]:
    yield ["date", "agent", "username", "handled"]
    for day in report.days:
        for row in report.agents:
            yield [day.isoformat(), row.member.display_name, row.member.user.get_username(), row.work.by_day[day]]


REPORT_TABLES: dict[str, Callable[[TeamReport], Iterable[list]]] = {
    "agents": _agents,
    "queues": _queues,
    "dispositions": _dispositions,
    "daily": _daily,
}


def report_csv_write(report: TeamReport, table: str, out) -> None:
    """Write one of REPORT_TABLES of `report` as CSV to the file-like `out`."""
    writer = csv.writer(out)
    for row in REPORT_TABLES[table](report):
        writer.writerow([_cell(value) for value in row])
