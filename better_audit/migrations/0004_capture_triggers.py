from django.db import migrations

import better_audit.operations


class Migration(migrations.Migration):
    dependencies = [
        ("better_audit", "0003_admin_proof"),
    ]

    operations = [
        better_audit.operations.AuditTrail(),
    ]
