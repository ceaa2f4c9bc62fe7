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
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === BACKSLASH) i++;
      else if (c === QUOTE) inString = false;
    } else if (c === QUOTE) {
      inString = true;
    } else if (c === OPEN_BRACE || c === OPEN_BRACKET) {
      if (++depth > max) return `JSON nested deeper than ${max} levels`;
    } else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) {
      depth--;
    }
  }
  return undefined;
}
