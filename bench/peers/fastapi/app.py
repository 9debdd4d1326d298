"""FastAPI + PyJWT peer for bench/run: the token endpoint a team writes for itself.

POST /token: grant_type=client_credentials with client_secret_basic against one in-memory client (the
secret is stored as SHA-256 and compared in constant time, as Castellan does), answers an RFC 9068-shaped
access token (typ at+jwt, kid, iss/sub/aud/exp/iat/nbf/jti/client_id/scope) signed by PyJWT with a key
generated once at start (RSA-2048, P-256 or Ed25519) and held as a `cryptography` key object, so no PEM
is parsed per request. GET /jwks: the public key as a JWKS, serialised once.

env: ALG (RS256 | ES256 | EdDSA), CLIENT_ID, CLIENT_SECRET, ISSUER.
run: uvicorn app:app --loop uvloop --http httptools --workers 1 (bench/run does this, pinned to one CPU).
"""

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from urllib.parse import parse_qs

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

ALG = os.environ.get("ALG", "RS256")
CLIENT_ID = os.environ.get("CLIENT_ID", "bench")
SECRET_SHA256 = hashlib.sha256(os.environ.get("CLIENT_SECRET", "bench-secret").encode()).digest()
ISSUER = os.environ.get("ISSUER", "http://127.0.0.1")
AUDIENCE = "https://api.bench.internal"
SCOPE = "bench"
TTL = 300

if ALG == "RS256":
    KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    PUBLIC_JWK = json.loads(RSAAlgorithm.to_jwk(KEY.public_key()))
elif ALG == "ES256":
    KEY = ec.generate_private_key(ec.SECP256R1())
    PUBLIC_JWK = json.loads(ECAlgorithm.to_jwk(KEY.public_key()))
elif ALG == "EdDSA":
    KEY = ed25519.Ed25519PrivateKey.generate()
    PUBLIC_JWK = json.loads(OKPAlgorithm.to_jwk(KEY.public_key()))
else:
    raise SystemExit(f"ALG must be RS256, ES256 or EdDSA, not {ALG}")
KID = secrets.token_hex(8)
PUBLIC_JWK.update({"kid": KID, "use": "sig", "alg": ALG})
JWKS_BODY = json.dumps({"keys": [PUBLIC_JWK]}).encode()
HEADERS = {"typ": "at+jwt", "kid": KID}
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}

app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)


def oauth_error(status: int, error: str) -> JSONResponse:
    headers = dict(NO_STORE)
    if status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="token"'
    return JSONResponse({"error": error}, status_code=status, headers=headers)


def authenticate(header: str | None) -> str | None:
    if not header or not header.startswith("Basic "):
        return None
    try:
        client_id, _, secret = base64.b64decode(header[6:], validate=True).decode().partition(":")
    except ValueError:
        return None
    ok = hmac.compare_digest(hashlib.sha256(secret.encode()).digest(), SECRET_SHA256)
    return client_id if ok and client_id == CLIENT_ID else None


@app.post("/token")
async def token(request: Request) -> Response:
    form = parse_qs((await request.body()).decode())
    client_id = authenticate(request.headers.get("authorization"))
    if client_id is None:
        return oauth_error(401, "invalid_client")
    if form.get("grant_type") != ["client_credentials"]:
        return oauth_error(400, "unsupported_grant_type")
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "sub": client_id,
        "aud": AUDIENCE,
        "exp": now + TTL,
        "iat": now,
        "nbf": now,
        "jti": secrets.token_hex(16),
        "client_id": client_id,
        "scope": SCOPE,
    }
    access_token = jwt.encode(claims, KEY, algorithm=ALG, headers=HEADERS)
    return JSONResponse(
        {"access_token": access_token, "token_type": "Bearer", "expires_in": TTL, "scope": SCOPE},
        headers=NO_STORE,
    )


@app.get("/jwks")
async def jwks() -> Response:
    return Response(JWKS_BODY, media_type="application/json", headers={"Cache-Control": "max-age=300"})
