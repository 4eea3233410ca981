import { formatBytes, formatPercent } from "../output/format.ts";
import { isMemoryComment, parseMemoryComment, type MemoryComment } from "../profile/memory-comment.ts";
import { CLIENT_SCRIPT } from "./client-script.ts";
import type { FlameData, FlameNode, ProfileGrowth } from "./flame-data.ts";

/**
 * The report as one self-contained HTML page: styles and script inline, the data as
 * JSON in a non-executing script element, and a Content-Security-Policy that forbids
 * the page from loading anything at all (no network, no files), so it stays safe to
 * open from an incident ticket or a mail attachment.
 */

export interface ReportPageOptions {
  /** Where the profile came from, shown in the header. */
  source: string;
  /** A base profile from before it (`X.base.pb.gz` beside `X.pb.gz`) and what grew since. */
  base?: { source: string; growth: ProfileGrowth };
}

/** Functions listed in the growth table. */
const GROWTH_ROWS = 20;

/** Compact page data: strings deduplicated, nodes as arrays (see client-script.ts). */
interface PageData {
  sampleTypes: FlameData["sampleTypes"];
  defaultIndex: number;
  names: string[];
  files: string[];
  root: PageNode;
  top: Array<[number, number, number[], number[]]>;
}
type PageNode = [number, number, 0 | 1, number[], PageNode[]];

export function pageData(data: FlameData): PageData {
  const names: string[] = [];
  const nameIdx = new Map<string, number>();
  const files: string[] = [""];
  const fileIdx = new Map<string, number>([["", 0]]);
  const intern = (s: string, list: string[], idx: Map<string, number>) => {
    let i = idx.get(s);
    if (i === undefined) {
      i = list.length;
      list.push(s);
      idx.set(s, i);
    }
    return i;
  };
  const node = (n: FlameNode): PageNode => [intern(n.name, names, nameIdx), intern(n.file, files, fileIdx), n.inlined ? 1 : 0, n.total, n.children.map(node)];
  return {
    sampleTypes: data.sampleTypes,
    defaultIndex: data.defaultIndex,
    names,
    files,
    root: node(data.root),
    top: data.top.map((e) => [intern(e.name, names, nameIdx), intern(e.file, files, fileIdx), e.flat, e.cum]),
  };
}

/**
 * JSON that is safe inside a script element: no "<" (so no closing tag or comment
 * opener), no ">" or "&", and no U+2028/U+2029. All are escaped as \uXXXX, which
 * JSON.parse reads back unchanged.
 */
export function scriptSafeJson(value: unknown): string {
  return JSON.stringify(value).replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

export function escapeHtml(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;").replace(/'/g, "&#39;");
}

const HEAP_AT = /^oomprof: heap at (.+)$/;

const CSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'";

export function renderReportHtml(data: FlameData, opts: ReportPageOptions): string {
  // The capture's own line is the title: not repeated among the comments.
  const victim = data.comments.map((c) => HEAP_AT.exec(c)?.[1]).find((v) => v !== undefined);
  const title = victim ? `Heap at ${victim}` : "Heap profile";
  const when =
    data.timeMs !== null
      ? new Date(data.timeMs)
          .toISOString()
          .replace("T", " ")
          .replace(/\.\d+Z$/, " UTC")
      : undefined;
  const facts: string[] = [];
  facts.push(`<span><b>profile</b> ${escapeHtml(opts.source)}</span>`);
  if (when) facts.push(`<span><b>taken</b> ${escapeHtml(when)}</span>`);
  if (data.binary) facts.push(`<span><b>binary</b> ${escapeHtml(data.binary)}</span>`);
  if (opts.base) facts.push(`<span><b>base</b> ${escapeHtml(opts.base.source)}</span>`);
  if (data.period > 0 && data.periodType)
    facts.push(`<span><b>sampling</b> every ${data.period.toLocaleString("en-US")} ${escapeHtml(data.periodType.unit)} allocated</span>`);

  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="${CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="oomprof report">
<title>${escapeHtml(`oomprof: ${title}`)}</title>
<script>
document.addEventListener("securitypolicyviolation", function () {
  var b = document.body, n = b ? Number(b.getAttribute("data-csp-violations") || "0") + 1 : 1;
  if (b) b.setAttribute("data-csp-violations", String(n));
});
</script>
<style>${STYLE}</style>
</head>
<body data-csp-violations="0">
<header>
  <h1><span class="brand">oomprof</span> ${escapeHtml(title)}</h1>
  <div class="facts">${facts.join("")}</div>
  ${commentsHtml(data.comments.filter((c) => !HEAP_AT.test(c) && !isMemoryComment(c)))}
  ${memoryHtml(parseMemoryComment(data.comments))}
</header>
<main>
  ${opts.base ? growthHtml(opts.base.growth) : ""}
  <section class="controls">
    <label>View <select id="sample-type"></select></label>
    <span class="spacer"></span>
    <input id="search" type="search" placeholder="Search frames (substring)" autocomplete="off" spellcheck="false">
    <button id="reset" type="button" disabled>Reset zoom</button>
  </section>
  <section class="graph">
    <div class="graph-head"><span><span id="total" class="total"></span> <span id="sample-desc" class="desc"></span></span><span id="match-info" class="match-info"></span></div>
    <div id="crumbs" class="crumbs"></div>
    <div id="detail" class="detail hint"></div>
    <div id="flame" class="flame" role="img" aria-label="Icicle graph of the heap profile"></div>
    <div class="legend"><span class="sw main"></span>main package <span class="sw std"></span>standard library <span class="sw mod"></span>other modules <span class="sw rt"></span>runtime <span class="sw inl"></span>inlined</div>
  </section>
  <noscript><p class="noscript">The graph and the table need JavaScript (inline only; this page loads nothing from anywhere).</p></noscript>
  <section class="table">
    <h2>Top functions</h2>
    <p class="note">Flat: samples whose innermost frame is the function. Cum: samples with the function anywhere on the stack. Click a header to sort, a row to highlight it in the graph. <span id="top-note"></span></p>
    <table>
      <thead id="top-head"><tr><th data-sort="flat" colspan="2" title="Sort by flat">Flat</th><th data-sort="cum" colspan="2" title="Sort by cum">Cum</th><th data-sort="name" class="fn" title="Sort by name">Function</th></tr></thead>
      <tbody id="top-body"></tbody>
    </table>
  </section>
</main>
<script type="application/json" id="profile-data">${scriptSafeJson(pageData(data))}</script>
<script>${CLIENT_SCRIPT}</script>
</body>
</html>
`;
}

/**
 * What grew since the base profile, by innermost function: the page's diff view, a static
 * table (what `go tool pprof -top -diff_base BASE PROFILE` lists first).
 */
function growthHtml(g: ProfileGrowth): string {
  const bytes = g.sampleType.unit === "bytes";
  const fmt = (v: number) => (bytes ? formatBytes(v) : v.toLocaleString("en-US"));
  const when = g.seconds !== null ? ` in the ${g.seconds.toFixed(1)} s before this profile` : " since the base profile";
  const rows = g.rows.slice(0, GROWTH_ROWS).map((r) => {
    const rate = g.seconds ? `${fmt(Math.round((r.later - r.base) / g.seconds))}/s` : "";
    const file = r.file ? `<span class="file">${escapeHtml(r.file)}</span>` : "";
    return `<tr><td class="num">+${escapeHtml(fmt(r.later - r.base))}</td><td class="num">${escapeHtml(rate)}</td><td class="num">${escapeHtml(fmt(r.base))}</td><td class="num">${escapeHtml(fmt(r.later))}</td><td class="fn">${escapeHtml(r.name)}${file}</td></tr>`;
  });
  const body = rows.length ? rows.join("") : `<tr><td class="empty" colspan="5">nothing grew</td></tr>`;
  return `<section class="table growth" id="growth">
    <h2>Grew fastest${escapeHtml(when)}</h2>
    <p class="note">${escapeHtml(g.sampleType.type)} by innermost function, against the base profile.</p>
    <table><thead><tr><th>Grew</th><th>Per second</th><th>At base</th><th>Now</th><th class="fn">Function</th></tr></thead><tbody>${body}</tbody></table>
  </section>`;
}

/** The profile's comments as "key: value" rows; a partial capture stands out. */
function commentsHtml(comments: string[]): string {
  if (comments.length === 0) return "";
  const rows = comments.map((c) => {
    const m = /^([A-Za-z_][\w .-]{0,20}): (.*)$/s.exec(c);
    const key = m ? m[1]! : "";
    const value = m ? m[2]! : c;
    const cls = /\bPARTIAL\b/.test(value) ? ' class="bad"' : key === "capture" && /\bcomplete\b/.test(value) ? ' class="good"' : "";
    return `<tr${cls}><th>${escapeHtml(key)}</th><td>${escapeHtml(value)}</td></tr>`;
  });
  return `<table class="comments">${rows.join("")}</table>`;
}

/** The parts of RSS, in the order the bar shows them, with their colour class. */
const MEMORY_PARTS = [
  ["heap_inuse_bytes", "Go heap", "HeapInuse: spans holding heap objects (live, or garbage not yet swept)"],
  ["stacks_bytes", "goroutine stacks", "StackSys"],
  [
    "runtime_other_bytes",
    "Go runtime",
    "free heap pages not yet returned to the OS, and the runtime's own structures (MSpanSys, MCacheSys, BuckHashSys, GCSys, OtherSys)",
  ],
  ["not_go_bytes", "outside Go", "RSS less all the runtime mapped: cgo, syscall.Mmap, mapped files, the binary's pages (at least this much)"],
] as const;

/** Where the memory went: a bar of RSS split into the runtime's parts, and a row per part. */
function memoryHtml(m: MemoryComment | undefined): string {
  if (!m || m.heap_inuse_bytes === null || m.stacks_bytes === null || m.runtime_other_bytes === null) return "";
  const parts = MEMORY_PARTS.map(([key, name, what], i) => ({ name, what, bytes: m[key], cls: `m${i}` })).filter((p) => p.bytes !== null);
  const whole = Math.max(
    m.rss_bytes ?? 0,
    parts.reduce((sum, p) => sum + Math.max(0, p.bytes!), 0),
  );
  const bar = parts
    .filter((p) => p.bytes! > 0)
    .map(
      (p) =>
        `<span class="${p.cls}" style="width:${((100 * p.bytes!) / whole).toFixed(2)}%" title="${escapeHtml(`${p.name} ${formatBytes(p.bytes!)}`)}"></span>`,
    )
    .join("");
  const rows = parts.map((p) => {
    const share = m.rss_bytes ? formatPercent(p.bytes! / m.rss_bytes) : "";
    const name = p.bytes! < 0 ? "mapped by Go but not resident" : p.name;
    const bytes = formatBytes(Math.abs(p.bytes!));
    return `<tr><th><span class="sw ${p.cls}"></span>${escapeHtml(name)}</th><td>${escapeHtml(bytes)}</td><td>${escapeHtml(share)}</td><td class="what">${escapeHtml(p.what)}</td></tr>`;
  });
  const rss = m.rss_bytes === null ? "RSS unknown" : `RSS ${formatBytes(m.rss_bytes)}`;
  return `<section class="memory" id="memory"><h2>Where the memory went <span class="desc">${escapeHtml(rss)}, as the Go runtime accounts for it</span></h2><div class="membar">${bar}</div><table>${rows.join("")}</table></section>`;
}

const STYLE = `
:root {
  --fg: #1d232b; --muted: #5f6b7a; --line: #e3e7ec; --bg: #ffffff; --panel: #f6f8fa;
  --accent: #c2410c; --good: #15803d; --bad: #b91c1c; --match: #d946ef;
  --mono: ui-monospace, "SFMono-Regular", "DejaVu Sans Mono", Menlo, Consolas, monospace;
}
* { box-sizing: border-box; }
html, body { margin: 0; background: var(--bg); color: var(--fg); }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
header { padding: 18px 24px 14px; background: var(--panel); border-bottom: 1px solid var(--line); }
h1 { margin: 0 0 6px; font-size: 20px; font-weight: 600; }
h1 .brand { color: var(--accent); font-weight: 700; margin-right: 6px; }
h2 { font-size: 16px; margin: 0 0 4px; }
.facts { display: flex; flex-wrap: wrap; gap: 4px 20px; color: var(--muted); font-size: 13px; }
.facts b { color: var(--fg); font-weight: 600; margin-right: 4px; }
.facts span { overflow-wrap: anywhere; }
section.memory { margin-top: 12px; }
section.memory h2 { font-size: 14px; margin: 0 0 6px; }
section.memory h2 .desc { color: var(--muted); font-weight: 400; }
.membar { display: flex; height: 14px; border: 1px solid var(--line); border-radius: 3px; overflow: hidden; max-width: 720px; background: var(--panel); }
.membar span { display: block; height: 100%; }
section.memory table { border-collapse: collapse; font-size: 13px; margin-top: 6px; }
section.memory th { text-align: left; font-weight: 600; padding: 1px 12px 1px 0; white-space: nowrap; }
section.memory td { padding: 1px 12px 1px 0; font-family: var(--mono); font-size: 12.5px; white-space: nowrap; }
section.memory td.what { font-family: inherit; color: var(--muted); white-space: normal; }
section.memory .sw { display: inline-block; width: 10px; height: 10px; margin-right: 6px; border-radius: 2px; }
.m0 { background: #c2410c; } .m1 { background: #2563eb; } .m2 { background: #7c3aed; } .m3 { background: #64748b; }
table.comments { margin-top: 10px; border-collapse: collapse; font-size: 13px; }
table.comments th { text-align: left; color: var(--muted); font-weight: 600; padding: 1px 12px 1px 0; vertical-align: top; white-space: nowrap; }
table.comments td { font-family: var(--mono); font-size: 12.5px; padding: 1px 0; overflow-wrap: anywhere; }
table.comments tr.good td { color: var(--good); }
table.comments tr.bad td { color: var(--bad); font-weight: 600; }
main { padding: 14px 24px 40px; }
.controls { display: flex; flex-wrap: wrap; align-items: center; gap: 8px 12px; margin-bottom: 10px; }
.controls label { font-weight: 600; }
.controls select, .controls input, .controls button { font: inherit; padding: 4px 8px; border: 1px solid #c9d1da; border-radius: 6px; background: #fff; color: var(--fg); }
.controls select { margin-left: 6px; }
.controls input { width: 260px; }
.controls button { cursor: pointer; }
.controls button:disabled { color: #a0a8b3; cursor: default; }
.desc { color: var(--muted); font-size: 13px; margin-left: 6px; }
.spacer { flex: 1; }
.graph-head { display: flex; justify-content: space-between; gap: 12px; font-size: 13px; }
.total { font-weight: 600; }
.match-info { color: #a21caf; font-weight: 600; }
.crumbs { font-size: 12.5px; color: var(--muted); font-family: var(--mono); min-height: 0; overflow-wrap: anywhere; }
.detail { font-family: var(--mono); font-size: 12.5px; padding: 5px 8px; margin: 4px 0 6px; background: var(--panel); border: 1px solid var(--line); border-radius: 6px; min-height: 29px; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.detail.hint { font-family: inherit; color: var(--muted); }
.flame { position: relative; width: 100%; overflow: hidden; font-family: var(--mono); font-size: 12px; user-select: none; }
.fr { position: absolute; height: 18px; line-height: 18px; padding: 0 4px; overflow: hidden; white-space: nowrap; text-overflow: ellipsis; color: #1b1f24; border-right: 1px solid rgba(255,255,255,.9); border-bottom: 1px solid rgba(255,255,255,.9); cursor: pointer; border-radius: 2px; }
.fr:hover { filter: brightness(.9); outline: 1px solid rgba(0,0,0,.35); outline-offset: -1px; }
.fr.anc { opacity: .55; }
.fr.inl { font-style: italic; box-shadow: inset 0 -2px 0 rgba(0,0,0,.18); }
.fr.dim { opacity: .28; }
.fr.match { background: var(--match) !important; color: #fff; opacity: 1; }
.legend { margin-top: 8px; font-size: 12px; color: var(--muted); display: flex; flex-wrap: wrap; align-items: center; gap: 4px; }
.legend .sw { display: inline-block; width: 11px; height: 11px; border-radius: 2px; margin: 0 3px 0 10px; }
.legend .sw:first-child { margin-left: 0; }
.sw.main { background: hsl(18, 82%, 66%); } .sw.std { background: hsl(46, 70%, 70%); } .sw.mod { background: hsl(115, 42%, 70%); }
.sw.rt { background: hsl(208, 48%, 78%); } .sw.inl { background: #ddd; box-shadow: inset 0 -2px 0 rgba(0,0,0,.25); }
section.table { margin-top: 26px; }
section.table.growth { margin: 0 0 22px; }
section.growth th, section.growth tbody tr { cursor: default; }
.note { color: var(--muted); font-size: 13px; margin: 0 0 8px; }
section.table table { border-collapse: collapse; width: 100%; font-size: 13px; }
section.table th { text-align: right; font-weight: 600; padding: 6px 10px; border-bottom: 2px solid var(--line); cursor: pointer; white-space: nowrap; position: sticky; top: 0; background: var(--bg); }
section.table th.fn { text-align: left; }
section.table th[colspan] { text-align: center; }
section.table th.sorted { color: var(--accent); }
section.table th.sorted.desc::after { content: " \\25BE"; }
section.table th.sorted.asc::after { content: " \\25B4"; }
section.table td { padding: 3px 10px; border-bottom: 1px solid var(--line); }
section.table td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; width: 1%; }
section.table td.bar { background: linear-gradient(90deg, rgba(234, 88, 12, .22) var(--w), transparent var(--w)); }
section.table td.bar.cum { background: linear-gradient(90deg, rgba(37, 99, 235, .16) var(--w), transparent var(--w)); }
section.table td.fn { font-family: var(--mono); font-size: 12.5px; overflow-wrap: anywhere; }
section.table td.fn .file { color: var(--muted); margin-left: 10px; font-size: 11.5px; }
section.table tbody tr { cursor: pointer; }
section.table tbody tr:hover { background: var(--panel); }
section.table tbody tr.hit td.fn { color: #a21caf; font-weight: 600; }
td.empty { color: var(--muted); text-align: center; padding: 16px; }
.noscript { color: var(--bad); }
`;
