"""hvac (the Python Vault client, PyPI) against a running Castellan (issue 20).

usage: vault_hvac.py kv URL ROLE_ID SECRET_ID
       vault_hvac.py pki URL ROLE_ID SECRET_ID OUT_DIR

Every check is an assert; the last line printed is a JSON summary the Rust test compares with the
native API.
"""

import json
import sys

import hvac
import hvac.exceptions
import requests


def expect(exc, fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except exc as e:
        return e
    raise AssertionError(f"{fn} did not raise {exc.__name__}")


def vault_error_shape(url, method, path, token=None, body=None):
    headers = {"X-Vault-Request": "true"}
    if token:
        headers["X-Vault-Token"] = token
    r = requests.request(method, f"{url}/v1/{path}", headers=headers, json=body, timeout=10)
    doc = r.json()
    assert set(doc) == {"errors"}, doc
    assert isinstance(doc["errors"], list), doc
    return r.status_code, doc["errors"]


def login(url, role_id, secret_id):
    client = hvac.Client(url=url)
    health = client.sys.read_health_status(method="GET")
    assert health["initialized"] is True and health["sealed"] is False, health
    assert not client.is_authenticated()
    # A wrong secret_id is Vault's 400 with an errors list.
    e = expect(hvac.exceptions.InvalidRequest, client.auth.approle.login, role_id=role_id, secret_id="nope")
    assert "invalid role_id or secret_id" in str(e), e
    resp = client.auth.approle.login(role_id=role_id, secret_id=secret_id)
    assert resp["auth"]["client_token"].startswith("cvt."), resp
    assert resp["auth"]["renewable"] is True
    assert client.is_authenticated()
    return client, resp


def kv(url, role_id, secret_id):
    client, resp = login(url, role_id, secret_id)
    me = client.auth.token.lookup_self()["data"]
    assert me["type"] == "service" and me["ttl"] > 0 and me["meta"]["client_id"] == role_id, me
    assert "secrets:write" in me["policies"], me
    assert me["path"] == "auth/approle/login", me
    mounts = client.sys.list_mounted_secrets_engines()["data"]
    assert mounts["secret/"]["type"] == "kv" and mounts["secret/"]["options"]["version"] == "2", mounts
    assert mounts["pki/"]["type"] == "pki", mounts
    # What the vault CLI probes to learn the KV version of a path.
    probe = requests.get(f"{url}/v1/sys/internal/ui/mounts/secret/app/db", timeout=10,
                         headers={"X-Vault-Token": client.token}).json()["data"]
    assert probe["path"] == "secret/" and probe["options"]["version"] == "2", probe
    kv2 = client.secrets.kv.v2

    w1 = kv2.create_or_update_secret(path="app/db", secret={"username": "svc", "password": "p1"}, mount_point="secret")
    assert w1["data"]["version"] == 1, w1
    w2 = kv2.create_or_update_secret(path="app/db", secret={"username": "svc", "password": "p2"}, cas=1, mount_point="secret")
    assert w2["data"]["version"] == 2, w2
    # A check-and-set against a stale version is refused (Vault's 400).
    e = expect(hvac.exceptions.InvalidRequest, kv2.create_or_update_secret, path="app/db",
               secret={"password": "lost"}, cas=1, mount_point="secret")
    assert "check-and-set" in str(e), e
    # cas=0: only if the secret does not exist yet.
    expect(hvac.exceptions.InvalidRequest, kv2.create_or_update_secret, path="app/db",
           secret={"password": "lost"}, cas=0, mount_point="secret")

    latest = kv2.read_secret_version(path="app/db", mount_point="secret", raise_on_deleted_version=True)
    assert latest["data"]["data"] == {"username": "svc", "password": "p2"}, latest
    assert latest["data"]["metadata"]["version"] == 2, latest
    v1 = kv2.read_secret_version(path="app/db", version=1, mount_point="secret", raise_on_deleted_version=True)
    assert v1["data"]["data"]["password"] == "p1", v1
    meta = kv2.read_secret_metadata(path="app/db", mount_point="secret")["data"]
    assert meta["current_version"] == 2 and meta["oldest_version"] == 1, meta
    assert sorted(meta["versions"]) == ["1", "2"], meta

    kv2.create_or_update_secret(path="app/cache/redis", secret={"value": "single"}, mount_point="secret")
    kv2.create_or_update_secret(path="gone/soon", secret={"k": "v"}, mount_point="secret")
    keys = kv2.list_secrets(path="app", mount_point="secret")["data"]["keys"]
    assert keys == ["cache/", "db"], keys
    top = kv2.list_secrets(path="", mount_point="secret")["data"]["keys"]
    assert top == ["app/", "gone/"], top

    kv2.delete_metadata_and_all_versions(path="gone/soon", mount_point="secret")
    expect(hvac.exceptions.InvalidPath, kv2.read_secret_version, path="gone/soon", mount_point="secret",
           raise_on_deleted_version=True)
    kv2.create_or_update_secret(path="gone/again", secret={"k": "v"}, mount_point="secret")
    kv2.delete_latest_version_of_secret(path="gone/again", mount_point="secret")
    expect(hvac.exceptions.InvalidPath, kv2.read_secret_version, path="gone/again", mount_point="secret",
           raise_on_deleted_version=True)
    expect(hvac.exceptions.InvalidPath, kv2.list_secrets, path="gone", mount_point="secret")
    # Soft-delete bookkeeping Castellan does not keep is Vault's 405, never a half answer.
    # (hvac raises UnexpectedError for Vault's 405.)
    for op in (kv2.undelete_secret_versions, kv2.destroy_secret_versions):
        e = expect(hvac.exceptions.UnexpectedError, op, path="app/db", versions=[1], mount_point="secret")
        assert "unsupported operation" in str(e), e
    status, errors = vault_error_shape(url, "POST", "secret/undelete/app/db", client.token, {"versions": [1]})
    assert status == 405, (status, errors)

    # Errors in Vault's shape.
    token = client.token
    status, errors = vault_error_shape(url, "GET", "secret/data/missing/thing", token)
    assert status == 404 and errors == [], (status, errors)
    status, errors = vault_error_shape(url, "GET", "nomount/data/x", token)
    assert status == 404 and "no handler for route" in errors[0], (status, errors)
    status, errors = vault_error_shape(url, "GET", "secret/data/app/db", "cvt.not-a-token")
    assert status == 403 and errors == ["permission denied"], (status, errors)
    status, errors = vault_error_shape(url, "POST", "secret/data/app/db", token, {"data": {"n": 1}})
    assert status == 400 and "strings" in errors[0], (status, errors)
    status, errors = vault_error_shape(url, "POST", "sys/health", token)
    assert status == 405, (status, errors)
    bad = hvac.Client(url=url, token="cvt.not-a-token")
    expect(hvac.exceptions.Forbidden, bad.secrets.kv.v2.read_secret_version, path="app/db", mount_point="secret")
    assert not bad.is_authenticated()

    # The token renews, and once revoked works nowhere.
    renewed = client.auth.token.renew_self()
    assert renewed["auth"]["client_token"] == token and renewed["auth"]["lease_duration"] > 0, renewed
    client.auth.token.revoke_self()
    expect(hvac.exceptions.Forbidden, client.auth.token.lookup_self)
    expect(hvac.exceptions.Forbidden, kv2.read_secret_version, path="app/db", mount_point="secret")
    print(json.dumps({"kv_version": latest["data"]["metadata"]["version"]}))


def pki(url, role_id, secret_id, out_dir):
    client, _ = login(url, role_id, secret_id)
    issued = client.secrets.pki.generate_certificate(
        name="server", common_name="api.svc.local",
        extra_params={"alt_names": "api.svc.local,www.svc.local", "ip_sans": "10.0.0.7", "ttl": "2h"},
        mount_point="pki")["data"]
    for field in ["certificate", "issuing_ca", "ca_chain", "private_key", "private_key_type", "serial_number",
                  "expiration"]:
        assert field in issued, (field, issued.keys())
    open(f"{out_dir}/issued.pem", "w").write(issued["certificate"] + "\n")
    open(f"{out_dir}/issued.key", "w").write(issued["private_key"] + "\n")
    open(f"{out_dir}/issued-chain.pem", "w").write("\n".join(issued["ca_chain"]) + "\n")
    csr = open(f"{out_dir}/req.csr").read()
    signed = client.secrets.pki.sign_certificate(
        name="server", csr=csr, common_name="signed.svc.local",
        extra_params={"alt_names": "signed.svc.local", "ttl": "1h"}, mount_point="pki")["data"]
    assert "private_key" not in signed, signed.keys()
    open(f"{out_dir}/signed.pem", "w").write(signed["certificate"] + "\n")
    ca_pem = requests.get(f"{url}/v1/pki/ca/pem", timeout=10).text
    open(f"{out_dir}/ca.pem", "w").write(ca_pem)
    chain = requests.get(f"{url}/v1/pki/ca_chain", timeout=10).text
    open(f"{out_dir}/ca_chain.pem", "w").write(chain)
    by_serial = client.secrets.pki.read_certificate(serial=issued["serial_number"], mount_point="pki")["data"]
    assert by_serial["certificate"].strip() == issued["certificate"].strip(), by_serial
    # A role (profile) that is not there, and a name outside the profile, in Vault's shape.
    expect(hvac.exceptions.InvalidPath, client.secrets.pki.generate_certificate, name="nope",
           common_name="x.svc.local", mount_point="pki")
    expect(hvac.exceptions.InvalidRequest, client.secrets.pki.generate_certificate, name="server",
           common_name="evil.example.org", mount_point="pki")
    revoked = client.secrets.pki.revoke_certificate(serial_number=signed["serial_number"], mount_point="pki")["data"]
    assert revoked["revocation_time"] > 0, revoked
    crl = requests.get(f"{url}/v1/pki/crl/pem", timeout=10).text
    open(f"{out_dir}/crl.pem", "w").write(crl)
    print(json.dumps({"issued_serial": issued["serial_number"], "signed_serial": signed["serial_number"],
                      "expiration": issued["expiration"]}))


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "kv":
        kv(*sys.argv[2:5])
    elif mode == "pki":
        pki(*sys.argv[2:6])
    else:
        raise SystemExit(f"unknown mode {mode}")
