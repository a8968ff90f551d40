"""The dashboard's websocket: pool events and once-a-second snapshots, for staff only."""

from __future__ import annotations

from channels.generic.websocket import AsyncJsonWebsocketConsumer

from pool.events import DASHBOARD_GROUP


class DashboardConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated or not user.is_staff:
            await self.close(code=4403)
            return
        await self.channel_layer.group_add(DASHBOARD_GROUP, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(DASHBOARD_GROUP, self.channel_name)

    async def receive_json(self, content, **kwargs) -> None:
        """The page only listens; anything it sends is ignored."""

    # One handler per message type sent to the group.

    async def pool_event(self, message: dict) -> None:
        await self.send_json({"type": "event", "event": message["event"]})

    async def dashboard_snapshot(self, message: dict) -> None:
        await self.send_json({"type": "snapshot", **message["snapshot"]})
