from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('pool', '0009_answer_cache_quotas'),
    ]

    operations = [
        migrations.AddField(
            model_name='poolsettings',
            name='solve_mode',
            field=models.CharField(choices=[('solution', 'Solution: the whole answer at once'), ('hints', 'Hints first: the student asks for more')], default='solution', max_length=16),
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
            field=models.TextField(default='You are a patient tutor. You help a student find the answer by themselves, one step at a time. Never state the final answer or the final result unless the student asks for the full solution.'),
        ),
        migrations.AddField(
            model_name='poolsettings',
            name='hint_first',
            field=models.TextField(default='Do not solve this problem. Give me only one short hint (at most three sentences) for the first step. Do not compute anything, do not write the final answer, and do not use \\boxed.'),
        ),
        migrations.AddField(
            model_name='poolsettings',
            name='hint_another',
            field=models.TextField(default='Give me one more short hint that goes a little further than the last one. Still do not write the final answer.'),
        ),
        migrations.AddField(
            model_name='poolsettings',
            name='hint_next_step',
            field=models.TextField(default='Work out only the next step of the solution, briefly. Stop before the final result and do not write the final answer.'),
        ),
        migrations.AddField(
            model_name='poolsettings',
            name='hint_solution',
            field=models.TextField(default='Now give the full solution, step by step, and end with the final answer.'),
        ),
    ]
