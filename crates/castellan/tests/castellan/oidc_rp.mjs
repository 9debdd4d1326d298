// A real relying party: node openid-client (v6) against Castellan. It discovers, builds an
// authorization URL with PKCE S256, state and nonce, signs a person in through the login page (the
// browser's part, with fetch: the form's hidden fields and its cookies), exchanges the code (its own
// ID token checks), calls userinfo, refreshes, revokes, and tries the revoked token again. It prints
// what it saw as one JSON line for the Rust test to judge.
import * as client from 'openid-client';

const [issuer, clientId, clientSecret, redirectUri, user, password] = process.argv.slice(2);
const config = await client.discovery(new URL(issuer), clientId, clientSecret, undefined, {
  execute: [client.allowInsecureRequests],
});
const verifier = client.randomPKCECodeVerifier();
const state = client.randomState();
const nonce = client.randomNonce();
const authUrl = client.buildAuthorizationUrl(config, {
  redirect_uri: redirectUri,
  scope: 'openid profile email',
  code_challenge: await client.calculatePKCECodeChallenge(verifier),
  code_challenge_method: 'S256',
  state,
  nonce,
});

// The browser: keep cookies, read the login form, post it, follow nothing.
const jar = new Map();
const keep = (res) => {
  for (const c of res.headers.getSetCookie()) {
    const [kv] = c.split(';');
    const i = kv.indexOf('=');
    jar.set(kv.slice(0, i), kv.slice(i + 1));
  }
};
const cookie = () => [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
const unescape = (s) => s.replace(/&quot;/g, '"').replace(/&#x27;/g, "'").replace(/&#x2f;/g, '/')
  .replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');
const field = (html, name) => {
  const m = html.match(new RegExp(`name="${name}" value="([^"]*)"`));
  if (!m) throw new Error(`no ${name} field in the login page`);
  return unescape(m[1]);
};
const page = await fetch(authUrl, { redirect: 'manual' });
keep(page);
const html = await page.text();
const form = new URLSearchParams({
  csrf: field(html, 'csrf'), request: field(html, 'request'), username: user, password,
});
const signin = await fetch(new URL('/signin', issuer), {
  method: 'POST', redirect: 'manual', body: form,
  headers: { cookie: cookie(), 'content-type': 'application/x-www-form-urlencoded' },
});
keep(signin);
const location = signin.headers.get('location');
if (signin.status !== 303 || !location) throw new Error(`sign-in answered ${signin.status}`);

const tokens = await client.authorizationCodeGrant(config, new URL(location), {
  pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce,
});
const claims = tokens.claims();
const userinfo = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);
let oldAgain = 'accepted';
await client.tokenRevocation(config, refreshed.refresh_token);
let afterRevoke = 'accepted';
try {
  await client.refreshTokenGrant(config, refreshed.refresh_token);
} catch (e) {
  afterRevoke = e.error ?? e.code ?? String(e);
}
try {
  await client.refreshTokenGrant(config, tokens.refresh_token);
} catch (e) {
  oldAgain = e.error ?? e.code ?? String(e);
}
console.log(JSON.stringify({
  sub: claims.sub, nonce_matched: claims.nonce === nonce, sid: claims.sid, aud: claims.aud,
  userinfo, access_token: tokens.access_token, refreshed_access_token: refreshed.access_token,
  rotated: refreshed.refresh_token !== tokens.refresh_token, afterRevoke, oldAgain,
}));
