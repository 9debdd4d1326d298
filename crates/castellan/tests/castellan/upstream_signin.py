"""Upstream sign-in in a real browser: headless Chromium (selenium, /usr/bin/chromedriver) opens
Castellan's login page, presses "Continue with ...", signs in at the upstream provider (node
oidc-provider's own login and consent pages, or the fake provider that answers at once), and comes
back. The app's code is exchanged at Castellan and its ID token verified with PyJWT against
Castellan's JWKS.

argv: CASTELLAN_URL CLIENT_ID REDIRECT_URI PROVIDER_URL SCREENSHOT_DIR. Prints one JSON object:
for each run, where the browser ended and what it showed.
"""
import base64
import hashlib
import json
import secrets
import sys
import urllib.parse
import urllib.request

import jwt
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

base, client_id, redirect, provider, shots = sys.argv[1:6]
opts = webdriver.ChromeOptions()
for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=480,900"):
    opts.add_argument(a)
opts.binary_location = "/usr/bin/chromium"
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
driver.set_page_load_timeout(20)
wait = WebDriverWait(driver, 20)


def exchange(code, verifier):
    body = urllib.parse.urlencode({
        "grant_type": "authorization_code", "code": code, "redirect_uri": redirect,
        "client_id": client_id, "code_verifier": verifier,
    }).encode()
    with urllib.request.urlopen(urllib.request.Request(f"{base}/oauth2/token", data=body)) as r:
        tokens = json.load(r)
    keys = jwt.PyJWKClient(f"{base}/.well-known/jwks.json")
    key = keys.get_signing_key_from_jwt(tokens["id_token"])
    return jwt.decode(tokens["id_token"], key.key, algorithms=["ES256", "RS256", "EdDSA"],
                      audience=client_id, issuer=base)


def run(button, login=None, shot=None):
    """One sign-in through `button`; `login`: the name typed at oidc-provider's login page."""
    driver.delete_all_cookies()
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    driver.get(f"{base}/oauth2/authorize?" + urllib.parse.urlencode({
        "response_type": "code", "client_id": client_id, "redirect_uri": redirect,
        "scope": "openid profile email", "state": "app-state", "code_challenge": challenge,
        "code_challenge_method": "S256",
    }))
    out = {"buttons": [b.text for b in driver.find_elements(By.CSS_SELECTOR, ".upstream button")]}
    if shot:
        driver.save_screenshot(f"{shots}/{shot}-login.png")
    driver.find_element(By.ID, f"upstream-{button}").click()
    # Wait for the navigation to leave Castellan's login page before looking at where it went.
    wait.until(lambda d: "/oauth2/authorize" not in d.current_url)
    # At the provider: its login page, then its consent page, until it sends the browser back.
    for _ in range(6):
        wait.until(lambda d: d.execute_script("return document.readyState") == "complete")
        if not driver.current_url.startswith(provider):
            break
        if shot:
            driver.save_screenshot(f"{shots}/{shot}-provider.png")
        fields = driver.find_elements(By.NAME, "login")
        if fields:
            fields[0].send_keys(login)
            driver.find_element(By.NAME, "password").send_keys("any password")
        before = driver.current_url
        driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait.until(lambda d: d.current_url != before)
    wait.until(lambda d: d.current_url.startswith(redirect) or (
        "/signin/upstream/callback" in d.current_url
        and d.execute_script("return document.readyState") == "complete"
        and d.find_elements(By.TAG_NAME, "h1")))
    out["url"] = driver.current_url
    if shot:
        driver.save_screenshot(f"{shots}/{shot}-after.png")
    if driver.current_url.startswith(redirect):
        q = dict(urllib.parse.parse_qsl(urllib.parse.urlparse(driver.current_url).query))
        out["state"] = q.get("state")
        out["claims"] = exchange(q["code"], verifier)
    else:
        out["title"] = driver.find_element(By.TAG_NAME, "h1").text
        found = driver.find_elements(By.ID, "message")
        out["message"] = found[0].text if found else driver.page_source[:2000]
    return out


result = {}
try:
    result["first"] = run("corp", "carol", shot="upstream")
    result["again"] = run("corp", "carol")
    result["existing_refused"] = run("corp-existing", "dave", shot="upstream-refused")
    result["domain"] = run("corp", "mallory")
    for mode in ("tamper", "nonce", "issuer"):
        result[mode] = run(f"fake-{mode}", shot=f"upstream-{mode}" if mode == "tamper" else None)
finally:
    driver.quit()
print(json.dumps(result))
