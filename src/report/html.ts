import { CLIENT_SCRIPT } from "./client-script.ts";
import type { FlameData, FlameNode } from "./flame-data.ts";

/**
 * The report as one self-contained HTML page: styles and script inline, the data as
 * JSON in a non-executing script element, and a Content-Security-Policy that forbids
 * the page from loading anything at all (no network, no files), so it stays safe to
 * open from an incident ticket or a mail attachment.
 */

export interface ReportPageOptions {
  /** Where the profile came from, shown in the header. */
  source: string;
}

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

const CSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'";

export function renderReportHtml(data: FlameData, opts: ReportPageOptions): string {
  const victim = data.comments.map((c) => /^oomprof: heap at (.+)$/.exec(c)?.[1]).find((v) => v !== undefined);
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
  ${commentsHtml(data.comments)}
</header>
<main>
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
