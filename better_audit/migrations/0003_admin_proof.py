from django.db import migrations

import better_audit.operations


class Migration(migrations.Migration):
    dependencies = [
        ("better_audit", "0002_tamper_evidence"),
    ]

    operations = [
        better_audit.operations.AuditAdminProof(),
    ]
