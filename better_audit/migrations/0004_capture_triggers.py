from django.db import migrations

import better_audit.operations


class Migration(migrations.Migration):
    dependencies = [
        ("better_audit", "0003_admin_proof"),
    ]

    operations = [
        migrations.RemoveConstraint(model_name="auditlog", name="audit_logs_operation_check"),
        migrations.RemoveConstraint(model_name="auditlog", name="audit_logs_severity_check"),
        better_audit.operations.AuditTrail(),
    ]
