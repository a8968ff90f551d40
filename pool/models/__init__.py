"""The pool's tables. The database holds desired state (what operators want) and observed
state (what the supervisor last saw); everything else reads it from here."""

from pool.models.alerts import AlertEvent, AlertRule
from pool.models.apikey import ApiKey
from pool.models.cache import CacheEntry
from pool.models.events import PoolEvent
from pool.models.library import Model
from pool.models.member import Member
from pool.models.node import Node
from pool.models.pool_settings import PoolSettings
from pool.models.profile import ProfileRun
from pool.models.quality import EvalAnswer, EvalRun, LeakRate
from pool.models.rollout import Rollout
from pool.models.usage import QuotaWarning, StudentDay, UsageDay

__all__ = [
    "AlertEvent",
    "AlertRule",
    "ApiKey",
    "EvalAnswer",
    "EvalRun",
    "LeakRate",
    "CacheEntry",
    "Member",
    "Model",
    "Node",
    "PoolEvent",
    "PoolSettings",
    "ProfileRun",
    "QuotaWarning",
    "Rollout",
    "StudentDay",
    "UsageDay",
]
