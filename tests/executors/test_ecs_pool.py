"""An ECS pool's settings as the executor reads them: ``null`` in a pool file means "unset"
(workers/pool_settings.py), so the default applies, as when the key is absent."""

from __future__ import annotations

from workers.executors.ecs.pool import EcsPool


def test_null_settings_take_their_defaults():
    absent = EcsPool.from_settings("ecs-spot", {})
    null = EcsPool.from_settings("ecs-spot", {
        "family_prefix": None, "log_settle_s": None, "create_log_group": None,
    })
    assert (null.family_prefix, null.log_settle_s, null.create_log_group) == (
        absent.family_prefix, absent.log_settle_s, absent.create_log_group) == ("orch-", 5.0, True)


def test_an_empty_family_prefix_is_kept():
    assert EcsPool.from_settings("ecs-spot", {"family_prefix": ""}).family_prefix == ""
