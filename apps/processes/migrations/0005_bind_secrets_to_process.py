"""Bind every stored secret to its process and pool.

Secrets used to be sealed with a master key itself, bound to nothing; workers now open only
values sealed with their pool's key for the process they start (workers.secrets). This seals
each stored value again that way, so processes that are waiting, retried or re-run keep their
secrets after the upgrade. It needs the master keys the web process uses (ORCH_SECRETS_KEYS,
ORCH_SECRETS_KEY or ORCH_SECRETS_KEY_FILE); without them it changes nothing and says to run
``manage.py rotate_secrets`` once they are set, which binds the same way.
"""

import sys

from django.db import migrations

BATCH = 500


def bind_to_process(apps, schema_editor):
    from workers.secrets import SecretsError, key_count, reseal

    Process = apps.get_model("processes", "Process")
    with_secrets = Process.objects.exclude(secret_env="")
    if not with_secrets.exists():
        return
    try:
        key_count()
    except SecretsError as exc:
        sys.stderr.write(f"\n  secrets not bound to their process yet ({exc}); set the key "
                         "and run `manage.py rotate_secrets`\n")
        return
    refused = 0
    rows = with_secrets.values_list("pk", "pool", "secret_env")
    for pk, pool, sealed in rows.iterator(chunk_size=BATCH):
        try:
            new = reseal(sealed, process_id=pk, pool=pool)
        except SecretsError:  # no configured key opens it: it opened nowhere before either
            refused += 1
            continue
        if new is not None:
            Process.objects.filter(pk=pk, secret_env=sealed).update(secret_env=new)
    if refused:
        sys.stderr.write(f"\n  {refused} process(es) hold secrets that no configured key "
                         "opens; `manage.py rotate_secrets` lists them\n")


class Migration(migrations.Migration):

    dependencies = [
        ("processes", "0004_process_spec_sent_at"),
    ]

    # Going back leaves the values bound: the code of before would not open them, re-run
    # those processes instead.
    operations = [
        migrations.RunPython(bind_to_process, migrations.RunPython.noop),
    ]
