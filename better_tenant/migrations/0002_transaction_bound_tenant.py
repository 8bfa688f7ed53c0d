from django.db import migrations

import better_tenant.upgrades


class Migration(migrations.Migration):
    dependencies = [
        ("better_tenant", "0001_initial"),
    ]

    operations = [
        better_tenant.upgrades.BindTenantToTransaction(),
        better_tenant.upgrades.InstallTenantLookup(),
    ]
