// Token estimation for tool arguments and tool output (mostly JSON).
//
// Contract: estimateTokens(s) is never below 90 % of max(o200k_base(s),
// cl100k_base(s)) — the GPT-4o/5 and GPT-4 byte-level BPE encodings — for
// any string s, adversarial input included. It is an upper bound with a
// 10 % tolerance, not a best guess: budgets built on it cannot be exceeded
// by crafting text that tokenizes badly. It is cheap (no rank tables, one
// pass, no allocation) and errs high on ordinary text.
//
// Why a bound and not a tokenizer library: gpt-tokenizer's o200k table is
// ~1.1 MB gzip and ~170 ms to load (cl100k 448 KB, ~120 ms) against a ~280 KB
// Worker, and it would be exact for one family of client models only.
//
// The rule. Both encodings are byte-level BPE over a regex pre-tokenizer:
// a token never spans two pre-tokens and a pre-token never needs more tokens
// than it has UTF-8 bytes. The text is cut into runs and each run is charged:
//   non-ASCII code point   its UTF-8 length: 2 (U+0080-07FF), 3 (rest of the
//                          BMP, also a lone surrogate, which encodes as
//                          U+FFFD), 4 (astral: emoji…). The byte bound, for
//                          every script: random sequences of code points of
//                          most blocks (braille, arrows, box drawing, CJK,
//                          Hangul, Indic, Ethiopic, ZWJ and variation
//                          selectors) really cost 2-3 tokens each.
//   letter run (A-Z a-z)   1 for the first letter, then per letter 0.62
//                          (lower after lower), 0.8 (upper after upper or
//                          lower after upper), 1 (upper after lower: o200k
//                          starts a new pre-token there)
//   digit run              1 per 3 digits (rounded up): exact for both
//   punctuation run        1 for the first mark, then 0.65 per JSON mark
//                          (" , : { } [ ]) and 0.9 per other mark
//   whitespace run         1 per tab, CR or newline (0.5 for a newline after a
//                          newline or CR); 1 per run of spaces, + 1/64 a space;
//                          a single space before a letter, a mark or a
//                          non-ASCII character is free (it joins that pre-token)
// The result is the sum, rounded up; 0 for "", else at least 1.
//
// Calibration (gpt-tokenizer 4.0.0; the larger of o200k and cl100k; random
// strings of 1-400 characters, 1 000+ per class): worst true/estimate ratio
// per class — random lower-case letters 1.00, mixed case 1.06, upper case
// 1.00, digits 1.00, punctuation 1.00, JSON punctuation 1.06, whitespace
// mixes of " \t\n\r" 1.00, printable ASCII 1.08, letters and digits 1.09,
// alternating letter/mark 1.00, random words 1.00, mixes of all ASCII classes
// 1.00, any non-ASCII block and non-ASCII/ASCII mixes 1.00. The property
// test (test/unit/estimate-bound.test.ts) checks the contract on 10 000
// generated strings covering every branch.
// The price of soundness is over-estimation of ordinary text, where BPE
// merges whole words: demo-data JSON (customers, orders, products; compact
// and pretty) about +100 % (the previous, unsound heuristic: +17 %), English
// prose about +150 % (previous: +34 %), non-English text 2-5x.
// Pure and allocation-free: no Node APIs, safe in workerd.

const FIRST_LETTER = 1
const LOWER_AFTER_LOWER = 0.75
const LOWER_AFTER_LOWER_LONG = 0.6 // from the 9th letter of a run on
const SAME_OR_LOWER_AFTER_UPPER = 0.8
const UPPER_AFTER_LOWER = 1
const FIRST_MARK = 1
const JSON_MARK = 0.65
const OTHER_MARK = 1
const BREAK = 1
const NEWLINE_AFTER_BREAK = 0.5
const SPACE_RUN = 1
const SPACE_LONG = 1 / 64

// classes of ASCII characters
const LETTER = 1
const DIGIT = 2
const BLANK = 3
const PUNCTUATION = 4
const ASCII_CLASS = new Uint8Array(128).fill(PUNCTUATION)
for (let c = 48; c <= 57; c++) ASCII_CLASS[c] = DIGIT
for (let c = 65; c <= 90; c++) ASCII_CLASS[c] = LETTER
for (let c = 97; c <= 122; c++) ASCII_CLASS[c] = LETTER
for (const c of [9, 10, 13, 32]) ASCII_CLASS[c] = BLANK
const IS_JSON_MARK = new Uint8Array(128)
for (const ch of '",:{}[]') IS_JSON_MARK[ch.charCodeAt(0)] = 1

/**
 * Estimated LLM tokens for `text`: never below 90 % of the o200k_base or
 * cl100k_base count (see the module header); 0 for the empty string,
 * otherwise at least 1.
 */
export function estimateTokens(text: string): number {
  const n = text.length
  let total = 0
  let i = 0
  while (i < n) {
    let c = text.charCodeAt(i)
    if (c >= 128) {
      if (c < 0x800) total += 2
      else if (c >= 0xd800 && c <= 0xdbff && i + 1 < n && (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
        total += 4 // a surrogate pair: one astral code point
        i++
      } else total += 3
      i++
      continue
    }
    const cls = ASCII_CLASS[c]!
    const start = i
    if (cls === LETTER) {
      total += FIRST_LETTER
      let upper = c <= 90
      while (++i < n && (c = text.charCodeAt(i)) < 128 && ASCII_CLASS[c] === LETTER) {
        const isUpper = c <= 90
        if (isUpper !== upper || upper) total += isUpper ? (upper ? SAME_OR_LOWER_AFTER_UPPER : UPPER_AFTER_LOWER) : SAME_OR_LOWER_AFTER_UPPER
        else total += i - start < 8 ? LOWER_AFTER_LOWER : LOWER_AFTER_LOWER_LONG
        upper = isUpper
      }
    } else if (cls === DIGIT) {
      do i++
      while (i < n && (c = text.charCodeAt(i)) >= 48 && c <= 57)
      total += Math.ceil((i - start) / 3)
    } else if (cls === BLANK) {
      let spaces = 0
      let previous = 0
      for (;;) {
        if (c === 32) spaces++
        else {
          if (spaces > 0) total += SPACE_RUN + spaces * SPACE_LONG
          spaces = 0
          total += c === 10 && (previous === 10 || previous === 13) ? NEWLINE_AFTER_BREAK : BREAK
        }
        previous = c
        if (++i >= n || (c = text.charCodeAt(i)) >= 128 || ASCII_CLASS[c] !== BLANK) break
      }
      // a single space joins a following word, mark or non-ASCII character; not a digit
      const joins = spaces === 1 && i < n && (c >= 128 || ASCII_CLASS[c] === LETTER || ASCII_CLASS[c] === PUNCTUATION)
      if (spaces > 0 && !joins) total += SPACE_RUN + spaces * SPACE_LONG
    } else {
      total += FIRST_MARK
      let json = IS_JSON_MARK[c] === 1
      while (++i < n && (c = text.charCodeAt(i)) < 128 && ASCII_CLASS[c] === PUNCTUATION) {
        const isJson = IS_JSON_MARK[c] === 1
        total += json && isJson ? JSON_MARK : OTHER_MARK
        json = isJson
      }
    }
  }
  return n > 0 ? Math.max(1, Math.ceil(total)) : 0
}
