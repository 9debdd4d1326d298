"""A test Kubernetes service-account issuer (PyJWT + pyca/cryptography, not Castellan's code).

  k8s_issuer.py keys DIR            RSA key pairs DIR/issuer.pem and DIR/other.pem; DIR/jwks.json with
                                    the issuer's public key (kid "issuer-key-1", as the API server
                                    publishes at /openid/v1/jwks)
  k8s_issuer.py rotate DIR KID     a new issuer key pair; DIR/jwks.json then holds only its key, as KID
  k8s_issuer.py token DIR JSON      prints a token shaped like a projected service-account token; JSON
                                    gives iss, aud, namespace, sa, pod, exp_in (seconds from now), and
                                    optionally nbf_in, key ("issuer" or "other": another key under the
                                    issuer's kid), alg ("RS256", "HS256", "none"), kid
"""
import base64
import hashlib
import hmac
import json
import sys
import time
import uuid

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

KID = "issuer-key-1"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def keys(d, kid=KID, names=("issuer", "other")):
    for name in names:
        k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())
        open(f"{d}/{name}.pem", "wb").write(pem)
        if name == "issuer":
            jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(k.public_key()))
            jwk.update({"kid": kid, "use": "sig", "alg": "RS256"})
            open(f"{d}/jwks.json", "w").write(json.dumps({"keys": [jwk]}))


def token(d, spec):
    now = int(time.time())
    ns, sa, pod = spec["namespace"], spec["sa"], spec.get("pod", f"{spec['sa']}-7d9f8-abcde")
    claims = {
        "aud": spec["aud"] if isinstance(spec["aud"], list) else [spec["aud"]],
        "exp": now + spec["exp_in"],
        "iat": now,
        "nbf": now + spec.get("nbf_in", 0),
        "iss": spec["iss"],
        "jti": str(uuid.uuid4()),
        "sub": spec.get("sub", f"system:serviceaccount:{ns}:{sa}"),
        "kubernetes.io": {
            "namespace": ns,
            "node": {"name": "node-a", "uid": str(uuid.uuid4())},
            "pod": {"name": pod, "uid": str(uuid.uuid4())},
            "serviceaccount": {"name": sa, "uid": str(uuid.uuid4())},
            "warnafter": now + 3000,
        },
    }
    alg = spec.get("alg", "RS256")
    if alg == "none":
        header = {"alg": "none", "kid": KID}
        return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}."
    if alg == "HS256":
        # An HMAC "signed" with the issuer's public JWKS text: what a verifier that accepted HS256
        # with the public key as secret would take.
        # (PyJWT refuses to use a JWK as an HMAC secret, so the MAC is made here.)
        secret = open(f"{d}/jwks.json", "rb").read()
        header = {"alg": "HS256", "kid": KID, "typ": "JWT"}
        signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
        mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{b64(mac)}"
    key = open(f"{d}/{spec.get('key', 'issuer')}.pem", "rb").read()
    return jwt.encode(claims, key, algorithm=alg, headers={"kid": spec.get("kid", KID)})


if __name__ == "__main__":
    if sys.argv[1] == "keys":
        keys(sys.argv[2])
    elif sys.argv[1] == "rotate":
        keys(sys.argv[2], kid=sys.argv[3], names=("issuer",))
    else:
        print(token(sys.argv[2], json.loads(sys.argv[3])))
