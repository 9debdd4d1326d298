// The peer's own limit: raw signatures per second of one key with node:crypto (OpenSSL), one thread,
// same 420-byte message as Castellan's raw_sign example. usage: node raw_sign.mjs ALG SECONDS
// Prints one JSON line like raw_sign: {"alg":"RS256","signatures_per_sec":N}
import * as crypto from 'node:crypto';

const alg = process.argv[2] || 'RS256';
const secs = Number(process.argv[3] || 3);
let key;
let digest = 'sha256';
let opts = {};
if (alg === 'RS256') {
  key = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
} else if (alg === 'ES256') {
  key = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  opts = { dsaEncoding: 'ieee-p1363' };
} else if (alg === 'EdDSA') {
  key = crypto.generateKeyPairSync('ed25519').privateKey;
  digest = null;
} else {
  throw new Error(`ALG must be RS256, ES256 or EdDSA, not ${alg}`);
}
const message = Buffer.alloc(420, 'a');
const start = process.hrtime.bigint();
const end = start + BigInt(Math.round(secs * 1e9));
let n = 0;
let now = start;
while (now < end) {
  for (let i = 0; i < 50; i += 1) crypto.sign(digest, message, { key, ...opts });
  n += 50;
  now = process.hrtime.bigint();
}
const rate = n / (Number(now - start) / 1e9);
process.stdout.write(`${JSON.stringify({ alg, signatures_per_sec: Math.round(rate) })}\n`);
