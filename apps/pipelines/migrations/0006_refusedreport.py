from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('pipelines', '0005_pipelineversion_withdrawn'),
    ]

    operations = [
        migrations.CreateModel(
            name='RefusedReport',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('reason', models.CharField(max_length=100, unique=True)),
                ('count', models.PositiveBigIntegerField(default=0)),
                ('last_seen', models.DateTimeField()),
                ('last_detail', models.CharField(blank=True, max_length=500)),
            ],
            options={
                'ordering': ['reason'],
            },
        ),
    ]
