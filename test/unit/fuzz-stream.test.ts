import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { CaptureAssembler } from "../../src/capture/walk-capture.ts";
import { parseBpftraceLine } from "../../src/stream/bpftrace-json.ts";
import { parseRecord } from "../../src/stream/records.ts";
import { prng } from "../helpers/prng.ts";

// Mutated copies of a real stream: the parsers may reject a line, but only with a plain
// Error, and the assembler must never crash or loop on whatever gets through.
const lines = readFileSync(new URL("../fixtures/leaker-go1.19-bpftrace0.17.ndjson", import.meta.url), "utf8")
  .trim()
  .split("\n");

function mutate(line: string, r: () => number): string {
  const chars = [...line];
  const n = 1 + Math.floor(r() * 4);
  for (let i = 0; i < n; i++) {
    const at = Math.floor(r() * chars.length);
    const op = r();
    if (op < 0.3) chars.splice(at, 1);
    else if (op < 0.6) chars.splice(at, 0, String.fromCharCode(Math.floor(r() * 128)));
    else if (op < 0.8) chars[at] = ' 0123456789abcdefxX-"\\{}'.charAt(Math.floor(r() * 25));
    else chars.splice(at, Math.floor(r() * 20));
  }
  return chars.join("");
}

describe("fuzzing the bpftrace stream parsers", () => {
  test("mutated lines never escape as anything but a rejected line", () => {
    const r = prng(20261126);
    const deadline = performance.now() + 10_000;
    let parsed = 0;
    let rejected = 0;
    for (let round = 0; round < 3000 && performance.now() < deadline; round++) {
      const a = new CaptureAssembler();
      for (const original of lines) {
        const line = r() < 0.5 ? mutate(original, r) : original;
        const msg = parseBpftraceLine(line);
        expect(["attached_probes", "printf", "lost_events", "helper_error", "other", "invalid"]).toContain(msg.type);
        if (msg.type !== "printf") continue;
        try {
          a.add(parseRecord(msg.data));
          parsed++;
        } catch (e) {
          expect(e).toBeInstanceOf(Error);
          rejected++;
        }
      }
      for (const pid of a.pids()) {
        const c = a.capture(pid);
        expect(typeof c.complete).toBe("boolean");
      }
    }
    expect(parsed).toBeGreaterThan(0);
    expect(rejected).toBeGreaterThan(0);
  });
});
