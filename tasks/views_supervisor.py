"""The supervisors' pages (the live wallboard, the reports and their CSV export) and each agent's
own figures for the desktop. Thin: resolve the tenant's time zone, read tasks.metrics, render.

Everything reads inside the signed-in member's tenant (the middleware's tenant context), so another
tenant's queues, agents and tasks cannot appear, and the filters only offer this tenant's choices.
"""

from zoneinfo import ZoneInfo

from django.http import Http404, HttpResponse, HttpResponseBadRequest
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from contactcenter.access import member_required
from contactcenter.models import Role
from tasks.charts import depth_chart, service_level_chart
from tasks.exports import REPORT_TABLES, report_csv_write
from tasks.forms import ReportFilterForm
from tasks.metrics import DEPTH_STEP, floor_board, personal_today, team_report

SUPERVISING = (Role.SUPERVISOR, Role.ADMIN)
BOARD_REFRESH_SECONDS = 2


def _zone(request) -> ZoneInfo:
    return ZoneInfo(request.tenant.time_zone)


def _render_in_zone(request, template: str, context: dict, zone: ZoneInfo) -> HttpResponse:
    """Render with times shown in the tenant's time zone."""
    with timezone.override(zone):
        return render(request, template, context)


def _board(request, template: str) -> HttpResponse:
    zone = _zone(request)
    floor = floor_board(now=timezone.now(), zone=zone)
    day = {"day_start": floor.day_start, "day_end": floor.day_end, "zone": zone}
    panels = [
        {
            "board": board,
            "depth": depth_chart(board.depth, step=DEPTH_STEP, **day),
            "service": service_level_chart(
                board.service_level_by_hour, target_percent=board.queue.service_level_percent, **day
            ),
        }
        for board in floor.queues
    ]
    context = {"floor": floor, "panels": panels, "refresh_seconds": BOARD_REFRESH_SECONDS}
    return _render_in_zone(request, template, context, zone)


@require_GET
@member_required(*SUPERVISING)
def wallboard(request):
    return _board(request, "supervisor/wallboard.html")


@never_cache
@require_GET
@member_required(*SUPERVISING)
def wallboard_board(request):
    """The wallboard's live panel, `#wallboard`, swapped whole (outerHTML): it re-fetches itself every
    BOARD_REFRESH_SECONDS and at once on a `floor-changed` event dispatched on it, which a websocket
    push to the supervisors (task.*, agent.status, …) can fire."""
    return _board(request, "supervisor/wallboard.html#board")


def _report(request):
    zone = _zone(request)
    now = timezone.now()
    form = ReportFilterForm(request.GET, today=now.astimezone(zone).date())
    filters = form.filters()
    report = team_report(**filters, zone=zone, now=now) if filters is not None else None
    return form, report, zone


@require_GET
@member_required(*SUPERVISING)
def reports(request):
    form, report, zone = _report(request)
    context = {"form": form, "report": report, "tables": list(REPORT_TABLES), "query": request.GET.urlencode()}
    return _render_in_zone(request, "supervisor/reports.html", context, zone)


@require_GET
@member_required(*SUPERVISING)
def reports_export(request, table: str):
    """One table of the reports as CSV, with the same filters as the page."""
    if table not in REPORT_TABLES:
        raise Http404("No such report table.")
    form, report, _ = _report(request)
    if report is None:
        reasons = "; ".join(str(error) for errors in form.errors.values() for error in errors)
        return HttpResponseBadRequest(reasons, content_type="text/plain; charset=utf-8")
    first, last = report.days[0], report.days[-1]
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="switchboard-{table}-{first}-to-{last}.csv"'
    report_csv_write(report, table, response)
    return response


@never_cache
@require_GET
@member_required()
def my_metrics(request):
    """The signed-in agent's own figures for today, as a fragment for the desktop."""
    zone = _zone(request)
    figures = personal_today(agent=request.membership, now=timezone.now(), zone=zone)
    return _render_in_zone(request, "tasks/partials/my_metrics.html", {"figures": figures}, zone)
