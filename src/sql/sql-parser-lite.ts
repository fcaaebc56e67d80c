/**
 * sql-parser-cst's `parse` and `FormattedSyntaxError` without the rest of
 * the package entry. Wrangler builds (deploy, dev, `check startup`, the
 * bench) alias the specifier `sql-parser-cst` to this file (`[alias]` in
 * wrangler.toml), so the bundle carries the parser and the few helpers it
 * requires, not the entry's serializer (`show`, `showNode/*`), visitor,
 * transformer and keyword re-exports, which nothing here uses (−58 KiB
 * minified, −12 KiB gzip).
 *
 * Only wrangler builds take the alias: the vitest workers pool (which does
 * not apply wrangler's `[alias]`) cannot load `lib/parser.js` imported on
 * its own (a 6.3 MB CommonJS file: "WebSocket message too large"), so the
 * unit and integration layers run the package entry, and
 * test/unit/sql-parser-lite.test.ts holds this file to the same results
 * and errors as the entry. The e2e layer (`wrangler dev`) runs this file.
 *
 * `parse` is the package entry's (lib/main.js, v0.42.1) line for line,
 * including its two reads of `options.dialect`: the guard counts those
 * reads as its parser work budget (src/sql/guard.ts).
 */
import { FormattedSyntaxError } from 'sql-parser-cst/lib/FormattedSyntaxError.js'
import { validDialectNames } from 'sql-parser-cst/lib/ParserOptions.js'
import { PeggySyntaxError, parse as peggyParse } from 'sql-parser-cst/lib/parser.js'
import type { parse as entryParse } from 'sql-parser-cst'

export { FormattedSyntaxError }

export const parse: typeof entryParse = (sql, options) => {
  if (!options || !options.dialect) {
    throw new Error(`No SQL dialect specified.`)
  }
  if (!validDialectNames[options.dialect]) {
    throw new Error(`Unsupported dialect name: "${options.dialect}"`)
  }
  try {
    return peggyParse(sql, options)
  } catch (e) {
    if (e instanceof PeggySyntaxError) {
      throw new FormattedSyntaxError(e, sql, options.filename)
    }
    throw e
  }
}
