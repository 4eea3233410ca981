import { emptyTableToken, Profile, Sample, StringTable } from "pprof-format";
import type { LocationTable } from "./location-table.ts";

/**
 * Samples encoded while a walk's records stream in, so that death does not wait for
 * them. At 40,000 buckets pprof-format took 150-280 ms to encode the samples after the
 * stream ended, while the thread that reads the stream mostly waits on bpftrace during it.
 *
 * A pprof profile is one protobuf message whose samples are a repeated field, and
 * protobuf parsers append the repeated fields of concatenated messages. So each sample
 * is encoded by pprof-format as a profile of that sample alone, with no string table
 * (`StringTable(emptyTableToken)` writes nothing), and the bytes are appended to the
 * profile that holds everything else. No protobuf is framed by hand.
 *
 * A sample's bytes are kept by its stack array (the live mirror's, whose locations
 * `table` holds) and used only when the sample at death has that stack and the same
 * values: anything else is encoded again, so the profile is the one the records give.
 */
export class EncodedSamples {
  private byStack = new Map<readonly number[], { values: number[]; bytes: Uint8Array }>();

  constructor(readonly table: LocationTable) {}

  get size(): number {
    return this.byStack.size;
  }

  /** Encodes one bucket's sample now; a later one for the same stack replaces it. */
  add(stack: readonly number[], values: number[]): void {
    const sample = new Sample({ locationId: this.table.stackIds(stack), value: values });
    this.byStack.set(stack, { values, bytes: encodeSamples([sample]) });
  }

  /** The bytes encoded for this stack with exactly these values, if any. */
  take(stack: readonly number[], values: readonly number[]): Uint8Array | undefined {
    const e = this.byStack.get(stack);
    if (!e || e.values.length !== values.length) return undefined;
    for (let i = 0; i < values.length; i++) if (e.values[i] !== values[i]) return undefined;
    return e.bytes;
  }
}

/** Samples as a profile's repeated sample field, and nothing else. */
export function encodeSamples(samples: Sample[]): Uint8Array {
  return new Profile({ sample: samples, stringTable: new StringTable(emptyTableToken) }).encode();
}

/** Byte strings one after the other. */
export function concatBytes(parts: Uint8Array[]): Uint8Array {
  let total = 0;
  for (const p of parts) total += p.length;
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
