from django.db import migrations, models

import pool.models.pool_settings as defaults


class Migration(migrations.Migration):

    dependencies = [
        ('pool', '0005_member_engines'),
    ]

    operations = [
        migrations.AddField(
            model_name='poolsettings',
            name='solve_mode',
            field=models.CharField(choices=defaults.SOLVE_MODES, default='solution', max_length=16),
        ),
        migrations.AddField(
            model_name='poolsettings',
            name='solve_max_turns',
            field=models.PositiveIntegerField(default=6, help_text='Questions of one conversation sent to the model; older ones are left out'),
        ),
        migrations.AddField(
            model_name='poolsettings',
            name='solve_max_chars',
            field=models.PositiveIntegerField(default=8000, help_text='Characters of one conversation sent to the model; older turns are left out'),
        ),
        migrations.AddField(
            model_name='poolsettings',
            name='prompt_tutor',
            field=models.TextField(default=defaults.DEFAULT_TUTOR_PROMPT),
        ),
        migrations.AddField(
            model_name='poolsettings',
            name='hint_first',
            field=models.TextField(default=defaults.DEFAULT_HINTS['first']),
        ),
        migrations.AddField(
            model_name='poolsettings',
            name='hint_another',
            field=models.TextField(default=defaults.DEFAULT_HINTS['another']),
        ),
        migrations.AddField(
            model_name='poolsettings',
            name='hint_next_step',
            field=models.TextField(default=defaults.DEFAULT_HINTS['next_step']),
        ),
        migrations.AddField(
            model_name='poolsettings',
            name='hint_solution',
            field=models.TextField(default=defaults.DEFAULT_HINTS['solution']),
        ),
    ]
