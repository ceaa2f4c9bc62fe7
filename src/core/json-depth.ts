/**
 * How deeply client JSON may nest. JSON.parse copes with any depth, but
 * everything after it that walks the value recursively (JSON.stringify when
 * a published value is re-encoded, validation, logging) overflows the stack
 * somewhere past a few thousand levels: a 100,000-deep body used to end in a
 * 500 and an error-level log. No message Herald carries needs more than a
 * handful of levels, so text nested deeper than this is refused before it is
 * parsed, with the limit named, in HTTP (400) and the JSON WebSocket (bad_json).
 */
export const MAX_JSON_DEPTH = 100;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_BRACE = 0x7b;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACE = 0x7d;
const CLOSE_BRACKET = 0x5d;

/**
 * Why `text` may not be parsed, or undefined when its nesting is within
 * `max` levels. One pass over the text, counting brackets outside strings;
 * it does not check that the text is valid JSON (JSON.parse does that next).
 */
export function jsonDepthProblem(text: string, max = MAX_JSON_DEPTH): string | undefined {
  // Deeper than `max` needs more than `max` opening brackets.
  if (text.length <= max) return undefined;
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      // Jump to the quote that ends the string: one preceded by an even number of backslashes.
      for (;;) {
        const end = text.indexOf('"', i + 1);
        if (end < 0) return undefined; // unterminated: JSON.parse says so
        let slashes = 0;
        while (text.charCodeAt(end - 1 - slashes) === BACKSLASH) slashes++;
        i = end;
        if (slashes % 2 === 0) break;
      }
    } else if (c === OPEN_BRACE || c === OPEN_BRACKET) {
      if (++depth > max) return `JSON nested deeper than ${max} levels`;
    } else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) {
      depth--;
    }
  }
  return undefined;
}
