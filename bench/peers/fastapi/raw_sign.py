"""The peer's own limit: raw signatures per second of one key with pyca/cryptography (OpenSSL), one
thread, the same 420-byte message as Castellan's raw_sign example, through PyJWT's algorithm objects
(what jwt.encode calls). usage: raw_sign.py ALG SECONDS; prints {"alg":..., "signatures_per_sec":N}
"""

import json
import sys
import time

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import get_default_algorithms

alg = sys.argv[1] if len(sys.argv) > 1 else "RS256"
secs = float(sys.argv[2]) if len(sys.argv) > 2 else 3.0
if alg == "RS256":
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
elif alg == "ES256":
    key = ec.generate_private_key(ec.SECP256R1())
elif alg == "EdDSA":
    key = ed25519.Ed25519PrivateKey.generate()
else:
    raise SystemExit(f"ALG must be RS256, ES256 or EdDSA, not {alg}")
sign = get_default_algorithms()[alg].sign
message = b"a" * 420
n = 0
start = time.perf_counter()
end = start + secs
now = start
while now < end:
    for _ in range(50):
        sign(message, key)
    n += 50
    now = time.perf_counter()
print(json.dumps({"alg": alg, "signatures_per_sec": round(n / (now - start))}))
