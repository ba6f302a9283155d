"""The `Moderators` group with exactly the permissions the moderation queue needs, and every
user whose role is already `moderator` in it (accounts keeps the membership in step with the
role from then on, see accounts/signals.py).

Permissions are created here rather than left to post_migrate, which runs only after every
migration: the group needs them now. Names match what Django itself would create.
"""

from django.conf import settings
from django.db import migrations

GROUP = "Moderators"
# (app label, model, codename, name)
PERMISSIONS = (
    # The queue: list and open items, approve or reject them, ban their players.
    ("scoring", "reviewitem", "view_reviewitem", "Can view moderation queue item"),
    ("scoring", "reviewitem", "change_reviewitem", "Can change moderation queue item"),
    ("scoring", "reviewitem", "ban_player", "Can ban a player from the moderation queue"),
    # The audit log, to read a player's whole history, and the log of decisions.
    ("scoring", "scoreupdate", "view_scoreupdate", "Can view score update"),
    ("scoring", "moderationdecision", "view_moderationdecision", "Can view moderation decision"),
)


def create_group(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("auth", "Group")
    User = apps.get_model(settings.AUTH_USER_MODEL)

    permissions = []
    for app_label, model, codename, name in PERMISSIONS:
        content_type, _ = ContentType.objects.get_or_create(app_label=app_label, model=model)
        permission, _ = Permission.objects.get_or_create(
            content_type=content_type, codename=codename, defaults={"name": name}
        )
        permissions.append(permission)
    group, _ = Group.objects.get_or_create(name=GROUP)
    group.permissions.set(permissions)
    group.user_set.add(*User.objects.filter(role="moderator"))


def delete_group(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name=GROUP).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("scoring", "0002_moderation"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [migrations.RunPython(create_group, delete_group)]
