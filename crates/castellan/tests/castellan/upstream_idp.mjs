// node oidc-provider as the upstream identity provider of the upstream sign-in test: the
// authorization code flow with PKCE, its own dev login and consent pages, ID tokens with the
// profile and e-mail claims. argv: PORT REDIRECT_URI CLIENT_SECRET. Prints "ready" when listening.
import Provider from 'oidc-provider';

const [port, redirectUri, secret] = process.argv.slice(2);
const issuer = `http://127.0.0.1:${port}`;
// The people the provider knows (its dev login page takes any password).
const people = {
  carol: { email: 'carol@corp.example', email_verified: true, preferred_username: 'carol', groups: ['eng', 'oncall'] },
  dave: { email: 'dave@corp.example', email_verified: true, preferred_username: 'dave', groups: [] },
  mallory: { email: 'mallory@evil.example', email_verified: true, preferred_username: 'mallory', groups: [] },
};
const client = (id) => ({
  client_id: id,
  client_secret: secret,
  redirect_uris: [redirectUri],
  grant_types: ['authorization_code'],
  response_types: ['code'],
  token_endpoint_auth_method: 'client_secret_basic',
});
const provider = new Provider(issuer, {
  clients: [client('castellan-create'), client('castellan-existing')],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['preferred_username', 'groups'],
  },
  // The scope's claims go into the ID token itself (Castellan reads only the ID token).
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  cookies: { keys: ['castellan-upstream-test'] },
  findAccount: async (ctx, id) => ({
    accountId: id,
    claims: async () => ({ sub: `corp|${id}`, ...(people[id] ?? { preferred_username: id }) }),
  }),
});
provider.listen(Number(port), '127.0.0.1', () => console.log('ready'));
