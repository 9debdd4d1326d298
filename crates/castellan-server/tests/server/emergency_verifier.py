"""A refetching verifier, as a service using PyJWT would run one: PyJWKClient, which refetches the
JWKS on an unknown kid, here with no cooldown (`cooldown_duration=0`). Used by the emergency rotation test.

argv: ISSUER URL... (the JWKS URLs of the replicas). Reads one token per line on stdin and answers
one line each: `ok KID` or `fail KID REASON`. Each token is verified twice: by one client that fetches
round-robin from the replicas (each fetch from the next one), and by one client per replica (a
service that always reaches the same replica); any refusal is a failure.
"""
import sys

import jwt
from jwt import PyJWKClient


# No cooldown between refetches on an unknown kid (PyJWT >= 2.11 defaults to 30 s; older ones have
# none and no such parameter).
NO_COOLDOWN = {"cooldown_duration": 0}
try:
    PyJWKClient("http://127.0.0.1/", **NO_COOLDOWN)
except TypeError:
    NO_COOLDOWN = {}
OPTIONS = dict(cache_keys=False, cache_jwk_set=True, lifespan=3600, **NO_COOLDOWN)


class RoundRobin(PyJWKClient):
    def __init__(self, urls):
        super().__init__(urls[0], **OPTIONS)
        self.urls = urls
        self.turn = 0

    def fetch_data(self):
        self.uri = self.urls[self.turn % len(self.urls)]
        self.turn += 1
        return super().fetch_data()


def main():
    issuer, urls = sys.argv[1], sys.argv[2:]
    verifiers = [RoundRobin(urls)] + [
        PyJWKClient(u, **OPTIONS) for u in urls
    ]
    for line in sys.stdin:
        token = line.strip()
        if not token:
            continue
        kid = jwt.get_unverified_header(token).get("kid", "-")
        failure = None
        for v in verifiers:
            try:
                key = v.get_signing_key_from_jwt(token)
                jwt.decode(token, key.key, algorithms=["ES256"], audience=issuer, issuer=issuer)
            except Exception as e:  # every refusal counts
                failure = f"{v.uri}: {type(e).__name__}: {e}"
                break
        print(f"ok {kid}" if failure is None else f"fail {kid} {failure}", flush=True)


main()
