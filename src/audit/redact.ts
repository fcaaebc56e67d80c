// Redaction and size capping for what the audit log and the logs store.
// Pure: no I/O, no Worker APIs.
//
// What it guarantees:
//   * `redact` returns a deep copy (the input is never mutated) in which
//       - the value under any sensitive key is replaced by "[redacted]", at
//         any depth, inside objects and arrays alike. Keys match
//         case-insensitively and ignoring "_", "-" and spaces, so "apiKey",
//         "API_KEY" and "api-key" are one key; a key is also sensitive when
//         one of its words is (camelCase, snake_case, kebab-case and dots
//         split words: "phoneNumber", "EMAIL_ADDRESS", "home-address"), and
//         the policy's "phone", "email" and "address" bring their synonyms
//         (`KEY_SYNONYMS`: mobile, tel, fax, cell, mail, street, …).
//         Credential-like keys (`CREDENTIAL_KEYS`: authorization, password,
//         token, secret, …) are always sensitive, whatever the caller passes;
//       - every string (values and object keys) goes through `redactText`.
//     Cycles become "[circular]", nesting deeper than 64 levels "[too deep]";
//     functions and symbols are dropped, bigints become decimal strings.
//   * `redactText` replaces, in free text, bearer/basic credentials, JWTs,
//     well-known API-key formats and `password=`/`secret=`/`pwd=`/`token=`…
//     values by "[redacted-token]", e-mail addresses by "[redacted-email]",
//     card numbers (13-19 digits, Luhn-valid, optionally grouped by spaces or
//     dashes) by "[redacted-card]" and phone-number-like sequences by
//     "[redacted-phone]". Full-width digits and signs (０-９, ＠, ＋, －, ．, …),
//     the en dash, U+2011 and other dashes are read as their ASCII forms, and
//     "/" separates digit groups like "-" does; `tel:`/`phone:`/`fax:` labels
//     in any case may touch the number. It is pattern-based: it errs towards
//     over-redaction (a bare run of 10 or more digits is treated as a phone
//     number) and cannot know every secret format, which is why sensitive
//     fields are redacted by key first.
//   * `redactCredentials` applies only the credential patterns (for fields
//     such as the token's `sub`, which must stay readable as an identity).
//   * `capJson` returns JSON of at most `maxBytes` UTF-8 bytes; a longer text
//     is cut on a character boundary and ends with "…[truncated N bytes]"
//     (N = bytes dropped), so truncation is always visible. A truncated
//     result is no longer valid JSON.

export const REDACTED = '[redacted]'
export const REDACTED_EMAIL = '[redacted-email]'
export const REDACTED_PHONE = '[redacted-phone]'
export const REDACTED_TOKEN = '[redacted-token]'
export const REDACTED_CARD = '[redacted-card]'

/** Keys whose values are credentials: always redacted, in addition to the policy's keys. */
export const CREDENTIAL_KEYS: ReadonlySet<string> = new Set([
  'authorization', 'proxy-authorization', 'cookie', 'set-cookie', 'password', 'passwd', 'secret',
  'client_secret', 'token', 'access_token', 'refresh_token', 'id_token', 'api_key', 'apikey',
  'private_key', 'x-api-key', 'jwt', 'credential', 'credentials', 'ssn',
])

/** Words that mean the same personal datum as a policy key: a key holding one is redacted with it. */
export const KEY_SYNONYMS: Readonly<Record<string, readonly string[]>> = {
  phone: ['phone', 'telephone', 'tel', 'mobile', 'cell', 'cellphone', 'fax', 'msisdn'],
  email: ['email', 'mail'],
  address: ['address', 'addr', 'street', 'postcode', 'zip'],
}

const MAX_DEPTH = 64

function normalizeKey(key: string): string {
  return key.toLowerCase().replace(/[\s_.-]/g, '')
}

/** The words of a key: split at camelCase humps, digits, "_", "-", "." and spaces; lower case. */
function keyWords(key: string): string[] {
  return key
    .replace(/([\p{Ll}\p{N}])(\p{Lu})/gu, '$1 $2')
    .replace(/(\p{Lu}+)(\p{Lu}\p{Ll})/gu, '$1 $2')
    .toLowerCase()
    .split(/[\s_.-]+/)
    .filter((w) => w !== '')
}

const CREDENTIAL_NORMALIZED = new Set([...CREDENTIAL_KEYS].map(normalizeKey))
const normalizedCache = new WeakMap<ReadonlySet<string>, ReadonlySet<string>>()

function normalizedKeys(keys: ReadonlySet<string>): ReadonlySet<string> {
  let set = normalizedCache.get(keys)
  if (!set) {
    const all = new Set(CREDENTIAL_NORMALIZED)
    for (const key of keys) {
      const normalized = normalizeKey(key)
      all.add(normalized)
      for (const synonym of KEY_SYNONYMS[normalized] ?? []) all.add(synonym)
    }
    set = all
    normalizedCache.set(keys, set)
  }
  return set
}

/**
 * Whether `word` names a sensitive key: as written, without trailing digits
 * ("phone2"), or as the plural of a personal-data key ("phones", "emails",
 * "addresses"; not of a credential key, so "tokens" in a count stays).
 */
function isSensitiveWord(word: string, keys: ReadonlySet<string>): boolean {
  if (keys.has(word)) return true
  const stem = word.replace(/\p{N}+$/u, '')
  if (stem !== word && stem !== '' && keys.has(stem)) return true
  for (const singular of [stem.replace(/es$/, ''), stem.replace(/s$/, '')]) {
    if (singular !== stem && keys.has(singular) && !CREDENTIAL_NORMALIZED.has(singular)) return true
  }
  return false
}

/** A key is sensitive when it, or one of its words, or two adjacent words together ("api key"), is. */
function isSensitiveKey(key: string, keys: ReadonlySet<string>): boolean {
  if (isSensitiveWord(normalizeKey(key), keys)) return true
  const words = keyWords(key)
  for (let i = 0; i < words.length; i++) {
    if (isSensitiveWord(words[i]!, keys)) return true
    if (i + 1 < words.length && keys.has(words[i]! + words[i + 1]!)) return true
  }
  return false
}

/**
 * Object keys are mostly a tool's fixed field names ("customer", "email"), the
 * same on every call: for a key that redactText leaves unchanged (so it holds
 * nothing the patterns recognise as personal data or a credential) and that
 * is short, its sensitivity is remembered per key set. Bounded: cleared when
 * full, so caller-chosen keys cannot grow it.
 */
const KEY_CACHE_MAX = 1024
const KEY_CACHE_MAX_CHARS = 64
const cleanKeyCache = new WeakMap<ReadonlySet<string>, Map<string, boolean>>()

/** [the key as written out, whether its value is redacted] */
function keyVerdict(key: string, keys: ReadonlySet<string>): [string, boolean] {
  let cache = cleanKeyCache.get(keys)
  const cached = cache?.get(key)
  if (cached !== undefined) return [key, cached]
  const outKey = redactText(key)
  const sensitive = isSensitiveKey(key, keys)
  if (outKey === key && key.length <= KEY_CACHE_MAX_CHARS) {
    if (!cache) cleanKeyCache.set(keys, (cache = new Map()))
    if (cache.size >= KEY_CACHE_MAX) cache.clear()
    cache.set(key, sensitive)
  }
  return [outKey, sensitive]
}

/** Deep copy of `value` with sensitive keys and personal data redacted (see module header). */
export function redact(value: unknown, sensitiveKeys: ReadonlySet<string>): unknown {
  const keys = normalizedKeys(sensitiveKeys)
  const seen = new WeakSet<object>()

  function walk(node: unknown, depth: number): unknown {
    if (typeof node === 'string') return redactText(node)
    if (node === null || typeof node === 'number' || typeof node === 'boolean') return node
    if (typeof node === 'bigint') return node.toString()
    if (typeof node !== 'object') return undefined // undefined, function, symbol
    if (seen.has(node)) return '[circular]'
    if (depth >= MAX_DEPTH) return '[too deep]'
    if (node instanceof Date) return Number.isNaN(node.getTime()) ? null : node.toISOString()
    seen.add(node)
    try {
      if (Array.isArray(node)) return node.map((item) => walk(item, depth + 1) ?? null)
      const out: Record<string, unknown> = {}
      for (const [key, child] of Object.entries(node)) {
        if (child === undefined || typeof child === 'function' || typeof child === 'symbol') continue
        const [redactedKey, sensitive] = keyVerdict(key, keys)
        let outKey = redactedKey
        for (let n = 2; Object.hasOwn(out, outKey); n += 1) outKey = `${redactedKey} #${n}`
        out[outKey] = sensitive ? REDACTED : walk(child, depth + 1)
      }
      return out
    } finally {
      seen.delete(node)
    }
  }

  return walk(value, 0)
}

// Credentials. Order matters: whole credentials are replaced before the
// e-mail and phone patterns could match inside them.
//
// Every pattern is written to run in linear time on hostile input (tool
// arguments can be 256 KiB): a match can only start where a lookbehind says a
// run of its characters begins, and repetitions are bounded or unambiguous.
const BEARER = /\bBearer\s+[A-Za-z0-9\-._~+/]{8,}=*/gi
const BASIC = /\bBasic\s+(?=[A-Za-z0-9+/]*[0-9+/=])[A-Za-z0-9+/]{12,}={0,2}/g
const JWT = /(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}(?:\.[A-Za-z0-9_-]*){1,3}/g
const API_KEY = /(?<![A-Za-z0-9_-])(?:(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{8,}|gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|xox[abposr]-[A-Za-z0-9-]{10,}|AKIA[0-9A-Z]{16}(?![A-Za-z0-9])|glpat-[A-Za-z0-9_-]{20,}|AIza[0-9A-Za-z_-]{35}|ya29\.[0-9A-Za-z_.-]{20,}|npm_[A-Za-z0-9]{36})/g
// PEM private keys (RSA, EC, OPENSSH, ENCRYPTED, PKCS#8 ...), header to footer. Only a
// BEGIN marker starts a match and a match never backtracks (the footer is optional,
// the body bounded), so a key without its footer loses at most PEM_MAX characters.
const PEM_PRIVATE_KEY = /-----BEGIN[A-Z0-9 ]{0,40} PRIVATE KEY-----(?:(?!-----END)[\s\S]){0,20000}(?:-----END[A-Z0-9 ]{0,40} PRIVATE KEY-----)?/g
const CREDENTIAL_PARAM = /\b((?:access_token|refresh_token|id_token|client_secret|api_key|apikey|api_secret|password|passwd|passphrase|pwd|secret|token)["']?\s{0,3}[=:]\s{0,3})(["']?)[^\s"'&,;]{4,}\2/gi
// E-mail: local@domain.tld (letters of any script).
const EMAIL = /(?<![\p{L}\p{N}._%+-])[\p{L}\p{N}._%+-]+@[\p{L}\p{N}-]{1,63}(?:\.[\p{L}\p{N}-]{1,63}){0,8}\.\p{L}{2,63}/gu
// Phone-like: digit groups (optionally "+" and a parenthesised area code)
// separated by single spaces, dots or dashes, not part of a longer word, id,
// UUID, time or number. Which matches count as phones: phoneReplacement.
const PHONE = new RegExp(
  String.raw`(?:(?<![\p{L}\p{N}_+])\+\s?(?:\(\d{1,4}\)\s?)?\d{1,15}` + // "+…" (may follow "phone:")
  String.raw`|(?<![\p{L}\p{N}_.+\-/@#]|(?<!tel|phone|fax|mobile|cell):)(?:\(\d{1,4}\)\s?)?\d{1,15})` + // digits, not after "12:" or "v1."; "Tel:", "phone:" … in any case
  String.raw`(?:[\s./-]\(?\d{1,15}\)?){0,7}(?![\p{L}\p{N}_@]|[.:/-]\d)`,
  'giu',
)
// A card number: 13-19 digits, single spaces or dashes between them, not part
// of a longer number; redacted only when the Luhn check passes (cardReplacement).
const CARD = String.raw`(?<![\p{L}\p{N}_.+\-/@#])\d(?:[ -]?\d){12,18}(?![\p{L}\p{N}_@]|[.:/ -]\d)`
// A bare digit run longer than a phone number's 15 digits (and not a card) is redacted as one too.
const LONG_DIGITS = /(?<![\p{L}\p{N}_])\d{16,}(?![\p{L}\p{N}_])/gu
// A UUID (request ids, jti) is tried first at each position, so its leading
// digit groups ("63799822-9136-4236-…") are never taken for a phone number.
const UUID = String.raw`(?<![\p{L}\p{N}])[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}(?![\p{L}\p{N}])`
const UUID_OR_PHONE = new RegExp(`${UUID}|${PHONE.source}`, 'giu')
const UUID_OR_CARD = new RegExp(`${UUID}|${CARD}`, 'gu')
const IS_UUID = new RegExp(`^${UUID}$`, 'u')
const NOT_A_PHONE = [
  /^\d{4}[-./]\d{1,2}[-./]\d{1,2}$/, // 2026-01-15, 2026.01.15, 2026/01/15
  /^\d{1,2}[-./]\d{1,2}[-./]\d{2,4}$/, // 15.01.2026, 15-01-26, 01/15/2026
  /^\d{1,3}(?:\.\d{1,3}){3}$/, // IPv4 address
  /^\d+\.\d+$/, // decimal number, e.g. a price
]

/**
 * A PHONE match is redacted when it has a "+" and 7..15 digits, or digit
 * groups with separators and at least 7 digits, or is a bare run of 10 or
 * more digits, unless it reads as a date, an IPv4 address or a decimal.
 * Longer runs are redacted too: over-redaction is the safe error.
 */
function phoneReplacement(match: string): string {
  if (IS_UUID.test(match)) return match
  const trimmed = match.trim()
  // a date, IP or decimal (also in parentheses, or several in a row: "2024-10-07 2026-07-28)") is not a phone
  const pieces = trimmed.replace(/[()]/g, '').split(/\s+/)
  if (pieces.every((piece) => NOT_A_PHONE.some((re) => re.test(piece)))) return match
  const digits = trimmed.replace(/\D/g, '').length
  const separated = /[\s().-]/.test(trimmed)
  if (trimmed.startsWith('+') ? digits >= 7 : separated ? digits >= 7 : digits >= 10) return REDACTED_PHONE
  return match
}

/** Luhn check of the digits of `match`, 13 to 19 of them. */
function cardReplacement(match: string): string {
  if (IS_UUID.test(match)) return match
  const digits = match.replace(/\D/g, '')
  if (digits.length < 13 || digits.length > 19) return match
  let sum = 0
  for (let i = 0; i < digits.length; i++) {
    let d = digits.charCodeAt(digits.length - 1 - i) - 48
    if (i % 2 === 1) {
      d *= 2
      if (d > 9) d -= 9
    }
    sum += d
  }
  return sum % 10 === 0 ? REDACTED_CARD : match
}

/**
 * Characters read as their ASCII form by the e-mail, card and phone patterns:
 * full-width signs and space, the Unicode dashes, and every decimal digit of
 * the Basic Multilingual Plane (\p{Nd}: full-width, Arabic-Indic, Devanagari,
 * Thai ...). Each maps one UTF-16 unit to one, so offsets in the folded text
 * are offsets in the text; astral digits (mathematical digits) stay as they are.
 */
const FOLD: Readonly<Record<string, string>> = {
  '\uff20': '@', '\uff0b': '+', '\uff0d': '-', '\uff0e': '.', '\uff0f': '/', '\uff08': '(', '\uff09': ')', '\uff1a': ':',
  '\u3000': ' ', '\u2010': '-', '\u2011': '-', '\u2012': '-', '\u2013': '-', '\u2014': '-', '\u2212': '-', '\ufe63': '-',
}
const FOLDABLE = /[\uff20\uff0b\uff0d\uff0e\uff0f\uff08\uff09\uff1a\u3000\u2010-\u2014\u2212\ufe63]|(?![0-9])\p{Nd}/gu
const DECIMAL = /\p{Nd}/u

/** The ASCII digit of a BMP decimal digit: its place in its run of ten (Unicode keeps each script's 0..9 contiguous). */
function asciiDigit(c: string): string {
  let zero = c.charCodeAt(0)
  while (zero > 0 && DECIMAL.test(String.fromCharCode(zero - 1))) zero -= 1
  return String.fromCharCode(0x30 + ((c.charCodeAt(0) - zero) % 10))
}

function fold(text: string): string {
  return text.replace(FOLDABLE, (c) => FOLD[c] ?? (c.length === 1 ? asciiDigit(c) : c))
}

/**
 * `text.replace(pattern, replace)` with the pattern matched against the folded
 * text; what is not replaced keeps its original characters.
 */
function replaceFolded(text: string, pattern: RegExp, replace: (match: string) => string): string {
  const folded = fold(text)
  if (folded === text) return text.replace(pattern, replace)
  let out = ''
  let last = 0
  for (const m of folded.matchAll(pattern)) {
    const replacement = replace(m[0])
    if (replacement === m[0]) continue
    out += text.slice(last, m.index) + replacement
    last = m.index + m[0].length
  }
  return out + text.slice(last)
}

/** Redacts bearer/basic credentials, JWTs, API keys and `password=`-style values (see module header). */
export function redactCredentials(text: string): string {
  return text
    .replace(PEM_PRIVATE_KEY, REDACTED_TOKEN)
    .replace(BEARER, REDACTED_TOKEN)
    .replace(BASIC, REDACTED_TOKEN)
    .replace(JWT, REDACTED_TOKEN)
    .replace(API_KEY, REDACTED_TOKEN)
    .replace(CREDENTIAL_PARAM, (_m, prefix: string, quote: string) => `${prefix}${quote}${REDACTED_TOKEN}${quote}`)
}

const HAS_FOLDABLE = new RegExp(FOLDABLE.source, 'u')

function replacePlain(text: string, pattern: RegExp, replace: (match: string) => string): string {
  return text.replace(pattern, replace)
}

/** Redacts credentials, e-mail addresses, card numbers and phone numbers in free text (see module header). */
export function redactText(text: string): string {
  let out = redactCredentials(text)
  // The replacements are plain ASCII: a text with nothing to fold keeps
  // nothing to fold, and replaceFolded of it is a plain replace. Checked once.
  const replace = HAS_FOLDABLE.test(out) ? replaceFolded : replacePlain
  out = replace(out, EMAIL, () => REDACTED_EMAIL)
  out = replace(out, UUID_OR_CARD, cardReplacement)
  out = replace(out, UUID_OR_PHONE, phoneReplacement)
  return replace(out, LONG_DIGITS, () => REDACTED_PHONE)
}

const encoder = new TextEncoder()
const decoder = new TextDecoder()

function marker(droppedBytes: number): string {
  return `…[truncated ${droppedBytes} bytes]`
}

/** Longest prefix of `bytes` of at most `limit` bytes that ends on a UTF-8 character boundary. */
function utf8Prefix(bytes: Uint8Array, limit: number): Uint8Array {
  if (bytes.length <= limit) return bytes
  let cut = Math.max(0, limit)
  while (cut > 0 && ((bytes[cut] ?? 0) & 0xc0) === 0x80) cut -= 1
  return bytes.subarray(0, cut)
}

function safeStringify(value: unknown): string {
  try {
    const json = JSON.stringify(value, (_key, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))
    return json === undefined ? 'null' : json
  } catch {
    return JSON.stringify('[unserializable]')
  }
}

/**
 * JSON of `value` in at most `maxBytes` UTF-8 bytes. Longer JSON is cut on a
 * character boundary and ends with "…[truncated N bytes]". If even the
 * marker does not fit, the result is the longest prefix of the marker that
 * does. `undefined` serialises as "null"; values JSON cannot represent
 * (cycles) as "\"[unserializable]\"". Does not redact: redact first.
 */
export function capJson(value: unknown, maxBytes: number): string {
  return capText(safeStringify(value), maxBytes)
}

/** `text` in at most `maxBytes` UTF-8 bytes, cut as capJson cuts JSON. */
export function capText(json: string, maxBytes: number): string {
  const limit = Math.max(0, Math.floor(maxBytes))
  const bytes = encoder.encode(json)
  if (bytes.length <= limit) return json
  const worst = encoder.encode(marker(bytes.length)).length
  if (worst > limit) return decoder.decode(utf8Prefix(encoder.encode(marker(bytes.length)), limit))
  const kept = utf8Prefix(bytes, limit - worst)
  return decoder.decode(kept) + marker(bytes.length - kept.length)
}
