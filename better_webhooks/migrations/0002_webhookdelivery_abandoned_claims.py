"""Count the claims that took a delivery over from a worker whose lease expired."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("better_webhooks", "0001_initial")]

    # A constant database default: PostgreSQL adds the column without rewriting the table, and
    # existing rows (and the raw INSERT of send()) read 0.
    operations = [
        migrations.AddField(
            model_name="webhookdelivery",
            name="abandoned_claims",
            field=models.IntegerField(db_default=0, default=0),
        ),
    ]
