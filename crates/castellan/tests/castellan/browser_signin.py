"""A real browser signs in: headless Chromium driven by selenium types into Castellan's login page.

argv: AUTHORIZE_URL BASE_URL USER PASSWORD SCREENSHOT_DIR. Prints one JSON line: the URL the browser
was sent back to after a wrong and then a right password, and what the pages showed.
"""
import json
import sys

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

authorize, base, user, password, shots = sys.argv[1:6]
opts = webdriver.ChromeOptions()
for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=420,900"):
    opts.add_argument(a)
opts.binary_location = "/usr/bin/chromium"
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
driver.set_page_load_timeout(20)
out = {}
try:
    driver.get(authorize)
    driver.save_screenshot(f"{shots}/login.png")
    driver.find_element(By.ID, "username").send_keys(user)
    driver.find_element(By.ID, "password").send_keys("not the password")
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait = WebDriverWait(driver, 15)
    out["wrong_error"] = wait.until(EC.presence_of_element_located((By.ID, "error"))).text
    driver.save_screenshot(f"{shots}/login-failed.png")
    # The form keeps the name; type the right password and press Enter (keyboard only).
    field = driver.find_element(By.ID, "password")
    field.send_keys(password)
    field.submit()
    wait.until(lambda d: "/signin" not in d.current_url)
    out["after_sign_in"] = driver.current_url
    driver.get(f"{base}/account")
    wait.until(EC.presence_of_element_located((By.TAG_NAME, "h1")))
    driver.save_screenshot(f"{shots}/account.png")
    found = driver.find_elements(By.ID, "account-name")
    out["account_name"] = found[0].text if found else None
finally:
    driver.quit()
print(json.dumps(out))
