"""The dashboard's websocket: every role gets snapshots and pool events (a viewer the same
live data as an operator); anonymous, role-less and cross-origin sockets are refused. Every communicator is disconnected."""

import pytest
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.urls import reverse

from pool.dashboard import live
from pool.dashboard.consumers import SESSION_ENDED, DashboardConsumer
from pool.models import roles
from pool.services.events import DASHBOARD_GROUP
from pool.services.members import member_add
from pool.services.users import user_create, user_set_role
from vibeadmin.asgi import application

# The consumer's ORM helpers and the snapshot run in other threads: they must see committed rows.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def operator(django_user_model):
    return user_create(name="operator", role=roles.OPERATOR, password="x")[0]


@pytest.fixture
def student(django_user_model):
    return django_user_model.objects.create_user("student", password="x")


def socket_for(user) -> WebsocketCommunicator:
    """The consumer alone, with the user the auth middleware would have put in the scope."""
    communicator = WebsocketCommunicator(DashboardConsumer.as_asgi(), "/ws/dashboard/")
    communicator.scope["user"] = user
    return communicator


def session_socket(client, user, origin: str = "http://127.0.0.1") -> WebsocketCommunicator:
    """Through the real ASGI stack: origin check, session cookie, auth middleware."""
    client.force_login(user)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    headers = [(b"cookie", cookie), (b"origin", origin.encode()), (b"host", b"127.0.0.1")]
    return WebsocketCommunicator(application, "/ws/dashboard/", headers=headers)


async def test_an_operator_gets_a_snapshot_every_push(operator):
    await database_sync(lambda: member_add(name="alpha"))
    communicator = socket_for(operator)
    try:
        connected, _ = await communicator.connect()
        assert connected
        await live.push_snapshot()
        message = await communicator.receive_json_from(timeout=5)
        assert message["type"] == "snapshot"
        assert [m["name"] for m in message["members"]] == ["alpha"]
        assert {"rps", "p50", "queue", "ready"} <= message["totals"].keys()
        assert "no NVIDIA driver" in message["gpu"]["reason"] or message["gpu"]["available"]
        assert message["point"]["t"] == message["t"] - 1
    finally:
        await communicator.disconnect()


async def test_a_viewer_gets_the_same_live_data_as_an_admin():
    await database_sync(lambda: member_add(name="alpha"))
    viewer, admin = await database_sync(
        lambda: [user_create(name=role, role=role)[0] for role in (roles.VIEWER, roles.ADMIN)]
    )
    sockets = [socket_for(viewer), socket_for(admin)]
    try:
        for communicator in sockets:
            assert (await communicator.connect())[0]
        await live.push_snapshot()
        seen = [await communicator.receive_json_from(timeout=5) for communicator in sockets]
        assert seen[0]["type"] == "snapshot" and seen[0] == seen[1]
    finally:
        for communicator in sockets:
            await communicator.disconnect()


async def test_an_operator_gets_pool_events_as_they_happen(operator):
    communicator = socket_for(operator)
    try:
        assert (await communicator.connect())[0]
        event = {"kind": "state", "member": "alpha", "message": "alpha: starting -> ready"}
        await get_channel_layer().group_send(DASHBOARD_GROUP, {"type": "pool.event", "event": event})
        assert await communicator.receive_json_from(timeout=5) == {"type": "event", "event": event}
    finally:
        await communicator.disconnect()


@pytest.mark.parametrize("who", ["anonymous", "student"])
async def test_anyone_but_staff_is_refused(who, student):
    from django.contrib.auth.models import AnonymousUser

    communicator = socket_for(AnonymousUser() if who == "anonymous" else student)
    try:
        connected, code = await communicator.connect()
        assert not connected and code == 4403
    finally:
        await communicator.disconnect()


async def test_a_staff_session_cookie_opens_the_socket_through_the_asgi_stack(client, operator):
    communicator = await database_sync(lambda: session_socket(client, operator))
    try:
        connected, _ = await communicator.connect()
        assert connected
    finally:
        await communicator.disconnect()


async def test_logging_out_closes_that_sessions_socket_and_only_that_one(client, operator):
    from django.test import Client

    other_browser = Client()
    communicator = await database_sync(lambda: session_socket(client, operator))
    other = await database_sync(lambda: session_socket(other_browser, operator))
    try:
        assert (await communicator.connect())[0] and (await other.connect())[0]
        await database_sync(lambda: client.post(reverse("logout")))
        closed = await communicator.receive_output(timeout=5)
        assert (closed["type"], closed.get("code")) == ("websocket.close", SESSION_ENDED)
        assert await other.receive_nothing(timeout=0.2)  # the other log-in still listens
    finally:
        await communicator.disconnect()
        await other.disconnect()


def change_password(user) -> None:
    user.set_password("a-new-password")
    user.save()


def take_the_role_away(user) -> None:
    user_create(name="another-admin", role=roles.ADMIN)
    user_set_role(user=user, role=roles.NO_ROLE)


def expire_sessions(user) -> None:
    from django.contrib.sessions.models import Session
    from django.utils import timezone

    Session.objects.update(expire_date=timezone.now() - timezone.timedelta(seconds=1))


@pytest.mark.parametrize("change", [change_password, take_the_role_away, expire_sessions])
async def test_a_socket_closes_within_seconds_once_its_log_in_no_longer_holds(
    client, operator, settings, change
):
    settings.VIBEADMIN_WS_RECHECK_S = 0.2
    communicator = await database_sync(lambda: session_socket(client, operator))
    try:
        assert (await communicator.connect())[0]
        assert await communicator.receive_nothing(timeout=0.5)  # still allowed: it stays open

        await database_sync(lambda: change(operator))

        closed = await communicator.receive_output(timeout=5)
        assert (closed["type"], closed.get("code")) == ("websocket.close", SESSION_ENDED)
    finally:
        await communicator.disconnect()


async def test_a_socket_from_another_origin_is_refused_even_with_a_staff_session(client, operator):
    communicator = await database_sync(lambda: session_socket(client, operator, origin="http://evil.example"))
    try:
        connected, _ = await communicator.connect()
        assert not connected
    finally:
        await communicator.disconnect()


async def database_sync(fn):
    from channels.db import database_sync_to_async

    return await database_sync_to_async(fn)()


async def test_the_background_loops_push_a_snapshot_about_once_a_second(operator):
    import asyncio

    communicator = socket_for(operator)
    tasks = live.start_background(asyncio.get_running_loop())
    try:
        assert (await communicator.connect())[0]
        first = await communicator.receive_json_from(timeout=5)
        second = await communicator.receive_json_from(timeout=5)
        assert first["type"] == second["type"] == "snapshot"
        assert 0 <= second["t"] - first["t"] <= 2
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await communicator.disconnect()
