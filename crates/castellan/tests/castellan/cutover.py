"""The old service of a cutover, and a verifier beside it: PyJWT + pyca/cryptography, not Castellan.

usage: cutover.py sign KEY_PEM KID EXP_IN_SECONDS   prints an RS256 token the old service would issue
       cutover.py verify JWKS_URL TOKEN             verifies it through PyJWKClient (fetching the JWKS);
                                                    prints the claims, or the error's class on stderr
                                                    and exits 1
"""
import json
import sys
import time

import jwt

if sys.argv[1] == "sign":
    pem, kid, exp_in = sys.argv[2], sys.argv[3], int(sys.argv[4])
    now = int(time.time())
    claims = {"iss": "https://auth.old.example", "sub": "user-1", "aud": "orders",
              "iat": now, "exp": now + exp_in, "scope": "orders:read"}
    with open(pem, "rb") as f:
        print(jwt.encode(claims, f.read(), algorithm="RS256", headers={"kid": kid}))
elif sys.argv[1] == "verify":
    url, token = sys.argv[2], sys.argv[3]
    try:
        key = jwt.PyJWKClient(url, cache_keys=False, cache_jwk_set=False).get_signing_key_from_jwt(token)
        print(json.dumps(jwt.decode(token, key.key, algorithms=["RS256"], audience="orders",
                                    issuer="https://auth.old.example")))
    except Exception as e:  # the class is what the test looks at
        print(type(e).__name__, e, file=sys.stderr)
        sys.exit(1)
