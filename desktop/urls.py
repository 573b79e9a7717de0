from django.urls import path

from desktop import context_views, views

app_name = "desktop"

urlpatterns = [
    path("unassigned/", views.unassigned, name="unassigned"),
    path("status/", views.status, name="status"),
    path("queues/", views.queues, name="queues"),
    path("offers/<str:public_id>/accept/", views.offer_accept_view, name="offer-accept"),
    path(
        "offers/<str:public_id>/decline/",
        views.offer_decline_view,
        name="offer-decline",
    ),
    path("tasks/<str:public_id>/claim/", views.task_claim_view, name="task-claim"),
    path("tasks/<str:public_id>/start/", views.task_start_view, name="task-start"),
    path(
        "tasks/<str:public_id>/complete/",
        views.task_complete_view,
        name="task-complete",
    ),
    path("tasks/<str:public_id>/wrap-up/", views.task_wrap_up, name="task-wrap-up"),
    path("conversations/<str:public_id>/", views.conversation, name="conversation"),
    path("conversations/<str:public_id>/history/", views.history_earlier, name="history-earlier"),
    path("conversations/<str:public_id>/reply/", views.reply, name="reply"),
    path(
        "conversations/<str:public_id>/end/",
        views.conversation_end_view,
        name="conversation-end",
    ),
    path("conversations/<str:public_id>/notes/", views.note, name="note"),
    path("conversations/<str:public_id>/template/", views.template_text, name="template"),
    path("messages/<str:public_id>/retry/", views.message_retry, name="message-retry"),
    # The context column of a conversation pane and the contact page (desktop.context_views)
    path("contacts/<str:public_id>/", context_views.contact, name="contact"),
    path("conversations/<str:public_id>/priority/", context_views.priority, name="context-priority"),
    path("conversations/<str:public_id>/tags/", context_views.tags, name="context-tags"),
    path("conversations/<str:public_id>/notes/preview/", context_views.note_preview, name="note-preview"),
    path("conversations/<str:public_id>/follow-up/", context_views.follow_up, name="context-follow-up"),
    path("conversations/<str:public_id>/assign/", context_views.assign, name="context-assign"),
    path("conversations/<str:public_id>/transfer/", context_views.transfer, name="context-transfer"),
    path("conversations/<str:public_id>/merge/", context_views.merge, name="context-merge"),
    path("conversations/<str:public_id>/split/", context_views.split, name="context-split"),
    path("conversations/<str:public_id>/schedule/", context_views.schedule, name="context-schedule"),
    path("conversations/<str:public_id>/outbound/", context_views.outbound, name="context-outbound"),
]
