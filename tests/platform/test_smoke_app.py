from fastapi.testclient import TestClient


def test_health_and_ready(client: TestClient) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": True, "migrations_current": True}


def test_login_and_me(client: TestClient, login) -> None:
    headers = login("alice", "handler", department="310101-CGZF")
    me = client.get("/api/auth/me", headers=headers)
    assert me.status_code == 200
    assert me.json()["department_code"] == "310101-CGZF"
