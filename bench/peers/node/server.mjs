// node oidc-provider peer for bench/run: client_credentials grant issuing RFC 9068 JWT access tokens.
//
// env: PORT (required), ALG (RS256 | ES256 | EdDSA, default RS256), CLIENT_ID, CLIENT_SECRET.
// REFRESH=1 (issue 17's refresh_token row): the client may also use authorization_code and
// refresh_token, refresh tokens rotate on every use (as Castellan's do), and POST /bench/seed?n=N
// mints N refresh tokens (scope `openid offline_access bench`, resource https://api.bench.internal)
// for one account through the provider's own models, as a finished authorization code flow would
// leave them; each refresh then answers a JWT access token, an ID token and the next refresh token.
// One signing key of the requested type, generated at start (RSA-2048, P-256 or Ed25519), is the only key in the
// provider's JWKS, so /jwks publishes one key as Castellan's does. The token request must carry
// `resource=https://api.bench.internal` (a Resource Indicator): oidc-provider issues JWT access tokens
// only for a resource server whose getResourceServerInfo says accessTokenFormat 'jwt'; without it the
// token would be opaque (the checker in bench/peers/check_token.py would refuse it). JWT access tokens are not
// written to the adapter (nothing is stored).
import * as crypto from 'node:crypto';

import Provider from 'oidc-provider';

const port = Number(process.env.PORT);
if (!port) throw new Error('PORT is required');
const alg = process.env.ALG || 'RS256';
const clientId = process.env.CLIENT_ID || 'bench';
const clientSecret = process.env.CLIENT_SECRET || 'bench-secret';
const resource = 'https://api.bench.internal';
const refresh = process.env.REFRESH === '1';

let jwk;
if (alg === 'RS256') {
  jwk = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
} else if (alg === 'ES256') {
  jwk = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
} else if (alg === 'EdDSA') {
  jwk = crypto.generateKeyPairSync('ed25519').privateKey.export({ format: 'jwk' });
} else {
  throw new Error(`ALG must be RS256, ES256 or EdDSA, not ${alg}`);
}
jwk.use = 'sig';
jwk.alg = alg;
jwk.kid = crypto.randomBytes(8).toString('hex');

const provider = new Provider(`http://127.0.0.1:${port}`, {
  jwks: { keys: [jwk] },
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    grant_types: refresh ? ['client_credentials', 'authorization_code', 'refresh_token'] : ['client_credentials'],
    response_types: refresh ? ['code'] : [],
    redirect_uris: refresh ? ['https://app.bench.internal/cb'] : [],
    token_endpoint_auth_method: 'client_secret_basic',
    scope: 'bench',
  }],
  clientDefaults: { id_token_signed_response_alg: alg },
  scopes: refresh ? ['openid', 'offline_access', 'bench'] : ['bench'],
  rotateRefreshToken: true,
  ttl: { RefreshToken: 86400, IdToken: 300, Grant: 86400, AccessToken: 300 },
  findAccount: async (ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => resource,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (ctx, indicator) => {
        if (indicator !== resource) throw new Provider.errors.InvalidTarget();
        return {
          scope: 'bench',
          audience: resource,
          accessTokenTTL: 300,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg } },
        };
      },
    },
  },
});
provider.proxy = false;

if (refresh) {
  provider.use(async (ctx, next) => {
    if (ctx.method !== 'POST' || ctx.path !== '/bench/seed') return next();
    const n = Math.min(Number(ctx.query.n) || 1, 10000);
    const client = await provider.Client.find(clientId);
    const tokens = [];
    for (let i = 0; i < n; i += 1) {
      const grant = new provider.Grant({ accountId: 'alice', clientId });
      grant.addOIDCScope('openid offline_access');
      grant.addResourceScope(resource, 'bench');
      const grantId = await grant.save();
      const rt = new provider.RefreshToken({
        accountId: 'alice', client, grantId, gty: 'authorization_code',
        scope: 'openid offline_access bench', resource, authTime: Math.floor(Date.now() / 1000),
      });
      tokens.push(await rt.save());
    }
    ctx.body = { refresh_tokens: tokens };
  });
}

const server = provider.listen(port, '127.0.0.1', () => {
  process.stdout.write(`listening on 127.0.0.1:${port} alg=${alg}\n`);
});
const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
