"""Load the default status maps, and create the orders room's one beat task."""

from __future__ import annotations

from django.db import migrations


def load(apps, schema_editor):  # type: ignore[no-untyped-def]
    from orders.statuses import default_status_maps

    StatusMapping = apps.get_model("orders", "StatusMapping")
    rows = [
        StatusMapping(platform=platform, raw_status=raw, status=status)
        for platform, mapping in default_status_maps().items()
        for raw, status in mapping.items()
    ]
    StatusMapping.objects.bulk_create(rows, ignore_conflicts=True)

    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every, _ = IntervalSchedule.objects.get_or_create(every=10, period="seconds")
    PeriodicTask.objects.update_or_create(
        name="orders: re-enqueue deliveries, WooCommerce catch-up, prune rejections",
        defaults={"task": "orders.tick_task", "interval": every, "enabled": True, "queue": "webhooks"},
    )


def unload(apps, schema_editor):  # type: ignore[no-untyped-def]
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(task="orders.tick_task").delete()


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]
    operations = [migrations.RunPython(load, unload)]
