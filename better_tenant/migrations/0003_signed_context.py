from django.db import migrations

import better_tenant.upgrades


class Migration(migrations.Migration):
    dependencies = [
        ("better_tenant", "0002_transaction_bound_tenant"),
    ]

    operations = [
        better_tenant.upgrades.SignTenantContext(),
    ]
