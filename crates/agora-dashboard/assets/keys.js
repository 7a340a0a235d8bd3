// keys.js: the buyer's Ed25519 key, kept in this browser's localStorage and used only
// through WebCrypto (crypto.subtle). The secret never leaves the browser: the node only
// ever receives the public key and signatures. No cryptography is implemented here —
// importing a 32-byte seed only wraps it in the fixed PKCS#8 header WebCrypto expects.

const STORE = "agora.buyer.pkcs8";
// DER of PrivateKeyInfo { version 0, AlgorithmIdentifier id-Ed25519, OCTET STRING { seed } }.
const PKCS8_ED25519_PREFIX = "302e020100300506032b657004220420";
const ALG = { name: "Ed25519" };

export function toHex(bytes) {
  return Array.from(new Uint8Array(bytes), (b) => b.toString(16).padStart(2, "0")).join("");
}

export function fromHex(text) {
  const clean = String(text).trim().toLowerCase();
  if (!/^([0-9a-f]{2})*$/.test(clean)) throw new Error("not hex");
  const out = new Uint8Array(clean.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(clean.slice(2 * i, 2 * i + 2), 16);
  return out;
}

function fromBase64Url(text) {
  const b64 = text.replace(/-/g, "+").replace(/_/g, "/");
  return Uint8Array.from(atob(b64 + "===".slice((b64.length + 3) % 4)), (c) => c.charCodeAt(0));
}

const B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

/** The account id text for a public key (hex): `ag` + base58 (an encoding, not crypto). */
export function accountOf(publicKeyHex) {
  const bytes = fromHex(publicKeyHex);
  let n = 0n;
  for (const b of bytes) n = (n << 8n) | BigInt(b);
  let out = "";
  while (n > 0n) { out = B58[Number(n % 58n)] + out; n /= 58n; }
  for (const b of bytes) { if (b !== 0) break; out = `1${out}`; }
  return `ag${out}`;
}

export function supported() {
  return Boolean(globalThis.crypto && crypto.subtle);
}

async function fromPkcs8(hex) {
  const key = await crypto.subtle.importKey("pkcs8", fromHex(hex), ALG, true, ["sign"]);
  const jwk = await crypto.subtle.exportKey("jwk", key);
  return { key, publicKey: toHex(fromBase64Url(jwk.x)) };
}

/** The stored key, or null. */
export async function load() {
  const hex = localStorage.getItem(STORE);
  if (!hex) return null;
  return fromPkcs8(hex);
}

/** Creates and stores a fresh key. */
export async function create() {
  const pair = await crypto.subtle.generateKey(ALG, true, ["sign", "verify"]);
  const pkcs8 = toHex(await crypto.subtle.exportKey("pkcs8", pair.privateKey));
  localStorage.setItem(STORE, pkcs8);
  return fromPkcs8(pkcs8);
}

/** Imports a 32-byte seed as 64 hex digits, or an `agora wallet` JSON file's text. */
export async function importSeed(text) {
  let seed = String(text).trim();
  if (seed.startsWith("{")) {
    const wallet = JSON.parse(seed);
    seed = String(wallet.secret_key || "");
  }
  if (!/^[0-9a-fA-F]{64}$/.test(seed)) throw new Error("a seed is 64 hex digits (the secret_key of an agora wallet file)");
  const pkcs8 = PKCS8_ED25519_PREFIX + seed.toLowerCase();
  const loaded = await fromPkcs8(pkcs8);
  localStorage.setItem(STORE, pkcs8);
  return loaded;
}

export function forget() {
  localStorage.removeItem(STORE);
}

/** Signs hex bytes; returns the signature as hex. */
export async function sign(key, messageHex) {
  return toHex(await crypto.subtle.sign(ALG, key, fromHex(messageHex)));
}

/** A random u64 as a decimal string (the order's salt). */
export function randomSalt() {
  const words = crypto.getRandomValues(new Uint32Array(2));
  return ((BigInt(words[0]) << 32n) | BigInt(words[1])).toString();
}
