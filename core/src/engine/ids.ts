// Run ids: sortable by creation time (48-bit ms timestamp) with 80 random bits, in Crockford
// base32 like ULIDs, lowercased so they read well in paths and URLs.
import { randomBytes } from "node:crypto";

const ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz";
let lastTime = 0;
let lastRandom: Buffer = randomBytes(10);

export function newRunId(now = Date.now()): string {
  let random: Buffer;
  if (now === lastTime) {
    // Monotonic within one millisecond: increment the random part.
    random = Buffer.from(lastRandom);
    for (let i = random.length - 1; i >= 0; i--) {
      const b = random[i] ?? 0;
      if (b < 255) {
        random[i] = b + 1;
        break;
      }
      random[i] = 0;
    }
  } else {
    random = randomBytes(10);
  }
  lastTime = now;
  lastRandom = random;
  let time = "";
  let t = now;
  for (let i = 0; i < 10; i++) {
    time = (ALPHABET[t % 32] as string) + time;
    t = Math.floor(t / 32);
  }
  let rand = "";
  let bits = 0;
  let value = 0;
  for (const byte of random) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      rand += ALPHABET[(value >> (bits - 5)) & 31];
      bits -= 5;
    }
    value &= (1 << bits) - 1;
  }
  return time + rand;
}
