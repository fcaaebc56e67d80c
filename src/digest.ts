// SHA-256 and its hex form: the one helper for every digest the Worker takes.
const encoder = new TextEncoder()

/** SHA-256 of a string (UTF-8) or of bytes. */
export async function sha256(data: string | Uint8Array): Promise<Uint8Array> {
  // A copy types (and is) a plain ArrayBuffer view, as every Web Crypto lib typing accepts.
  const bytes = typeof data === 'string' ? encoder.encode(data) : new Uint8Array(data)
  return new Uint8Array(await crypto.subtle.digest('SHA-256', bytes))
}

/** Lowercase hex SHA-256 of a string (UTF-8) or of bytes. */
export async function sha256Hex(data: string | Uint8Array): Promise<string> {
  return toHex(await sha256(data))
}

export function toHex(bytes: Uint8Array): string {
  let out = ''
  for (const b of bytes) out += b.toString(16).padStart(2, '0')
  return out
}
