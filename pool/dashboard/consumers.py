"""The dashboard's websocket: pool events and once-a-second snapshots, for every role (a
viewer gets the same live data as an admin; the socket only sends).

A socket outlives the page load that opened it, so who may hold it is asked again every
VIBEADMIN_WS_RECHECK_S: the session must still exist and be unexpired, the password the
same as when it logged in, the user still active and in a role. Else it closes as logged out.
"""

from __future__ import annotations

import asyncio
import contextlib
from importlib import import_module

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.utils.crypto import constant_time_compare

from pool.models import roles
from pool.services.events import DASHBOARD_GROUP

SESSION_ENDED = 4401  # the close code the page reads as "logged out": it stops reconnecting


def session_group(session_key: str) -> str:
    return f"session.{session_key}"


class DashboardConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated or not await database_sync_to_async(may_watch)(user):
            await self.close(code=4403)
            return
        self.groups_joined = [DASHBOARD_GROUP, *self.session_groups()]
        for group in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()
        session = self.scope.get("session")
        self.watch = asyncio.ensure_future(
            self.watch_session(user.pk, session.session_key if session is not None else None)
        )

    async def watch_session(self, user_id: int, session_key: str | None) -> None:
        while True:
            await asyncio.sleep(settings.VIBEADMIN_WS_RECHECK_S)
            if not await database_sync_to_async(still_allowed)(user_id, session_key):
                await self.close(code=SESSION_ENDED)
                return

    def session_groups(self) -> list[str]:
        """The log-in's own group, which hears when that session logs out."""
        session = self.scope.get("session")
        key = session.session_key if session is not None else None
        return [session_group(key)] if key else []

    async def disconnect(self, code: int) -> None:
        watch = getattr(self, "watch", None)
        if watch is not None:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
        for group in getattr(self, "groups_joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive_json(self, content, **kwargs) -> None:
        """The page only listens; anything it sends is ignored."""

    # One handler per message type sent to the group.

    async def pool_event(self, message: dict) -> None:
        await self.send_json({"type": "event", "event": message["event"]})

    async def dashboard_snapshot(self, message: dict) -> None:
        await self.send_json({"type": "snapshot", **message["snapshot"]})

    async def session_ended(self, message: dict) -> None:
        """The operator logged out: no more pool data down this socket."""
        await self.close(code=SESSION_ENDED)


def may_watch(user) -> bool:
    return user.has_perm(roles.VIEW)


def still_allowed(user_id: int, session_key: str | None) -> bool:
    """Whether the log-in that opened a socket may still hold it: as Django's own check on
    each request (django.contrib.auth.get_user), with the session read afresh."""
    user = get_user_model().objects.filter(pk=user_id, is_active=True).first()
    if user is None or not may_watch(user):
        return False
    if session_key is None:  # a socket opened without a session (in-process tests)
        return True
    data = import_module(settings.SESSION_ENGINE).SessionStore(session_key).load()  # {} once expired
    if str(data.get(SESSION_KEY)) != str(user_id):
        return False
    hashes = [user.get_session_auth_hash()]
    if hasattr(user, "get_session_auth_fallback_hash"):  # hashes under SECRET_KEY_FALLBACKS
        hashes += list(user.get_session_auth_fallback_hash())
    return any(constant_time_compare(data.get(HASH_SESSION_KEY, ""), known) for known in hashes)
