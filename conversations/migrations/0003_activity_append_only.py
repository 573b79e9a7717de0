"""The activity log is append-only, enforced by the database as well as by the code.

A row-level trigger refuses UPDATE and DELETE of conversations_activity. TRUNCATE (what the test
runner's flush uses) fires no row triggers. Erasing a whole tenant (whose cascade deletes its log)
must say so in its transaction first: `SET LOCAL switchboard.erasing_tenant = 'on'`.
"""

from django.db import migrations

CREATE = """
CREATE FUNCTION conversations_activity_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('switchboard.erasing_tenant', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'the activity log is append-only: % of activity % refused', TG_OP, OLD.id
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE TRIGGER conversations_activity_append_only
    BEFORE UPDATE OR DELETE ON conversations_activity
    FOR EACH ROW EXECUTE FUNCTION conversations_activity_append_only();
"""

DROP = """
DROP TRIGGER IF EXISTS conversations_activity_append_only ON conversations_activity;
DROP FUNCTION IF EXISTS conversations_activity_append_only();
"""


class Migration(migrations.Migration):
    dependencies = [("conversations", "0002_initial")]

    operations = [migrations.RunSQL(CREATE, DROP)]
