"""Row-level security on every tenant-owned table: the database's own wall between tenants.

See contactcenter/rowsecurity.py. A table of a TenantOwnedModel created later gets its policy from
a `TenantRowSecurity(...)` operation in its own migration; tests/contactcenter/test_row_security.py
fails for any table without one.
"""

from django.db import migrations

from contactcenter.rowsecurity import TenantRowSecurity


class Migration(migrations.Migration):
    dependencies = [
        ("contactcenter", "0003_membership_phone_number"),
        ("conversations", "0007_csat_survey"),
        ("tasks", "0004_agentstatusperiod_set_by"),
        ("channels_inbound", "0007_voicecall"),
    ]

    operations = [
        TenantRowSecurity(
            "channels_inbound_channelendpoint",
            "channels_inbound_emaildetails",
            "channels_inbound_inboundevent",
            "channels_inbound_inboundmedia",
            "channels_inbound_voicecall",
            "contactcenter_membership",
            "conversations_activity",
            "conversations_attachment",
            "conversations_attachmentrestriction",
            "conversations_contact",
            "conversations_contactidentity",
            "conversations_conversation",
            "conversations_csatsurvey",
            "conversations_internalnote",
            "conversations_message",
            "conversations_replytemplate",
            "conversations_sensitivedatapattern",
            "tasks_agentskill",
            "tasks_agentstate",
            "tasks_agentstatusperiod",
            "tasks_automationrule",
            "tasks_breakreason",
            "tasks_disposition",
            "tasks_offer",
            "tasks_queue",
            "tasks_skill",
            "tasks_task",
            "tasks_team",
        ),
    ]
