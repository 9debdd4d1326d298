"""Verify a JWT with PyJWT (an implementation that is not Castellan's: PyJWT + pyca/cryptography).

usage: verify_jwt.py JWKS_FILE TOKEN AUDIENCE ISSUER
Prints the verified claims as JSON; exits non-zero if verification fails.
"""
import json
import sys

import jwt

jwks_file, token, audience, issuer = sys.argv[1:5]
with open(jwks_file) as f:
    jwks = jwt.PyJWKSet.from_dict(json.load(f))
kid = jwt.get_unverified_header(token)["kid"]
key = next(k for k in jwks.keys if k.key_id == kid)
claims = jwt.decode(token, key.key, algorithms=[key.algorithm_name], audience=audience, issuer=issuer)
print(json.dumps(claims))
