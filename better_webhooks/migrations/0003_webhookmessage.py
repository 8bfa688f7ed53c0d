"""Store each message's payload once (``webhook_messages``), not once per delivery and attempt."""

import json
from typing import Any

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models

import better_tenant.operations

FK_NAME = "webhook_deliveries_message_id_fk_webhook_messages_id"


def unforced(tables: list[str], statements: str) -> str:
    """Run ``statements`` as the owner with the tables' FORCE ROW LEVEL SECURITY lifted, and
    restore it: the owner then sees every tenant's rows (a migration moves all of them)."""
    names = ", ".join(f"'{table}'" for table in tables)
    return f"""DO $move$
DECLARE
  forced text[];
  t text;
BEGIN
  SELECT coalesce(array_agg(relname::text), '{{}}') INTO forced FROM pg_catalog.pg_class
   WHERE oid IN (SELECT to_regclass(n) FROM unnest(ARRAY[{names}]) n) AND relforcerowsecurity;
  FOREACH t IN ARRAY forced LOOP
    EXECUTE format('ALTER TABLE %I NO FORCE ROW LEVEL SECURITY', t);
  END LOOP;
  {statements}
  FOREACH t IN ARRAY forced LOOP
    EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
  END LOOP;
END
$move$;"""


# Every message once, from the first of its deliveries (they all carry the same payload).
COPY_MESSAGES = unforced(
    ["webhook_deliveries"],
    """INSERT INTO webhook_messages (id, event, payload, tenant_id, created_at)
  SELECT DISTINCT ON (message_id) message_id, event, payload, tenant_id, created_at
    FROM webhook_deliveries ORDER BY message_id, created_at;""",
)
RESTORE_PAYLOADS = (
    "ALTER TABLE webhook_deliveries ADD COLUMN payload jsonb;\n"
    + unforced(
        ["webhook_deliveries", "webhook_messages"],
        """UPDATE webhook_deliveries AS d SET payload = m.payload
    FROM webhook_messages AS m WHERE m.id = d.message_id;""",
    )
    + "\nALTER TABLE webhook_deliveries ALTER COLUMN payload SET NOT NULL;"
)


def restore_request_bodies(apps: Any, schema_editor: Any) -> None:
    """Backwards: each attempt's body again, the bytes it was sent with."""
    tables = ["webhook_delivery_attempts", "webhook_deliveries", "webhook_messages"]
    with schema_editor.connection.cursor() as cursor:
        forced = []
        for table in tables:
            cursor.execute(
                "SELECT relforcerowsecurity FROM pg_catalog.pg_class WHERE oid = to_regclass(%s)",
                [table],
            )
            if cursor.fetchone()[0]:
                forced.append(table)
                cursor.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
        cursor.execute(
            "SELECT a.id, d.event, d.created_at, m.payload FROM webhook_delivery_attempts AS a "
            "JOIN webhook_deliveries AS d ON d.id = a.delivery_id "
            "JOIN webhook_messages AS m ON m.id = d.message_id"
        )
        updates = []
        for attempt_id, event, created_at, payload in cursor.fetchall():
            envelope = {
                "type": event,
                "timestamp": created_at.isoformat().replace("+00:00", "Z"),
                "data": json.loads(payload) if isinstance(payload, str) else payload,
            }
            body = json.dumps(envelope, separators=(",", ":"), ensure_ascii=False)
            updates.append((body, attempt_id))
        cursor.executemany(
            "UPDATE webhook_delivery_attempts SET request_body = %s WHERE id = %s", updates
        )
        for table in forced:
            cursor.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")


class Migration(migrations.Migration):
    dependencies = [("better_webhooks", "0002_webhookdelivery_abandoned_claims")]

    operations = [
        migrations.CreateModel(
            name="WebhookMessage",
            fields=[
                ("id", models.TextField(primary_key=True, serialize=False)),
                ("event", models.TextField()),
                ("payload", models.JSONField()),
                ("tenant_id", models.UUIDField(blank=True, null=True)),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
            ],
            options={
                "verbose_name": "webhook message",
                "db_table": "webhook_messages",
                "ordering": ["-created_at"],
                "indexes": [
                    models.Index(
                        fields=["tenant_id", "created_at"], name="webhook_messages_tenant_idx"
                    ),
                    models.Index(fields=["created_at"], name="webhook_messages_created_idx"),
                ],
            },
        ),
        migrations.RunSQL(COPY_MESSAGES, reverse_sql=migrations.RunSQL.noop),
        better_tenant.operations.OptionalTenantRLS("webhook_messages"),
        # The delivery's message_id column becomes the foreign key to its message, in place:
        # same column, same index, no rewrite.
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveIndex(
                    model_name="webhookdelivery", name="webhook_deliveries_msg_idx"
                ),
                migrations.RemoveField(model_name="webhookdelivery", name="message_id"),
                migrations.AddField(
                    model_name="webhookdelivery",
                    name="message",
                    field=models.ForeignKey(
                        db_column="message_id",
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="deliveries",
                        to="better_webhooks.webhookmessage",
                    ),
                ),
                migrations.AddIndex(
                    model_name="webhookdelivery",
                    index=models.Index(fields=["message"], name="webhook_deliveries_msg_idx"),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    f"ALTER TABLE webhook_deliveries ADD CONSTRAINT {FK_NAME} FOREIGN KEY "
                    "(message_id) REFERENCES webhook_messages (id) DEFERRABLE INITIALLY DEFERRED;",
                    reverse_sql=f"ALTER TABLE webhook_deliveries DROP CONSTRAINT {FK_NAME};",
                ),
            ],
        ),
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.RemoveField(model_name="webhookdelivery", name="payload")],
            database_operations=[
                migrations.RunSQL(
                    "ALTER TABLE webhook_deliveries DROP COLUMN payload;",
                    reverse_sql=RESTORE_PAYLOADS,
                ),
            ],
        ),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveField(model_name="webhookdeliveryattempt", name="request_body")
            ],
            # Backwards the column comes back first, then its values.
            database_operations=[
                migrations.RunPython(migrations.RunPython.noop, restore_request_bodies),
                migrations.RunSQL(
                    "ALTER TABLE webhook_delivery_attempts DROP COLUMN request_body;",
                    reverse_sql="ALTER TABLE webhook_delivery_attempts "
                    "ADD COLUMN request_body text NOT NULL DEFAULT '';",
                ),
            ],
        ),
    ]
