"""The dashboard's websocket: pool events and once-a-second snapshots, for staff only."""

from __future__ import annotations

from channels.generic.websocket import AsyncJsonWebsocketConsumer

from pool.events import DASHBOARD_GROUP

SESSION_ENDED = 4401  # the close code the page reads as "logged out": it stops reconnecting


def session_group(session_key: str) -> str:
    return f"session.{session_key}"


class DashboardConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated or not user.is_staff:
            await self.close(code=4403)
            return
        self.groups_joined = [DASHBOARD_GROUP, *self.session_groups()]
        for group in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()

    def session_groups(self) -> list[str]:
        """The log-in's own group, which hears when that session logs out."""
        session = self.scope.get("session")
        key = session.session_key if session is not None else None
        return [session_group(key)] if key else []

    async def disconnect(self, code: int) -> None:
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
