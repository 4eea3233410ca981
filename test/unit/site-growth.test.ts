import { describe, expect, test } from "bun:test";
import { heapSamples } from "../../src/profile/heap-views.ts";
import { allocationSites, siteGrowth } from "../../src/profile/sites.ts";
import type { MemProfileBucket } from "../../src/gobinary/mem-profile-bucket.ts";
import type { Symbolizer } from "../../src/symbolize/types.ts";
import type { KillEvent } from "../../src/output/events.ts";
import { killEvent } from "../helpers/kill-event.ts";
import { baseProfileName } from "../../src/output/profile-file.ts";
import { renderKillSummary } from "../../src/output/summary.ts";

const plain = { bold: (s: string) => s, red: (s: string) => s, dim: (s: string) => s };

/** Return PC → one frame; 0x1000 + 0x10·k is main.f<k> at line 10 + k. */
const symbolizer: Symbolizer = {
  frames: (pc) => {
    const k = Number((pc + 1n - 0x1000n) / 0x10n);
    return [{ function: `main.f${k}`, file: "/src/app/main.go", line: 10 + k, inlined: false }];
  },
};

/** A bucket whose active cycle holds `live` objects of `size` bytes (allocated live + freed 0), rate 1: unscaled. */
function bucket(k: number, live: number, size = 1024): MemProfileBucket {
  const counts = new Array<number>(16).fill(0);
  counts[0] = live;
  counts[2] = live * size;
  return { address: 0x9000 + k * 0x100, size, stack: [0x1000 + k * 0x10, 0x1000 + 9 * 0x10], counts };
}

function table(buckets: MemProfileBucket[]) {
  return allocationSites(heapSamples(buckets, 1, 0, 16), symbolizer);
}

describe("growth between a base profile and death", () => {
  test("sites by in-use growth, fastest first, with bytes per second; shrunk or steady sites left out; new sites count from zero", () => {
    const base = table([bucket(1, 100), bucket(2, 10), bucket(3, 50), bucket(4, 7)]);
    const death = table([bucket(1, 110), bucket(2, 1010), bucket(3, 20), bucket(4, 7), bucket(5, 30)]);
    const grew = siteGrowth(base, death, 4);
    expect(grew.map((g) => [g.site.function, g.site.location, g.baseBytes, g.grewBytes, g.bytesPerSecond])).toEqual([
      ["main.f2", "app/main.go:12", 10 * 1024, 1000 * 1024, 250 * 1024],
      ["main.f5", "app/main.go:15", 0, 30 * 1024, 7.5 * 1024],
      ["main.f1", "app/main.go:11", 100 * 1024, 10 * 1024, 2.5 * 1024],
    ]);
  });

  test("two lines of one function are two sites", () => {
    const lines: Symbolizer = { frames: (pc) => [{ function: "main.both", file: "/m.go", line: Number(pc & 0xffn), inlined: false }] };
    const at = (pc: number, live: number): MemProfileBucket => ({ ...bucket(0, live), address: pc, stack: [pc] });
    const base = allocationSites(heapSamples([at(0x2011, 5), at(0x2021, 5)], 1, 0, 16), lines);
    const death = allocationSites(heapSamples([at(0x2011, 5), at(0x2021, 9)], 1, 0, 16), lines);
    expect(siteGrowth(base, death, 1).map((g) => [g.site.location, g.grewBytes])).toEqual([["/m.go:32", 4 * 1024]]);
  });
});

/** The burst program's kill, with a profile. */
const burstKill = (over: Partial<KillEvent>) =>
  killEvent({
    comm: "burst",
    exe: "/burst",
    go_version: "go1.19.8",
    profile: "/out/burst-4242-20261204T120000Z.pb.gz",
    reason: null,
    buckets: 5,
    complete: true,
    memprofile_rate: 1,
    ...over,
  });

describe("the summary's growth block", () => {
  test("the fastest growers with their rates, and the -diff_base command", () => {
    const death = table([bucket(1, 110), bucket(2, 1010)]);
    const growth = siteGrowth(table([bucket(1, 100), bucket(2, 10)]), death, 4);
    const profile = "/out/burst-4242-20261204T120000Z.pb.gz";
    const base = `/out/${baseProfileName(profile)}`;
    expect(base).toBe("/out/burst-4242-20261204T120000Z.base.pb.gz");
    const text = renderKillSummary(burstKill({ base_profile: base, base_age_ms: 4000 }), death, plain, { growth });
    const block = text.slice(text.indexOf("Grew fastest"));
    expect(block).toStartWith("Grew fastest in the 4.0 s before death");
    expect(block).toMatch(/\n +\+1000\.0 KiB +250\.0 KiB\/s  main\.f2  app\/main\.go:12\n +\+10\.0 KiB +2\.5 KiB\/s  main\.f1/);
    expect(text).toContain(`  base: ${base}\n`);
    expect(text).toContain(`go tool pprof -http=: -diff_base ${base} ${profile}`);
  });

  test("asked for but none: one line why; not asked for: nothing", () => {
    const death = table([bucket(1, 110)]);
    const asked = renderKillSummary(burstKill({}), death, plain, { growth: undefined });
    expect(asked.split("\n").filter((l) => /base/.test(l))).toEqual([
      "  no base profile: no reading of its counters while it grew, at least half a second before death",
    ]);
    expect(renderKillSummary(burstKill({}), death, plain)).not.toMatch(/base|Grew/);
  });
});
