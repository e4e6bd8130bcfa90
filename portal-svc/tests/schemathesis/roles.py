"""Creates the three roles Schemathesis runs as, on a fresh portal-svc.

Usage: roles.py BASE_URL ADMIN_EMAIL ADMIN_PASSWORD ROLE

Prints the bearer token of ROLE: `admin` (the platform admin's session),
`client_admin` (a client's administrator's session) or `api_key` (that client's
application key, which acts as an operator). The client also gets a device, a device
group and a payment, so that the operations reading them have something to find.
"""

import json
import sys
import urllib.request


def call(base, method, path, token=None, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", "Bearer " + token)
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def main():
    base, email, password, role = sys.argv[1:5]
    admin = call(base, "POST", "/v1/auth/login", body={"email": email, "password": password})["token"]
    if role == "admin":
        print(admin)
        return
    client = call(base, "POST", "/v1/clients", admin, {"name": "schemathesis"})["id"]
    ca_email, ca_password = "client-admin@schemathesis.test", "schemathesis client admin 2026"
    call(
        base,
        "POST",
        "/v1/users",
        admin,
        {"email": ca_email, "password": ca_password, "role": "client_admin", "client_id": client},
    )
    client_admin = call(base, "POST", "/v1/auth/login", body={"email": ca_email, "password": ca_password})["token"]
    key = call(base, "POST", f"/v1/clients/{client}/applications", admin, {"name": "schemathesis"})["api_key"]
    group = call(base, "POST", "/v1/device-groups", client_admin, {"name": "tills", "config": {"tip": True}})["id"]
    device = call(base, "POST", "/v1/devices", client_admin, {"serial": "SN-ST-1", "model": "T1"})["id"]
    call(base, "PUT", f"/v1/devices/{device}/group", client_admin, {"group_id": group})
    call(base, "POST", "/v1/transactions", key, {"kind": "payment", "amount": "10.00", "currency": "USD"})
    print(client_admin if role == "client_admin" else key)


if __name__ == "__main__":
    main()
