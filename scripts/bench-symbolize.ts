/**
 * Benchmarks GoSymbolizer on a big Go binary: time to index the function
 * table, and time to symbolize 10,000 PCs sampled (with a fixed seed) from
 * real function ranges.
 *
 *   bun scripts/bench-symbolize.ts [BINARY] [--pcs N]
 */
import { GoSymbolizer } from "../src/symbolize/pclntab.ts";
import { ElfFile } from "../src/gobinary/elf.ts";
import { prng } from "../test/helpers/prng.ts";

const DEFAULT_BINARY = "/usr/lib/go-1.19/pkg/tool/linux_amd64/compile";

const args = process.argv.slice(2);
const pcsFlag = args.indexOf("--pcs");
const pcCount = pcsFlag >= 0 ? Number(args.splice(pcsFlag, 2)[1]) : 10_000;
const binary = args[0] ?? DEFAULT_BINARY;

const ms = (t0: number) => (performance.now() - t0).toFixed(1);

let t0 = performance.now();
const elf = await ElfFile.open(binary);
const readMs = ms(t0);

t0 = performance.now();
const symbolizer = GoSymbolizer.fromElf(elf);
const indexMs = ms(t0);

// Function ranges from the ELF symbol table when present; otherwise random
// text addresses that a separate symbolizer places inside a function (so the
// timed one starts with cold caches).
const random = prng(0x5eed);
const probe = GoSymbolizer.fromElf(elf);
const ranges = [...elf.symbols().values()].filter((s) => s.type === 2 && s.size > 0).map((s) => ({ start: s.value, size: s.size }));
const text = elf.textSegment();
const pcs: bigint[] = [];
for (let attempts = 0; pcs.length < pcCount && attempts < pcCount * 100; attempts++) {
  let pc: bigint;
  if (ranges.length > 0) {
    const r = ranges[Math.floor(random() * ranges.length)]!;
    pc = r.start + BigInt(Math.floor(random() * r.size));
  } else {
    pc = text.vaddr + BigInt(Math.floor(random() * text.filesz));
  }
  if (ranges.length > 0 || probe.frames(pc).length > 0) pcs.push(pc);
}

t0 = performance.now();
let frames = 0;
let inlined = 0;
for (const pc of pcs) {
  const f = symbolizer.frames(pc);
  frames += f.length;
  for (const x of f) if (x.inlined) inlined++;
}
const symbolizeMs = performance.now() - t0;

// A second pass: caches (names, files) are warm now.
t0 = performance.now();
for (const pc of pcs) symbolizer.frames(pc);
const warmMs = performance.now() - t0;

const mib = (n: number) => `${(n / 1024 / 1024).toFixed(1)} MiB`;
const peakRss = (process as unknown as { resourceUsage(): { maxRSS: number } }).resourceUsage().maxRSS * 1024;
console.log(`binary:            ${binary} (${mib(elf.data.length)}, ${symbolizer.functionCount} functions)`);
console.log(`read file:         ${readMs} ms`);
console.log(`index:             ${indexMs} ms`);
console.log(`symbolize:         ${pcs.length} PCs in ${symbolizeMs.toFixed(1)} ms (${frames} frames, ${inlined} inlined)`);
console.log(`PCs/second:        ${Math.round(pcs.length / (symbolizeMs / 1000)).toLocaleString("en-US")}`);
console.log(`again (warm):      ${warmMs.toFixed(1)} ms, ${Math.round(pcs.length / (warmMs / 1000)).toLocaleString("en-US")} PCs/second`);
console.log(`peak RSS:          ${mib(peakRss)}`);
