"""Sign-in and local users over HTTP, on both databases: the token `POST /api/v1/auth/token`
issues is accepted by the API (and external JWTs still are); a wrong password and an unknown
user get one answer; lock-out and unlock; every attempt is an audit record with the client
address and request id; admins manage only their organisation's users; a user changes their
own password, and a disabled user's token stops working."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
import jwt as pyjwt
import pytest
from conftest import JWT_SECRET, ApiHarness

from conveyor.model import utc_now
from conveyor.store.audit import AuditFilter

PASSWORD = "ada's long pass phrase"


async def sign_in(api: ApiHarness, user_id: str, password: str) -> httpx.Response:
    return await api.client.post("/api/v1/auth/token", json={"userId": user_id, "password": password})


def bearer(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['data']['accessToken']}"}


@pytest.fixture
async def ada(api: ApiHarness) -> ApiHarness:
    await api.conveyor.users.create("ada", name="Ada Lovelace", role="operator", password=PASSWORD, org_id="org-a")
    return api


async def test_sign_in_issues_a_jwt_the_api_accepts(ada: ApiHarness) -> None:
    answer = await sign_in(ada, "ada", PASSWORD)
    data = answer.json()["data"]
    assert data["tokenType"] == "Bearer" and data["user"] == {
        "userId": "ada", "name": "Ada Lovelace", "role": "operator", "orgId": "org-a",
    }  # fmt: skip
    claims = pyjwt.decode(data["accessToken"], JWT_SECRET, algorithms=["HS256"], options={"verify_aud": False})
    assert (claims["sub"], claims["org_id"], claims["roles"], claims["name"]) == (
        "ada", "org-a", ["operator"], "Ada Lovelace",
    )  # fmt: skip
    created = await ada.client.post(
        "/api/v1/jobs", json={"type": "t.echo", "data": {"value": 1}}, headers=bearer(answer)
    )
    assert created.status_code == 201, created.text
    job = await ada.conveyor.engine.get(uuid.UUID(created.json()["data"]["jobId"]))
    assert (job.owner.user_id, job.owner.org_id) == ("ada", "org-a")
    # external JWTs are accepted as before
    assert (await ada.client.get("/api/v1/jobs", headers=ada.jwt("someone", ("viewer",)))).status_code == 200


async def test_wrong_password_and_unknown_user_get_one_answer(ada: ApiHarness) -> None:
    wrong = await sign_in(ada, "ada", "not the password at all")
    unknown = await sign_in(ada, "nobody", "not the password at all")
    assert wrong.status_code == unknown.status_code == 401
    for response in (wrong, unknown):
        body = response.json()
        assert body["details"] == {"code": "INVALID_CREDENTIALS"}
        assert "bearer" in response.headers["www-authenticate"].lower()
    assert wrong.json()["error"] == unknown.json()["error"]
    failed, _ = await ada.conveyor.audit.list(AuditFilter(action="user.sign_in_failed"), limit=10)
    assert [(r.object_id, r.after["reason"]) for r in failed] == [("ada", "wrong password"), ("nobody", "unknown user")]
    assert failed[0].request_id == wrong.headers["x-request-id"] and failed[0].client_address == "127.0.0.1"


async def test_lock_out_through_the_api_then_unlock(ada: ApiHarness) -> None:
    for _ in range(5):
        assert (await sign_in(ada, "ada", "not the password at all")).status_code == 401
    assert (await sign_in(ada, "ada", PASSWORD)).status_code == 401  # locked out
    admin = await ada.key("admin", org="org-a")
    shown = (await ada.client.get("/api/v1/users/ada", headers=admin)).json()["data"]
    assert shown["lockedUntil"] is not None
    unlocked = await ada.client.post("/api/v1/users/ada/unlock", headers=admin)
    assert unlocked.status_code == 200 and unlocked.json()["data"]["lockedUntil"] is None
    assert (await sign_in(ada, "ada", PASSWORD)).status_code == 200
    actions = [r.action for r in (await ada.conveyor.audit.list(AuditFilter(object_id="ada"), limit=50))[0]]
    assert actions.count("user.sign_in_failed") == 6 and "user.locked" in actions and "user.unlocked" in actions


async def test_a_lock_out_ends_by_itself(ada: ApiHarness) -> None:
    for _ in range(5):
        await sign_in(ada, "ada", "not the password at all")
    assert (await sign_in(ada, "ada", PASSWORD)).status_code == 401

    # the period passed: as if the clock had moved on
    def ended(_user: object) -> dict[str, object]:
        return {"locked_until": utc_now() - timedelta(seconds=1)}

    await ada.conveyor.store.change_user("ada", ended, lambda _b, _a: [])
    assert (await sign_in(ada, "ada", PASSWORD)).status_code == 200


async def test_a_disabled_users_token_stops_working(ada: ApiHarness) -> None:
    token = bearer(await sign_in(ada, "ada", PASSWORD))
    assert (await ada.client.get("/api/v1/jobs", headers=token)).status_code == 200
    admin = await ada.key("admin", org="org-a")
    assert (await ada.client.patch("/api/v1/users/ada", json={"disabled": True}, headers=admin)).status_code == 200
    refused = await ada.client.get("/api/v1/jobs", headers=token)
    assert refused.status_code == 401 and refused.json()["details"]["code"] == "UNAUTHORIZED"
    assert (await sign_in(ada, "ada", PASSWORD)).status_code == 401


async def test_change_own_password(ada: ApiHarness) -> None:
    token = bearer(await sign_in(ada, "ada", PASSWORD))
    url = "/api/v1/auth/password"
    weak = await ada.client.post(url, json={"currentPassword": PASSWORD, "newPassword": "short"}, headers=token)
    assert weak.status_code == 400 and weak.json()["details"]["field"] == "newPassword", weak.text
    wrong = await ada.client.post(
        url, json={"currentPassword": "not the password", "newPassword": "a new long pass phrase"}, headers=token
    )
    assert wrong.status_code == 403 and wrong.json()["details"]["code"] == "INVALID_CREDENTIALS"
    done = await ada.client.post(
        url, json={"currentPassword": PASSWORD, "newPassword": "a new long pass phrase"}, headers=token
    )
    assert done.status_code == 200, done.text
    assert (await sign_in(ada, "ada", PASSWORD)).status_code == 401
    assert (await sign_in(ada, "ada", "a new long pass phrase")).status_code == 200
    key = await ada.key("operator", org="org-a")
    by_key = await ada.client.post(
        url, json={"currentPassword": "x", "newPassword": "a new long pass phrase"}, headers=key
    )
    assert by_key.status_code == 403


async def test_admins_manage_only_their_organisations_users(ada: ApiHarness) -> None:
    admin_a = await ada.key("admin", org="org-a")
    admin_b = await ada.key("admin", org="org-b")
    root = await ada.key("super_admin", org=None)
    body = {"userId": "bea", "name": "Bea B", "role": "user", "password": "bea's long pass phrase"}
    made = await ada.client.post("/api/v1/users", json=body, headers=admin_b)
    assert made.status_code == 201 and made.json()["data"]["orgId"] == "org-b", made.text
    assert "password" not in str(made.json()).lower().replace("passwordchangedat", "")
    for method, path, json in [
        ("GET", "/api/v1/users/ada", None),
        ("PATCH", "/api/v1/users/ada", {"role": "viewer"}),
        ("POST", "/api/v1/users/ada/password", {"password": "a takeover pass phrase"}),
        ("POST", "/api/v1/users/ada/unlock", None),
    ]:
        response = await ada.client.request(method, path, json=json, headers=admin_b)
        assert response.status_code == 404 and response.json()["details"]["code"] == "USER_NOT_FOUND", (
            path,
            response.text,
        )
    assert (await ada.conveyor.users.get("ada")).role == "operator"  # type: ignore[union-attr]
    listed = (await ada.client.get("/api/v1/users", headers=admin_a)).json()["data"]["users"]
    assert [u["userId"] for u in listed] == ["ada"]
    everyone = (await ada.client.get("/api/v1/users", headers=root)).json()["data"]["users"]
    assert [u["userId"] for u in everyone] == ["ada", "bea"]
    other_org = await ada.client.post("/api/v1/users", json={**body, "userId": "cy", "orgId": "org-a"}, headers=admin_b)
    assert other_org.status_code == 403 and other_org.json()["details"]["field"] == "orgId"
    promote = await ada.client.post(
        "/api/v1/users", json={**body, "userId": "cy", "role": "super_admin"}, headers=admin_b
    )
    assert promote.status_code == 403 and promote.json()["details"]["field"] == "role"
    again = await ada.client.post("/api/v1/users", json=body, headers=admin_b)
    assert again.status_code == 409 and again.json()["details"]["code"] == "USER_EXISTS"
    weak = await ada.client.post("/api/v1/users", json={**body, "userId": "dee", "password": "dee"}, headers=admin_b)
    assert weak.status_code == 400 and weak.json()["details"]["field"] == "password", weak.text
    reset = await ada.client.post("/api/v1/users/ada/password", json={"password": "reset by admin a"}, headers=admin_a)
    assert reset.status_code == 200
    assert (await sign_in(ada, "ada", "reset by admin a")).status_code == 200
    changed, _ = await ada.conveyor.audit.list(AuditFilter(object_type="user"), limit=50)
    assert {"user.created", "user.password_reset", "user.signed_in"} <= {r.action for r in changed}
