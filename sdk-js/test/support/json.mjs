// A lossless JSON reader for the golden vectors: JSON.parse turns
// 18446744073709551615 into a nearby double and 1.0 into 1, but the
// vectors mean exactly what they say. Numbers stay as their text, objects
// keep their key order (as [key, value] entries).

export class JNumber {
  constructor(text) {
    this.text = text;
  }

  get isFloat() {
    return /[.eE]/.test(this.text);
  }
}

export class JObject {
  constructor(entries) {
    this.entries = entries;
  }

  get(key) {
    const e = this.entries.find(([k]) => k === key);
    return e ? e[1] : undefined;
  }

  has(key) {
    return this.entries.some(([k]) => k === key);
  }
}

export function parse(text) {
  let i = 0;
  const ws = () => {
    while (i < text.length && ' \t\r\n'.includes(text[i])) i++;
  };
  const fail = (what) => {
    throw new SyntaxError(`json: ${what} at ${i}`);
  };
  const value = () => {
    ws();
    const c = text[i];
    if (c === '{') {
      i++;
      const entries = [];
      ws();
      if (text[i] === '}') {
        i++;
        return new JObject(entries);
      }
      for (;;) {
        ws();
        const k = value();
        if (typeof k !== 'string') fail('key');
        ws();
        if (text[i++] !== ':') fail('colon');
        entries.push([k, value()]);
        ws();
        const d = text[i++];
        if (d === '}') return new JObject(entries);
        if (d !== ',') fail('comma');
      }
    }
    if (c === '[') {
      i++;
      const items = [];
      ws();
      if (text[i] === ']') {
        i++;
        return items;
      }
      for (;;) {
        items.push(value());
        ws();
        const d = text[i++];
        if (d === ']') return items;
        if (d !== ',') fail('comma');
      }
    }
    if (c === '"') {
      const start = i;
      i++;
      while (text[i] !== '"') {
        if (text[i] === '\\') i++;
        i++;
        if (i >= text.length) fail('string');
      }
      i++;
      return JSON.parse(text.slice(start, i));
    }
    const m = /^(?:true|false|null|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)/.exec(text.slice(i, i + 400));
    if (!m) fail('value');
    i += m[0].length;
    if (m[0] === 'true') return true;
    if (m[0] === 'false') return false;
    if (m[0] === 'null') return null;
    return new JNumber(m[0]);
  };
  const v = value();
  ws();
  if (i !== text.length) fail('trailing text');
  return v;
}

export function stringify(v) {
  if (v instanceof JNumber) return v.text;
  if (v instanceof JObject) return `{${v.entries.map(([k, x]) => `${JSON.stringify(k)}: ${stringify(x)}`).join(', ')}}`;
  if (Array.isArray(v)) return `[${v.map(stringify).join(', ')}]`;
  return JSON.stringify(v);
}

/** Equal as JSON forms: same kinds of numbers with equal values, same key order. */
export function equal(a, b) {
  if (a instanceof JNumber || b instanceof JNumber) {
    if (!(a instanceof JNumber && b instanceof JNumber) || a.isFloat !== b.isFloat) return false;
    return a.isFloat ? Object.is(Number(a.text), Number(b.text)) : BigInt(a.text) === BigInt(b.text);
  }
  if (a instanceof JObject || b instanceof JObject) {
    if (!(a instanceof JObject && b instanceof JObject) || a.entries.length !== b.entries.length) return false;
    return a.entries.every(([k, x], n) => b.entries[n][0] === k && equal(x, b.entries[n][1]));
  }
  if (Array.isArray(a) || Array.isArray(b)) {
    return Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((x, n) => equal(x, b[n]));
  }
  return a === b;
}
