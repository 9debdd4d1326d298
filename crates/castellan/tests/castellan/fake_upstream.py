"""A small fake upstream OpenID provider for the attack cases of the upstream sign-in test.

Each path prefix is an issuer of its own (`/tamper`, `/nonce`, `/issuer`): discovery, a JWKS (an
ES256 key made at start), an authorization endpoint that sends the browser straight back with a code,
and a token endpoint whose ID token is, by prefix, altered after signing, for another nonce, or from
another issuer. Signed with PyJWT. argv: PORT. Prints "ready".
"""
import json
import sys
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

PORT = int(sys.argv[1])
BASE = f"http://127.0.0.1:{PORT}"
KEY = ec.generate_private_key(ec.SECP256R1())
JWK = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(KEY.public_key()))
JWK.update({"kid": "fake-1", "use": "sig", "alg": "ES256"})
NONCES = {}


def b64(b):
    import base64
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def send(self, status, body, headers=()):
        data = json.dumps(body).encode() if not isinstance(body, bytes) else body
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        u = urllib.parse.urlparse(self.path)
        mode, _, rest = u.path.lstrip("/").partition("/")
        iss = f"{BASE}/{mode}"
        q = dict(urllib.parse.parse_qsl(u.query))
        if rest == ".well-known/openid-configuration":
            return self.send(200, {
                "issuer": iss,
                "authorization_endpoint": f"{iss}/authorize",
                "token_endpoint": f"{iss}/token",
                "jwks_uri": f"{iss}/jwks",
            })
        if rest == "jwks":
            return self.send(200, {"keys": [JWK]})
        if rest == "authorize":
            code = f"{mode}-{len(NONCES)}"
            NONCES[code] = q.get("nonce", "")
            back = q["redirect_uri"] + "?" + urllib.parse.urlencode({"code": code, "state": q["state"]})
            return self.send(302, b"", [("location", back)])
        self.send(404, {"error": "not_found"})

    def do_POST(self):
        u = urllib.parse.urlparse(self.path)
        mode, _, rest = u.path.lstrip("/").partition("/")
        n = int(self.headers.get("content-length", "0"))
        form = dict(urllib.parse.parse_qsl(self.rfile.read(n).decode()))
        if rest != "token" or form.get("code") not in NONCES:
            return self.send(400, {"error": "invalid_grant"})
        now = int(time.time())
        claims = {
            "iss": f"{BASE}/{mode}", "aud": "castellan-fake", "sub": f"{mode}-subject",
            "iat": now, "exp": now + 300, "nonce": NONCES.pop(form["code"]),
            "preferred_username": f"fake-{mode}", "email": f"{mode}@corp.example", "email_verified": True,
        }
        if mode == "nonce":
            claims["nonce"] = "a-nonce-of-another-sign-in"
        if mode == "issuer":
            claims["iss"] = "https://idp.evil.example"
        token = jwt.encode(claims, KEY, algorithm="ES256", headers={"kid": "fake-1"})
        if mode == "tamper":
            h, p, s = token.split(".")
            claims["preferred_username"] = "admin"
            token = ".".join([h, b64(json.dumps(claims).encode()), s])
        self.send(200, {"access_token": "x", "token_type": "Bearer", "id_token": token})


server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
print("ready", flush=True)
server.serve_forever()
