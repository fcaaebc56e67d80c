// Property test of the estimator's contract (src/limits/estimate.ts):
// estimateTokens(s) >= 0.9 * max(o200k_base(s), cl100k_base(s)) for every s.
// Strings are generated per branch of the cost function — each ASCII class
// in adversarial random form, each non-ASCII byte length and the blocks that
// tokenize worst, lone surrogates — and as mixes of classes and of non-ASCII
// with ASCII. ESTIMATE_BOUND_RUNS sets the total number of strings (default
// 10 000), shared evenly by the properties; the PRNG is seeded, so a failure
// replays.
import { countTokens as cl100k } from 'gpt-tokenizer/encoding/cl100k_base'
import { countTokens as o200k } from 'gpt-tokenizer/encoding/o200k_base'
import { describe, expect, it } from 'vitest'
import { prng } from '../../scripts/demo-data.ts'
import { estimateTokens } from '../../src/limits/estimate.ts'
import { LISTED_MARKS, LISTED_WORDS } from '../../src/limits/estimate-words.ts'

const LOWER = 'abcdefghijklmnopqrstuvwxyz'
const UPPER = LOWER.toUpperCase()
const DIGITS = '0123456789'
const PUNCT = '!"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~'
const JSON_MARKS = '"{}[],:'
const PRINTABLE = Array.from({ length: 95 }, (_, i) => String.fromCharCode(32 + i)).join('')

type Gen = (rand: () => number, length: number) => string

const pick = (rand: () => number, alphabet: string) => alphabet[Math.floor(rand() * alphabet.length)]!
const chars = (alphabet: string): Gen => (rand, length) => {
  let s = ''
  for (let i = 0; i < length; i++) s += pick(rand, alphabet)
  return s
}
const codePoints = (lo: number, hi: number): Gen => (rand, length) => {
  let s = ''
  for (let i = 0; i < length; i++) s += String.fromCodePoint(lo + Math.floor(rand() * (hi - lo)))
  return s
}
const alternate = (a: string, b: string): Gen => (rand, length) => {
  let s = ''
  for (let i = 0; i < length; i++) s += pick(rand, i % 2 ? b : a)
  return s
}
/** Random pieces (1-12 characters) of the given generators, concatenated. */
const mix = (...parts: Gen[]): Gen => (rand, length) => {
  let s = ''
  while (s.length < length) s += parts[Math.floor(rand() * parts.length)]!(rand, 1 + Math.floor(rand() * 12))
  return s
}
const words: Gen = (rand, length) => {
  let s = ''
  while (s.length < length) s += chars(LOWER)(rand, 1 + Math.floor(rand() * 9)) + pick(rand, '  ,.;:\n\t')
  return s
}

const WORDS = [...LISTED_WORDS]
const MARKS = [...LISTED_MARKS]
const listedWord = (rand: () => number): string => {
  const w = WORDS[Math.floor(rand() * WORDS.length)]!
  const r = rand()
  return r < 0.5 ? w : r < 0.8 ? w[0]!.toUpperCase() + w.slice(1) : w.toUpperCase()
}
/** Listed words (any case) with random separators: none (camelCase), space, marks, listed marks, breaks. */
const listedWords = (separator: Gen): Gen => (rand, length) => {
  let s = ''
  while (s.length < length) s += listedWord(rand) + separator(rand, 1)
  return s
}
const separators: Gen = (rand) => {
  const r = rand()
  if (r < 0.25) return ''
  if (r < 0.5) return ' '
  if (r < 0.7) return pick(rand, PUNCT)
  if (r < 0.85) return MARKS[Math.floor(rand() * MARKS.length)]!
  if (r < 0.95) return pick(rand, ' \n\t') + pick(rand, PUNCT)
  return '\n'
}

const ascii = {
  'random lower-case letters': chars(LOWER),
  'random upper-case letters': chars(UPPER),
  'random mixed-case letters': chars(LOWER + UPPER),
  'random digits': chars(DIGITS),
  'random letters and digits': chars(LOWER + UPPER + DIGITS),
  'random punctuation': chars(PUNCT),
  'random JSON punctuation': chars(JSON_MARKS),
  'random whitespace (" \\t\\n\\r")': chars(' \t\n\r'),
  'random breaks ("\\t\\n\\r")': chars('\t\n\r'),
  'random printable ASCII': chars(PRINTABLE),
  'alternating letters and marks ("a.b,c;d")': alternate(LOWER, PUNCT),
  'alternating characters and spaces': alternate(LOWER + UPPER + DIGITS + PUNCT, ' '),
  'random pseudo-words': words,
  'listed words with random separators': listedWords(separators),
  'listed mark sequences and marks': mix((rand) => MARKS[Math.floor(rand() * MARKS.length)]!, chars(PUNCT), (rand) => listedWord(rand)),
  'random mixes of ASCII classes': mix(chars(LOWER), chars(UPPER), chars(DIGITS), chars(PUNCT), chars(JSON_MARKS), chars(' \t\n\r'), chars(' ')),
} satisfies Record<string, Gen>

const nonAscii = {
  'two-byte code points (Latin-1 to NKo)': codePoints(0x80, 0x800),
  'Greek and Cyrillic': codePoints(0x370, 0x530),
  'Indic scripts': codePoints(0x900, 0xe00),
  'Ethiopic to Mongolian': codePoints(0x1200, 0x1900),
  'general punctuation, arrows, maths': codePoints(0x2000, 0x2400),
  'box drawing and geometric shapes': codePoints(0x2500, 0x2600),
  braille: codePoints(0x2800, 0x2900),
  'zero-width joiners and marks': codePoints(0x200b, 0x2010),
  'variation selectors': codePoints(0xfe00, 0xfe10),
  'CJK ideographs': codePoints(0x4e00, 0xa000),
  kana: codePoints(0x3040, 0x3100),
  'Hangul syllables': codePoints(0xac00, 0xd7a4),
  'private use and fullwidth forms': codePoints(0xe000, 0xfff0),
  'any BMP code point': codePoints(0x800, 0xd800),
  'lone surrogates': codePoints(0xd800, 0xe000),
  'astral code points (emoji, rare CJK)': codePoints(0x10000, 0x30000),
  'emoji with joiners and variation selectors': mix(codePoints(0x1f300, 0x1fa00), chars('\u200d\ufe0f\ufe0e')),
} satisfies Record<string, Gen>

const mixed = {
  'non-ASCII mixed with ASCII letters, marks and spaces': mix(chars(LOWER + UPPER), chars(PUNCT), chars(' '), chars(' \n'), codePoints(0x80, 0x800), codePoints(0x2000, 0x2e80), codePoints(0x400, 0x530), codePoints(0x4e00, 0xa000), codePoints(0x1f300, 0x1fa00)),
  'listed words next to non-ASCII characters': listedWords((rand) => (rand() < 0.5 ? codePoints(0x80, 0x3000)(rand, 1) : separators(rand, 1))),
  'braille inside JSON strings': (rand, length) => JSON.stringify({ note: codePoints(0x2800, 0x2900)(rand, length), id: chars(LOWER + DIGITS)(rand, 8) }),
} satisfies Record<string, Gen>

const properties: [string, Gen][] = [...Object.entries(ascii), ...Object.entries(nonAscii), ...Object.entries(mixed)]
const total = Number(process.env['ESTIMATE_BOUND_RUNS'] ?? 10_000)
const runs = Math.max(1, Math.ceil(total / properties.length))

function check(name: string, gen: Gen, seed: number): void {
  const rand = prng(seed)
  for (let run = 0; run < runs; run++) {
    // mostly short strings, where a single token more or less matters most
    const text = gen(rand, 1 + Math.floor(rand() * rand() * 400))
    const o = o200k(text)
    const c = cl100k(text)
    const estimate = estimateTokens(text)
    if (estimate < 0.9 * Math.max(o, c)) {
      expect.fail(`${name}: estimate ${estimate} < 90 % of max(o200k ${o}, cl100k ${c}) for ${JSON.stringify(text)}`)
    }
  }
}

describe('the word and mark lists estimateTokens charges one token each', () => {
  it('holds only words that are one token in o200k and cl100k as "w", " w", "W" and " W"', () => {
    for (const w of LISTED_WORDS) {
      const capital = w[0]!.toUpperCase() + w.slice(1)
      for (const form of [w, ` ${w}`, capital, ` ${capital}`]) expect([o200k(form), cl100k(form)], JSON.stringify(form)).toEqual([1, 1])
    }
  })
  it('holds only mark sequences that are one token in o200k and cl100k, bare and after a space', () => {
    for (const m of LISTED_MARKS) for (const form of [m, ` ${m}`]) expect([o200k(form), cl100k(form)], JSON.stringify(form)).toEqual([1, 1])
  })
})

describe('estimateTokens is an upper bound (within 10 %) of o200k_base and cl100k_base', () => {
  properties.forEach(([name, gen], k) => {
    it(`never under-counts ${name} by more than 10 % against o200k and cl100k`, () => check(name, gen, 20261206 + k), 60_000)
  })
})
