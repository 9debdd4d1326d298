// Verify a JWT with node `jose` (panva/jose: an implementation that is not Castellan's) against a
// JWKS file. usage: node verify_jose.mjs JWKS_FILE TOKEN AUDIENCE ISSUER
// Prints {"header": ..., "payload": ...}; exits non-zero when verification fails.
import { readFileSync } from "node:fs";
import { createLocalJWKSet, jwtVerify } from "jose";

const [jwksFile, token, audience, issuer] = process.argv.slice(2);
const jwks = createLocalJWKSet(JSON.parse(readFileSync(jwksFile, "utf8")));
try {
  const { payload, protectedHeader } = await jwtVerify(token, jwks, { audience, issuer });
  console.log(JSON.stringify({ header: protectedHeader, payload }));
} catch (e) {
  console.error(`jose refused the token: ${e.code ?? ""} ${e.message}`);
  process.exit(1);
}
