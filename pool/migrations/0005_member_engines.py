from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('pool', '0004_solve_caps'),
    ]

    operations = [
        migrations.AddField(
            model_name='member',
            name='engine',
            field=models.CharField(choices=[('llama-server', "llama-server (llama.cpp's own, batching)"), ('llama-cpp-python', 'llama-cpp-python')], default='llama-cpp-python', max_length=20),
        ),
        migrations.AddField(
            model_name='member',
            name='api_key',
            field=models.CharField(blank=True, max_length=256),
        ),
        migrations.AddField(
            model_name='member',
            name='slots',
            field=models.PositiveIntegerField(blank=True, help_text='Answers it decodes at once; blank on a remote member: read from its /props', null=True),
        ),
        migrations.AlterField(
            model_name='member',
            name='n_ctx',
            field=models.PositiveIntegerField(default=4096, help_text='Context per slot, in tokens'),
        ),
    ]
