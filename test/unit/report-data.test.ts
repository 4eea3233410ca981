import { describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { Function as PFunction, Line, Location, Mapping, Profile, Sample, StringTable, ValueType } from "pprof-format";
import { UserError } from "../../src/errors.ts";
import { SAMPLE_TYPES, VIEW_INDEX } from "../../src/profile/heap-views.ts";
import { memoryComment, parseMemoryComment } from "../../src/profile/memory-comment.ts";
import { decodeProfile, foldProfile, profileGrowth, type FlameNode } from "../../src/report/flame-data.ts";
import { pageData, renderReportHtml, scriptSafeJson } from "../../src/report/html.ts";
import { runOomprof, tempDir } from "../helpers/oomprof.ts";

setDefaultTimeout(180_000);

const SPACE = VIEW_INDEX.inuse_space;
const OBJECTS = VIEW_INDEX.inuse_objects;
const ALLOC = VIEW_INDEX.alloc_space;

/** Values in SAMPLE_TYPES order: inuse space/objects as given, alloc_space twice inuse_space. */
function values(space: number, objects: number): number[] {
  const v = new Array<number>(SAMPLE_TYPES.length).fill(0);
  v[SPACE] = space;
  v[OBJECTS] = objects;
  v[ALLOC] = 2 * space;
  return v;
}

/**
 * main.main calls main.alloc, into which main.helper is inlined (one location, two
 * lines, innermost first), and main.other, which recurses back into main.main once.
 * One location has no line records at all.
 */
function testProfile(opts: { evilName?: string; comments?: string[]; helperSpace?: number; timeNanos?: bigint } = {}): Profile {
  const st = new StringTable();
  const s = (v: string) => st.dedup(v);
  const fn = (id: number, name: string) => new PFunction({ id, name: s(name), systemName: s(name), filename: s("/src/app/main.go"), startLine: id * 10 });
  const functions = [fn(1, "main.main"), fn(2, "main.alloc"), fn(3, "main.helper"), fn(4, opts.evilName ?? "main.other")];
  const locations = [
    new Location({ id: 1, mappingId: 1, address: 0x1000, line: [new Line({ functionId: 3, line: 31 }), new Line({ functionId: 2, line: 22 })] }),
    new Location({ id: 2, mappingId: 1, address: 0x2000, line: [new Line({ functionId: 1, line: 12 })] }),
    new Location({ id: 3, mappingId: 1, address: 0x3000, line: [new Line({ functionId: 4, line: 44 })] }),
    new Location({ id: 4, mappingId: 1, address: 0x4abc, line: [] }),
  ];
  const samples = [
    new Sample({ locationId: [1, 2], value: values(opts.helperSpace ?? 1000, 10) }),
    new Sample({ locationId: [3, 2], value: values(300, 3) }),
    new Sample({ locationId: [1, 2], value: values(200, 2) }),
    new Sample({ locationId: [4, 2], value: values(50, 1) }),
    new Sample({ locationId: [2, 3, 2], value: values(7, 1) }),
  ];
  return new Profile({
    sampleType: SAMPLE_TYPES.map(([type, unit]) => new ValueType({ type: s(type), unit: s(unit) })),
    sample: samples,
    mapping: [new Mapping({ id: 1, memoryStart: 0x1000, memoryLimit: 0x10000, filename: s("/usr/local/bin/app"), hasFunctions: true })],
    location: locations,
    function: functions,
    stringTable: st,
    timeNanos: opts.timeNanos ?? 1_764_163_742_000_000_000n,
    periodType: new ValueType({ type: s("space"), unit: s("bytes") }),
    period: 524288,
    comment: (opts.comments ?? ["oomprof: heap at OOM kill of pid 1234 (app)", "go: go1.22.1", "capture: 5 buckets, complete"]).map(s),
    defaultSampleType: s("inuse_space"),
  });
}

function gz(p: Profile): Uint8Array {
  return gzipSync(p.encode());
}

function child(n: FlameNode, name: string): FlameNode {
  const c = n.children.find((k) => k.name === name);
  if (!c) throw new Error(`${n.name} has no child ${name} (has ${n.children.map((k) => k.name).join(", ")})`);
  return c;
}

describe("foldProfile", () => {
  const data = foldProfile(decodeProfile(gz(testProfile()), "test.pb.gz"));

  test("sample types, default view, comments and metadata come from the profile", () => {
    expect(data.sampleTypes.map((t) => t.type)).toEqual(SAMPLE_TYPES.map(([t]) => t));
    expect(data.defaultIndex).toBe(SPACE);
    expect(data.comments[0]).toBe("oomprof: heap at OOM kill of pid 1234 (app)");
    expect(data.binary).toBe("/usr/local/bin/app");
    expect(data.period).toBe(524288);
    expect(data.timeMs).toBe(1_764_163_742_000);
  });

  test("the tree folds stacks root first, expanding inlined frames outermost first", () => {
    const root = data.root;
    expect(root.total[SPACE]).toBe(1557);
    expect(root.children.map((c) => c.name)).toEqual(["main.main"]);
    const main = child(root, "main.main");
    expect(main.total[SPACE]).toBe(1557);
    expect(main.total[OBJECTS]).toBe(17);
    expect(main.self[SPACE]).toBe(0);

    const alloc = child(main, "main.alloc");
    expect(alloc.total[SPACE]).toBe(1200);
    expect(alloc.inlined).toBe(false);
    expect(alloc.self[SPACE]).toBe(0);
    const helper = child(alloc, "main.helper");
    expect(helper.inlined).toBe(true);
    expect(helper.total[SPACE]).toBe(1200);
    expect(helper.self[SPACE]).toBe(1200);
    expect(helper.total[ALLOC]).toBe(2400);
    expect(helper.children).toEqual([]);

    const other = child(main, "main.other");
    expect(other.total[SPACE]).toBe(307);
    expect(other.self[SPACE]).toBe(300);
    expect(child(other, "main.main").total[SPACE]).toBe(7);

    // No line records: named by address.
    expect(child(main, "0x4abc").total[SPACE]).toBe(50);
  });

  test("the top table: flat by innermost frame, cum once per sample even through recursion", () => {
    const top = new Map(data.top.map((e) => [e.name, e]));
    expect(data.top[0]!.name).toBe("main.helper");
    expect(top.get("main.helper")!.flat[SPACE]).toBe(1200);
    expect(top.get("main.helper")!.cum[SPACE]).toBe(1200);
    expect(top.get("main.alloc")!.flat[SPACE]).toBe(0);
    expect(top.get("main.alloc")!.cum[SPACE]).toBe(1200);
    expect(top.get("main.other")!.flat[SPACE]).toBe(300);
    expect(top.get("main.other")!.cum[SPACE]).toBe(307);
    expect(top.get("main.main")!.flat[SPACE]).toBe(7);
    expect(top.get("main.main")!.cum[SPACE]).toBe(1557);
    expect(top.get("0x4abc")!.flat[SPACE]).toBe(50);
    expect(top.get("main.helper")!.file).toBe("/src/app/main.go");
    const flats = data.top.map((e) => e.flat[SPACE]!);
    expect(flats).toEqual([...flats].sort((a, b) => b - a));
  });

  test("a profile that names no default view opens on inuse_space", () => {
    const p = testProfile();
    p.defaultSampleType = 0;
    expect(foldProfile(decodeProfile(gz(p), "x")).defaultIndex).toBe(SPACE);
  });
});

describe("decodeProfile rejects what is not a gzipped pprof profile, in one line", () => {
  const cases: Array<[string, Uint8Array, RegExp]> = [
    ["plain text", new TextEncoder().encode("hello, world\n"), /^bad: not gzip-compressed/],
    ["empty", new Uint8Array(), /^bad: not gzip-compressed/],
    ["truncated gzip", gz(testProfile()).slice(0, 40), /^bad: corrupt gzip data/],
    ["gzip of text", gzipSync("this is not a protobuf at all"), /^bad: not a pprof profile/],
    ["gzip of an empty message", gzipSync(new Uint8Array()), /^bad: not a pprof profile/],
  ];
  for (const [what, bytes, msg] of cases) {
    test(what, () => {
      let err: unknown;
      try {
        decodeProfile(bytes, "bad");
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(UserError);
      expect((err as Error).message).toMatch(msg);
      expect((err as Error).message).not.toContain("\n");
    });
  }
});

/** Every attribute or URL that could make a browser fetch something. */
function externalReferences(html: string): string[] {
  return [...html.matchAll(/https?:\/\/|\bsrc\s*=|\bhref\s*=|@import|url\(|<link\b|<iframe\b|<img\b|<object\b|<embed\b/gi)].map((m) => m[0]);
}

describe("renderReportHtml", () => {
  const data = foldProfile(decodeProfile(gz(testProfile()), "test.pb.gz"));
  const html = renderReportHtml(data, { source: "/tmp/test.pb.gz" });

  test("is one self-contained page: nothing external is referenced", () => {
    expect(externalReferences(html)).toEqual([]);
    expect(html).not.toContain("http://");
    expect(html).not.toContain("https://");
    expect(html).not.toContain("src=");
    expect(html).not.toContain("href=");
    // And the page forbids itself from loading anything even if something slipped in.
    expect(html).toMatch(/<meta http-equiv="Content-Security-Policy" content="default-src 'none';/);
  });

  test("embeds the folded data as JSON the page can read back", () => {
    const m = /<script type="application\/json" id="profile-data">([^<]*)<\/script>/.exec(html);
    expect(m).not.toBeNull();
    const embedded = JSON.parse(m![1]!);
    expect(embedded).toEqual(JSON.parse(JSON.stringify(pageData(data))));
    expect(embedded.names).toContain("main.helper");
    expect(embedded.sampleTypes[embedded.defaultIndex].type).toBe("inuse_space");
  });

  test("shows the profile's comments as the header", () => {
    expect(html).toContain("<title>oomprof: Heap at OOM kill of pid 1234 (app)</title>");
    expect(html).toContain("<th>go</th><td>go1.22.1</td>");
    expect(html).toContain('<tr class="good"><th>capture</th><td>5 buckets, complete</td></tr>');
  });

  test("names and comments cannot break out of the script element or the markup", () => {
    const evil = "main.</script><script>alert(1)</script><!--\u2028&amp;";
    const p = testProfile({ evilName: evil, comments: ["oomprof: heap at <b>OOM</b> kill", "capture: 1 buckets, PARTIAL (lost <i>x</i>)"] });
    const page = renderReportHtml(foldProfile(decodeProfile(gz(p), "evil.pb.gz")), { source: "evil</script>.pb.gz" });
    // Exactly the page's own three script elements close.
    expect(page.match(/<\/script/gi)!.length).toBe(3);
    expect(page).not.toContain("<b>OOM</b>");
    expect(page).toContain("&lt;b&gt;OOM&lt;/b&gt;");
    expect(page).toContain('<tr class="bad">');
    const m = /<script type="application\/json" id="profile-data">([^<]*)<\/script>/.exec(page);
    expect(JSON.parse(m![1]!).names).toContain(evil);
    expect(scriptSafeJson({ a: "</script>" })).toBe('{"a":"\\u003c/script\\u003e"}');
  });

  test("shows where the memory went, from the profile's memory comment", () => {
    const MiB = 1 << 20;
    const figures = { heap_inuse_bytes: 100 * MiB, stacks_bytes: 20 * MiB, runtime_other_bytes: 10 * MiB, not_go_bytes: 70 * MiB };
    const line = memoryComment(200 * MiB, figures);
    expect(parseMemoryComment(["go: go1.22.1", line])).toEqual({ rss_bytes: 200 * MiB, ...figures });
    // Unknown figures travel as unknown, and a malformed line is no breakdown at all.
    expect(parseMemoryComment([memoryComment(null, { ...figures, not_go_bytes: null })])).toEqual({ rss_bytes: null, ...figures, not_go_bytes: null });
    expect(parseMemoryComment([line.replace("stacks=", "stack=")])).toBeUndefined();
    expect(parseMemoryComment([line.replace(/heap_inuse=\d+/, "heap_inuse=1e9")])).toBeUndefined();

    const page = renderReportHtml(foldProfile(decodeProfile(gz(testProfile({ comments: ["go: go1.22.1", line] })), "m.pb.gz")), { source: "m.pb.gz" });
    const section = /<section class="memory" id="memory">.*?<\/section>/s.exec(page)?.[0] ?? "";
    expect(section).toContain("RSS 200.0 MiB");
    // One bar segment per part, each its share of RSS.
    expect([...section.matchAll(/style="width:([\d.]+)%"/g)].map((m) => m[1])).toEqual(["50.00", "10.00", "5.00", "35.00"]);
    expect(section).toMatch(/goroutine stacks<\/th><td>20.0 MiB<\/td><td>10.0%<\/td>/);
    expect(section).toMatch(/outside Go<\/th><td>70.0 MiB<\/td><td>35.0%<\/td>/);
    // The machine line is not repeated among the comments.
    expect(page).not.toContain("memory bytes:");
    // Without the comment (older profiles), no section.
    expect(html).not.toContain('class="memory"');
  });
});

describe("growth against a base profile", () => {
  const later = foldProfile(decodeProfile(gz(testProfile()), "x.pb.gz"));
  const base = foldProfile(decodeProfile(gz(testProfile({ helperSpace: 100, timeNanos: 1_764_163_738_000_000_000n })), "x.base.pb.gz"));

  test("functions whose flat value grew in the default view, most first, over the seconds between the two", () => {
    const g = profileGrowth(base, later)!;
    expect(g.sampleType.type).toBe("inuse_space");
    expect(g.seconds).toBe(4);
    expect(g.rows).toEqual([{ name: "main.helper", file: "/src/app/main.go", base: 300, later: 1200 }]);
  });

  test("the page shows it as a table above the graph", () => {
    const html = renderReportHtml(later, { source: "/x.pb.gz", base: { source: "/x.base.pb.gz", growth: profileGrowth(base, later)! } });
    expect(html).toContain("<b>base</b> /x.base.pb.gz");
    const table = html.slice(html.indexOf('<section class="table growth"'), html.indexOf('<section class="controls">'));
    expect(table).toContain("Grew fastest in the 4.0 s before this profile");
    expect(table).toMatch(
      /<td class="num">\+900 B<\/td><td class="num">225 B\/s<\/td><td class="num">300 B<\/td><td class="num">1\.2 KiB<\/td><td class="fn">main\.helper/,
    );
    expect(renderReportHtml(later, { source: "/x.pb.gz" })).not.toContain('id="growth"');
  });
});

describe("oomprof report (CLI)", () => {
  const dir = tempDir("oomprof-report-unit-");
  const good = join(dir, "app-1234-20261126T132902Z.pb.gz");
  writeFileSync(good, gz(testProfile()));

  test("writes FILE.html next to FILE.pb.gz by default", async () => {
    const r = await runOomprof(["report", good]);
    expect(r.stderr).toContain("wrote");
    expect(r.status).toBe(0);
    const out = good.replace(/\.pb\.gz$/, ".html");
    expect(existsSync(out)).toBe(true);
    expect(readFileSync(out, "utf8")).toContain("main.helper");
  });

  test("-o chooses the output", async () => {
    const out = join(dir, "custom.html");
    const r = await runOomprof(["report", good, "-o", out]);
    expect(r.status).toBe(0);
    expect(readFileSync(out, "utf8")).toStartWith("<!DOCTYPE html>");
  });

  test("a base profile beside it: the page shows what grew since", async () => {
    const profile = join(dir, "app-99-20261126T132902Z.pb.gz");
    writeFileSync(profile, gz(testProfile()));
    writeFileSync(profile.replace(/\.pb\.gz$/, ".base.pb.gz"), gz(testProfile({ helperSpace: 100, timeNanos: 1_764_163_738_000_000_000n })));
    const r = await runOomprof(["report", profile]);
    expect(r.status).toBe(0);
    const html = readFileSync(profile.replace(/\.pb\.gz$/, ".html"), "utf8");
    expect(html).toContain("Grew fastest in the 4.0 s before this profile");
    // The base's own report has no base.
    expect(await runOomprof(["report", profile.replace(/\.pb\.gz$/, ".base.pb.gz")])).toMatchObject({ status: 0 });
    expect(readFileSync(profile.replace(/\.pb\.gz$/, ".base.html"), "utf8")).not.toContain("Grew fastest");
  });

  const notGzip = join(dir, "notes.pb.gz");
  writeFileSync(notGzip, "just some text\n");
  const notPprof = join(dir, "random.pb.gz");
  writeFileSync(notPprof, gzipSync("definitely not protobuf"));
  mkdirSync(join(dir, "a-directory"));
  const cases: Array<[string, string[], RegExp]> = [
    ["a missing file", ["report", join(dir, "nope.pb.gz")], /nope\.pb\.gz: no such file or directory/],
    ["a file that is not gzip", ["report", notGzip], /notes\.pb\.gz: not gzip-compressed/],
    ["gzip that is not a profile", ["report", notPprof], /random\.pb\.gz: not a pprof profile/],
    ["an unwritable output", ["report", good, "-o", join(dir, "no-such-dir", "r.html")], /cannot write .*r\.html: no such file or directory/],
    ["an output that is a directory", ["report", good, "-o", join(dir, "a-directory")], /cannot write .*a-directory: is a directory/],
  ];
  for (const [what, args, msg] of cases) {
    test(`${what}: status 1, one line on stderr`, async () => {
      const r = await runOomprof(args);
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(msg);
      expect(r.stderr.trimEnd().split("\n")).toHaveLength(1);
      expect(r.stderr).toStartWith("oomprof: ");
    });
  }
});
