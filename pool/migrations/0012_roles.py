from django.db import migrations, models

# The roles as this migration made them (pool/models/roles.py may change later).
PERMISSIONS = [
    ("view_dashboard", "See every dashboard page and its live data"),
    ("operate", "Change the pool: members, routing, alerts, autoscaling, rollouts, evals"),
    ("administer", "Manage API keys, users and roles"),
]
ROLES = {
    "viewer": ["view_dashboard"],
    "operator": ["view_dashboard", "operate"],
    "admin": ["view_dashboard", "operate", "administer"],
}


def make_roles(apps, schema_editor):
    """The three roles' groups; staff who could do everything before keep it as admins."""
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("auth", "Group")
    User = apps.get_model("auth", "User")
    content_type, _ = ContentType.objects.get_or_create(app_label="pool", model="poolsettings")
    permissions = {
        codename: Permission.objects.get_or_create(
            content_type=content_type, codename=codename, defaults={"name": name}
        )[0]
        for codename, name in PERMISSIONS
    }
    for role, codenames in ROLES.items():
        group, _ = Group.objects.get_or_create(name=role)
        group.permissions.set([permissions[c] for c in codenames])
    admins = Group.objects.get(name="admin")
    for user in User.objects.filter(is_staff=True, is_superuser=False):
        user.groups.add(admins)


class Migration(migrations.Migration):

    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("pool", "0011_voting"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="poolsettings",
            options={
                "permissions": PERMISSIONS,
                "verbose_name": "pool settings",
                "verbose_name_plural": "pool settings",
            },
        ),
        migrations.AlterField(
            model_name="poolevent",
            name="kind",
            field=models.CharField(
                choices=[
                    ("state", "state change"),
                    ("action", "operator action"),
                    ("scaling", "autoscaling"),
                    ("change", "desired state changed"),
                    ("denied", "refused: the role may not"),
                ],
                max_length=16,
            ),
        ),
        migrations.RunPython(make_roles, migrations.RunPython.noop),
    ]
