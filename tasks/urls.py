from django.urls import path

from tasks import views_supervisor

urlpatterns = [
    path("supervisor/", views_supervisor.wallboard, name="wallboard"),
    path("supervisor/board/", views_supervisor.wallboard_board, name="wallboard-board"),
    path("supervisor/reports/", views_supervisor.reports, name="reports"),
    path("supervisor/reports/<slug:table>.csv", views_supervisor.reports_export, name="reports-export"),
    path("me/metrics/", views_supervisor.my_metrics, name="my-metrics"),
]
