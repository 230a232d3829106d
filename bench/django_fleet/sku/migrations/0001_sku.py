"""W2's change (a nullable ``sku`` and its index on ``products``), as a Django project writes
DDL for another app's table; reversible, so the benchmark can run it twice."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("fleet", "0001_initial")]
    operations = [
        migrations.RunSQL(
            "ALTER TABLE products ADD COLUMN sku varchar(64); "
            "CREATE INDEX products_sku_idx ON products (sku)",
            reverse_sql="DROP INDEX products_sku_idx; ALTER TABLE products DROP COLUMN sku",
        )
    ]
