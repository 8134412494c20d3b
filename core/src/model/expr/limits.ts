// The bounds that keep an expression cheap and safe. cel-js evaluates synchronously on the
// event loop, so an expression cannot be interrupted from outside; instead every source of
// work and memory is capped, and the caps are checked while it runs (docs/expressions.md).

/** Longest expression source accepted (characters). */
export const MAX_EXPRESSION_LENGTH = 4096;
/** Longest template source accepted (characters). */
export const MAX_TEMPLATE_LENGTH = 16 * 1024;
/** Parse-time structure limits handed to cel-js. */
export const MAX_AST_NODES = 2000;
export const MAX_AST_DEPTH = 64;
export const MAX_LITERAL_LIST_ELEMENTS = 1000;
export const MAX_LITERAL_MAP_ENTRIES = 1000;
/** Total items all comprehensions (map/filter/all/exists/exists_one) may visit in one evaluation. */
export const MAX_COMPREHENSION_ITEMS = 100_000;
/** Longest string any operation inside an expression may produce (characters). */
export const MAX_STRING_LENGTH = 1024 * 1024;
/** Longest list any operation inside an expression may produce. */
export const MAX_LIST_LENGTH = 100_000;
/** Largest result, measured as JSON text (bytes, approximated by UTF-16 length). */
export const MAX_RESULT_JSON_BYTES = 1024 * 1024;
/** Largest scope value (number of JSON nodes) converted for one evaluation. */
export const MAX_SCOPE_NODES = 1_000_000;
/** Longest string `matches()` will run a regular expression over. */
export const MAX_REGEX_INPUT_LENGTH = 4096;
/** Default wall-clock budget of one evaluation, checked between operations. */
export const DEFAULT_TIMEOUT_MS = 100;
