"""Refresh tokens for bench/run's refresh_token rows, made the way an app gets them from Castellan.

usage: signin_seed.py BASE_URL CLIENT_ID CLIENT_SECRET REDIRECT_URI USER PASSWORD N OUT_FILE
Signs USER in once through the login page (GET /oauth2/authorize, POST /signin with the CSRF pair),
then N times: an authorization request with that session (a code, no login page), the code exchanged
at /oauth2/token (PKCE S256). Writes the N refresh tokens to OUT_FILE, one per line. Standard library only.
"""

import base64
import hashlib
import html
import http.cookiejar
import json
import re
import sys
import urllib.parse
import urllib.request


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def main() -> int:
    base, cid, secret, redirect, user, password, n, out = sys.argv[1:9]
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), NoRedirect())
    verifier = "v" * 50
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    authorize = base + "/oauth2/authorize?" + urllib.parse.urlencode({
        "response_type": "code", "client_id": cid, "redirect_uri": redirect,
        "scope": "openid offline_access", "state": "s", "code_challenge": challenge,
        "code_challenge_method": "S256"})
    page = opener.open(authorize).read().decode()
    field = lambda name: html.unescape(re.search(f'name="{name}" value="([^"]*)"', page).group(1))

    def location(req):
        try:
            opener.open(req)
        except urllib.error.HTTPError as e:
            if e.code in (302, 303):
                return e.headers["Location"]
            raise
        raise RuntimeError("expected a redirect")

    form = urllib.parse.urlencode({"csrf": field("csrf"), "request": field("request"),
                                   "username": user, "password": password}).encode()
    location(urllib.request.Request(base + "/signin", data=form))
    basic = "Basic " + base64.b64encode(f"{cid}:{secret}".encode()).decode()
    tokens = []
    for _ in range(int(n)):
        code = urllib.parse.parse_qs(urllib.parse.urlsplit(location(authorize)).query)["code"][0]
        body = urllib.parse.urlencode({"grant_type": "authorization_code", "code": code,
                                       "redirect_uri": redirect, "code_verifier": verifier}).encode()
        req = urllib.request.Request(base + "/oauth2/token", data=body, headers={"Authorization": basic})
        tokens.append(json.load(opener.open(req))["refresh_token"])
    with open(out, "w") as f:
        f.write("\n".join(tokens) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
