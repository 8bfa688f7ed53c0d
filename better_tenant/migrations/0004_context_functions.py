from django.db import migrations

import better_tenant.upgrades


class Migration(migrations.Migration):
    dependencies = [
        ("better_tenant", "0003_signed_context"),
    ]

    operations = [
        better_tenant.upgrades.RefreshContextFunctions(),
    ]
