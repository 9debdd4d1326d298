// node oidc-provider peer for bench/run: client_credentials grant issuing RFC 9068 JWT access tokens.
//
// env: PORT (required), ALG (RS256 | ES256 | EdDSA, default RS256), CLIENT_ID, CLIENT_SECRET.
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
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_basic',
    scope: 'bench',
  }],
  clientDefaults: { id_token_signed_response_alg: alg },
  scopes: ['bench'],
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
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

const server = provider.listen(port, '127.0.0.1', () => {
  process.stdout.write(`listening on 127.0.0.1:${port} alg=${alg}\n`);
});
const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
