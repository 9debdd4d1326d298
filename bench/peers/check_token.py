"""Check one token answer before a server is measured, so no one is measured doing less work.

usage: check_token.py TOKEN_JSON_FILE JWKS_URL ALG
Fetches the JWKS, finds the key by the token's kid, verifies the signature with PyJWT allowing only ALG,
requires exp (and iat), checks that the header says ALG and typ at+jwt. Prints one line; exit 1 if not.
"""

import json
import sys

import jwt


def main() -> int:
    path, jwks_url, alg = sys.argv[1:4]
    with open(path) as f:
        answer = json.load(f)
    token = answer.get("access_token")
    if not isinstance(token, str) or token.count(".") != 2:
        print(f"FAIL: no compact JWS in the answer: {answer!r:.200}")
        return 1
    header = jwt.get_unverified_header(token)
    if header.get("alg") != alg:
        print(f"FAIL: header alg {header.get('alg')!r}, expected {alg}")
        return 1
    if header.get("typ", "").lower() not in ("at+jwt", "application/at+jwt"):
        print(f"FAIL: header typ {header.get('typ')!r}, expected at+jwt")
        return 1
    key = jwt.PyJWKClient(jwks_url, cache_keys=False).get_signing_key_from_jwt(token)
    claims = jwt.decode(
        token,
        key.key,
        algorithms=[alg],
        options={"require": ["exp", "iat"], "verify_aud": False},
    )
    print(f"ok: {alg} signature verifies against {jwks_url} (kid {header.get('kid')}), "
          f"exp in {claims['exp'] - claims['iat']} s, {len(token)} bytes")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as e:  # noqa: BLE001 - any failure means the server is not measured
        print(f"FAIL: {type(e).__name__}: {e}")
        sys.exit(1)
