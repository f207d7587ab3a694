"""Inserting many rows of one model that differ in a few fields only: the values every row
shares are prepared for the database once, not once per row as bulk_create prepares them (a
process has some forty columns; 10,000 of them spent seconds there)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from django.db import connections, router
from django.db.models import Model


def rows_insert(model: type[Model], shared: dict[str, Any], varying: Sequence[str],
                rows: Iterable[Sequence[Any]]) -> int:
    """INSERT one row of ``model`` per item of ``rows`` (the values of the ``varying``
    fields, in that order); every other concrete field takes its value in ``shared``, else
    its default as a new instance would (auto_now stamps included). Returns the rows
    inserted. No signals are sent and no objects are made, as with bulk_create."""
    connection = connections[router.db_for_write(model)]
    template = model(**shared)
    fields = {f.attname: f for f in model._meta.concrete_fields}
    moving = [fields[name] for name in varying]  # "process_id": a foreign key's column
    values = {f: f.pre_save(template, add=True) for f in model._meta.concrete_fields
              if f not in moving and not f.db_returning}  # an auto id is the database's
    # A value the database computes (db_default alone) is left to it.
    fixed = [f for f, value in values.items() if not hasattr(value, "resolve_expression")]
    constants = tuple(f.get_db_prep_save(values[f], connection) for f in fixed)
    quote = connection.ops.quote_name
    columns = ", ".join(quote(str(f.column)) for f in (*moving, *fixed))
    placeholder = "(" + ", ".join(["%s"] * (len(moving) + len(fixed))) + ")"
    # What the database takes in one statement (SQLite bounds the number of parameters).
    batch = connection.ops.bulk_batch_size([*moving, *fixed], [None] * 1000) or 1000
    # Names from the model, quoted; every value is a parameter.
    head = f"INSERT INTO {quote(model._meta.db_table)} ({columns}) VALUES "  # noqa: S608
    done = 0
    pending: list[Any] = []
    count = 0
    with connection.cursor() as cursor:
        for row in rows:
            pending.extend(f.get_db_prep_save(value, connection)
                           for f, value in zip(moving, row, strict=True))
            pending.extend(constants)
            count += 1
            if count == batch:
                cursor.execute(head + ", ".join([placeholder] * count), pending)
                done, pending, count = done + count, [], 0
        if count:
            cursor.execute(head + ", ".join([placeholder] * count), pending)
            done += count
    return done
