"""The first run creates the first members and the default alert rules, once."""

import pytest

from pool.bootstrap import first_run
from pool.models import AlertRule, Member, PoolSettings

pytestmark = pytest.mark.django_db


def test_the_first_run_creates_the_configured_members_once(settings):
    settings.VIBEADMIN_MEMBERS = 3
    first_run(lambda line: None, with_members=True)
    first_run(lambda line: None, with_members=True)
    assert Member.objects.count() == 3


def test_removing_every_member_does_not_bring_them_back_on_the_next_start(settings):
    settings.VIBEADMIN_MEMBERS = 2
    first_run(lambda line: None, with_members=True)
    Member.objects.all().delete()
    first_run(lambda line: None, with_members=True)
    assert Member.objects.count() == 0


def test_choosing_a_strategy_before_the_first_start_still_gets_the_first_members(settings):
    settings.VIBEADMIN_MEMBERS = 2
    PoolSettings.objects.create(pk=1, strategy="round_robin")
    first_run(lambda line: None, with_members=True)
    assert Member.objects.count() == 2


def test_a_gateway_only_first_run_creates_rules_but_no_members(settings):
    settings.VIBEADMIN_MEMBERS = 2
    first_run(lambda line: None, with_members=False)
    assert Member.objects.count() == 0
    assert AlertRule.objects.count() == 4
