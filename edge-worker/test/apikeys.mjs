// API keys as edgegate mints them, minted independently of the core (shared by the worker suites).
import { randomBytes } from "node:crypto";

// --- API keys: egk_ + base62(32 bytes, 43 chars) + base62(CRC-32(prefix+body), 6 chars) ---
const B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
function base62(bytes, width) {
  let n = BigInt("0x" + (Buffer.from(bytes).toString("hex") || "0"));
  let s = "";
  for (let i = 0; i < width; i++) {
    s = B62[Number(n % 62n)] + s;
    n /= 62n;
  }
  return s;
}
const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(buf) {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
export function mintApiKey(prefix = "egk_") {
  const body = prefix + base62(randomBytes(32), 43);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.from(body)));
  return body + base62(crc, 6);
}
