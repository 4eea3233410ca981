/**
 * The little of the protobuf wire format that writing a message of strings, bytes and
 * nested messages takes: enough for one request, so no protobuf library is pulled in.
 */

/** A length-delimited field (wire type 2): string, bytes or an embedded message. */
export function lengthDelimited(field: number, payload: Uint8Array): Uint8Array {
  return concat([varint((field << 3) | 2), varint(payload.length), payload]);
}

/** A base-128 varint; arithmetic rather than bit operators, so lengths above 2^31 stay right. */
export function varint(n: number): Uint8Array {
  const out: number[] = [];
  let v = n;
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
  return Uint8Array.from(out);
}

export function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
