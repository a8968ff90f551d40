from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('pool', '0003_fair_sharing'),
    ]

    operations = [
        migrations.AddField(
            model_name='poolsettings',
            name='solve_inflight_per_address',
            field=models.PositiveIntegerField(default=1, help_text='Solve-page answers in flight per address'),
        ),
        migrations.AddField(
            model_name='poolsettings',
            name='solve_max_tokens',
            field=models.PositiveIntegerField(default=2048, help_text='The longest answer a student may ask for, in tokens'),
        ),
        migrations.AddField(
            model_name='poolsettings',
            name='solve_pool_share',
            field=models.FloatField(default=0.5, help_text="The share of the routable members' slots that students may use at once"),
        ),
    ]
