import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { KillEvent } from "../../src/output/events.ts";
import { buildGoProgram } from "../helpers/go.ts";
import { runOomprof, tempDir } from "../helpers/oomprof.ts";

// A real OOM kill, then a real browser: seconds each.
setDefaultTimeout(180_000);

/** Chromium from the distribution (scripts/setup installs it); installed here if missing. */
function chromium(): string {
  let path = Bun.which("chromium");
  if (!path && process.getuid?.() === 0) {
    Bun.spawnSync(["apt-get", "install", "-y", "chromium"], { env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" }, stdout: "ignore", stderr: "ignore" });
    path = Bun.which("chromium");
  }
  if (!path) throw new Error("chromium is not installed: run scripts/setup (apt-get install -y chromium)");
  return path;
}

/**
 * Headless Chromium with a fresh profile and everything that phones home switched off,
 * so any request it makes could only have come from the page.
 */
async function runChromium(args: string[], url: string): Promise<{ status: number; stdout: string; stderr: string }> {
  const profileDir = mkdtempSync(join(tmpdir(), "oomprof-chromium-"));
  try {
    const p = Bun.spawn(
      [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        `--user-data-dir=${profileDir}`,
        "--virtual-time-budget=5000",
        ...args,
        url,
      ],
      { stdout: "pipe", stderr: "pipe", stdin: "ignore" },
    );
    const timer = setTimeout(() => p.kill("SIGKILL"), 90_000);
    const [stdout, stderr, status] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
    clearTimeout(timer);
    return { status, stdout, stderr };
  } finally {
    rmSync(profileDir, { recursive: true, force: true });
  }
}

/** Anything in the markup that could make a browser fetch something. */
function externalReferences(html: string): string[] {
  return [...html.matchAll(/https?:\/\/|\bsrc\s*=|\bhref\s*=|@import|url\(|<link\b|<iframe\b|<img\b|<object\b|<embed\b/gi)].map((m) => m[0]);
}

/** A copy of the page with one more inline script appended to the body. */
function withScript(html: string, script: string): string {
  const i = html.lastIndexOf("</body>");
  return `${html.slice(0, i)}<script>${script}</script>\n${html.slice(i)}`;
}

/**
 * Drives the page the way a person would (search, click to zoom, zoom out, switch the
 * view, sort the table) and writes what it saw into body[data-probe] as JSON.
 */
const INTERACTION = `
(function () {
  var out = {};
  function frames() { return Array.prototype.slice.call(document.querySelectorAll("#flame .fr")); }
  function frame(name) { return frames().filter(function (f) { return f.textContent === name; })[0]; }
  var q = document.getElementById("search");
  q.value = "LEAKSTEP";
  q.dispatchEvent(new Event("input"));
  out.matchNames = frames().filter(function (f) { return f.classList.contains("match"); }).map(function (f) { return f.textContent; });
  out.matchInfo = document.getElementById("match-info").textContent;
  q.value = "";
  q.dispatchEvent(new Event("input"));
  out.churnBeforeZoom = !!frame("main.churnStep");
  out.leakWidthBefore = frame("main.leakStep").style.width;
  frame("main.leakStep").click();
  out.leakWidthZoomed = frame("main.leakStep").style.width;
  out.churnWhileZoomed = !!frame("main.churnStep");
  out.crumbs = document.getElementById("crumbs").textContent;
  out.resetEnabled = !document.getElementById("reset").disabled;
  frame("total").click();
  out.leakWidthAfterZoomOut = frame("main.leakStep").style.width;
  var sel = document.getElementById("sample-type");
  out.options = Array.prototype.map.call(sel.options, function (o) { return o.textContent; });
  out.selected = sel.options[sel.selectedIndex].textContent;
  out.totalBefore = document.getElementById("total").textContent;
  for (var i = 0; i < sel.options.length; i++) if (sel.options[i].textContent.indexOf("gc_live_space") === 0) sel.value = sel.options[i].value;
  sel.dispatchEvent(new Event("change"));
  out.totalAfter = document.getElementById("total").textContent;
  out.leakAfterSwitch = !!frame("main.leakStep");
  document.querySelector('th[data-sort="name"]').click();
  var names = Array.prototype.map.call(document.querySelectorAll("#top-body td.fn"), function (td) { return td.firstChild.textContent; });
  out.sortedByName = names.join("\\n") === names.slice().sort().join("\\n");
  document.body.setAttribute("data-probe", JSON.stringify(out));
})();
`;

describe("oomprof report on a real OOM-kill profile, opened in headless Chromium", () => {
  let dir: string;
  let kill: KillEvent;
  let reportPath: string;
  let html: string;
  let dom: string;
  let screenshot: string;

  beforeAll(async () => {
    const leaker = await buildGoProgram("leaker");
    dir = tempDir("oomprof-report-e2e-");
    // Every allocation sampled, so churn's live buffer is always in the default (in-use)
    // view and its inlined frame is drawn; sampled at the default rate, all of churn's
    // sampled garbage can be swept by the kill (seen once with Go 1.27.4).
    const run = await runOomprof(["run", "--limit", "96M", "--out", dir, "--events", "-", "--", leaker], { env: { GODEBUG: "memprofilerate=1" } });
    const k = run.events.find((e) => e.event === "oom_kill");
    if (!k) throw new Error(`no oom_kill event; status ${run.status}; stderr:\n${run.stderr}`);
    kill = KillEvent.parse(k);
    if (!kill.profile) throw new Error(`no profile: ${kill.reason}`);

    reportPath = join(dir, "report.html");
    const r = await runOomprof(["report", kill.profile, "-o", reportPath]);
    if (r.status !== 0) throw new Error(`oomprof report failed (${r.status}): ${r.stderr}`);
    html = readFileSync(reportPath, "utf8");

    const d = await runChromium(["--dump-dom"], `file://${reportPath}`);
    if (d.status !== 0) throw new Error(`chromium --dump-dom failed (${d.status}): ${d.stderr.slice(-2000)}`);
    dom = d.stdout;

    screenshot = join(dir, "report.png");
    const s = await runChromium([`--screenshot=${screenshot}`, "--window-size=1280,900", "--hide-scrollbars"], `file://${reportPath}`);
    if (s.status !== 0) throw new Error(`chromium --screenshot failed (${s.status}): ${s.stderr.slice(-2000)}`);
  });

  test("without -o the report goes next to the profile, as FILE.html", async () => {
    const r = await runOomprof(["report", kill.profile!]);
    expect(r.status).toBe(0);
    const html = kill.profile!.replace(/\.pb\.gz$/, ".html");
    expect(existsSync(html)).toBe(true);
    expect(statSync(html).size).toBeGreaterThan(10_000);
  });

  test("the file is self-contained: no reference to anything outside it", () => {
    expect(externalReferences(html)).toEqual([]);
  });

  test("the page rendered: the leak is a frame of the graph and a row of the table", () => {
    expect(dom).toContain('data-rendered="1"');
    // A drawn frame (a div of the graph), not just the embedded JSON.
    expect(dom).toMatch(/<div class="fr[^"]*" data-id="\d+" title="main\.leakStep" style="[^"]*">main\.leakStep<\/div>/);
    expect(dom).toMatch(/<td class="fn">main\.leakStep<span class="file">[^<]*main\.go<\/span><\/td>/);
    // scratch is inlined into churnStep in the leaker: its frame is marked as inlined.
    // (Its label may be cut short: churn's share of the heap at death varies from run to run.)
    expect(dom).toMatch(/<div class="fr inl" data-id="\d+" title="main\.scratch" style="[^"]*">[^<]+<\/div>/);
    // The header: the victim (as its title), then the profile's other comments: its Go version, completeness.
    expect(dom).toContain(`Heap at OOM kill of pid ${kill.pid} (leaker)`);
    // Once: the title, not again among the comments.
    expect(dom.split(`OOM kill of pid ${kill.pid} (leaker)`).length - 1).toBe(2); // <title> and <h1>
    // No goexit row: runtime/pprof drops it, and so does oomprof.
    expect(dom).not.toContain(">runtime.goexit<");
    expect(dom).toContain("<th>go</th><td>go1.");
    expect(dom).toMatch(/<th>capture<\/th><td>\d+ buckets, complete<\/td>/);
  });

  test("nothing was loaded: no resource entries, no blocked attempts", () => {
    expect(dom).toContain('data-resources="0"');
    expect(dom).toContain('data-csp-violations="0"');
  });

  /**
   * Resource timing covers http(s) loads only, so the page is also served from a local
   * HTTP server that logs every request: a page that loaded anything, from anywhere,
   * would show it in performance.getEntriesByType("resource") (and, for this host, in
   * the log). Controls with an injected image prove both detectors see a load.
   */
  describe("served over HTTP, with a request log", () => {
    let server: ReturnType<typeof Bun.serve>;
    const requests: string[] = [];
    const pages = new Map<string, string>();
    const attr = "sr" + "c"; // keeps the attribute name out of this file's searchable text
    let base: string;

    beforeAll(() => {
      server = Bun.serve({
        hostname: "127.0.0.1",
        port: 0,
        fetch(req) {
          const path = new URL(req.url).pathname;
          requests.push(path);
          const page = pages.get(path);
          if (page !== undefined) return new Response(page, { headers: { "content-type": "text/html; charset=utf-8" } });
          if (path.endsWith(".png")) return new Response(readFileSync(screenshot), { headers: { "content-type": "image/png" } });
          return new Response("not found", { status: 404 });
        },
      });
      base = `http://127.0.0.1:${server.port}`;
      pages.set("/report.html", html);
      // Control A: the CSP removed and an image from this server added.
      pages.set(
        "/no-csp.html",
        html.replace(/<meta http-equiv="Content-Security-Policy"[^>]*>/, "").replace("</header>", `<img ${attr}="${base}/pixel-a.png" alt=""></header>`),
      );
      // Control B: the page as written (CSP in place) with the same kind of image added.
      pages.set("/with-csp.html", html.replace("</header>", `<img ${attr}="${base}/pixel-b.png" alt=""></header>`));
    });

    afterAll(() => {
      server.stop(true);
    });

    const seen = (path: string) => requests.filter((r) => r === path).length;

    test("the report loads nothing: 0 resource entries, 0 blocked attempts, only itself requested", async () => {
      const before = requests.length;
      const d = await runChromium(["--dump-dom"], `${base}/report.html`);
      expect(d.status).toBe(0);
      expect(d.stdout).toContain('data-rendered="1"');
      expect(d.stdout).toContain('data-resources="0"');
      expect(d.stdout).toContain('data-csp-violations="0"');
      // The browser itself may ask for a favicon; nothing else may be requested.
      expect(requests.slice(before).filter((r) => r !== "/favicon.ico")).toEqual(["/report.html"]);
    });

    test("control A: without the CSP an injected image is loaded and counted", async () => {
      const d = await runChromium(["--dump-dom"], `${base}/no-csp.html`);
      expect(d.status).toBe(0);
      expect(d.stdout).toContain('data-rendered="1"');
      expect(d.stdout).toContain('data-resources="1"');
      expect(seen("/pixel-a.png")).toBe(1);
    });

    test("control B: with the CSP the same image is blocked, counted as a violation, never requested", async () => {
      const d = await runChromium(["--dump-dom"], `${base}/with-csp.html`);
      expect(d.status).toBe(0);
      expect(d.stdout).toContain('data-rendered="1"');
      expect(d.stdout).toMatch(/data-csp-violations="[1-9]/);
      expect(seen("/pixel-b.png")).toBe(0);
    });
  });

  test("search, click-to-zoom, zoom out, view switch and table sort work", async () => {
    const probe = join(dir, "probe.html");
    writeFileSync(probe, withScript(html, INTERACTION));
    const d = await runChromium(["--dump-dom"], `file://${probe}`);
    expect(d.status).toBe(0);
    const m = /data-probe="([^"]*)"/.exec(d.stdout);
    expect(m).not.toBeNull();
    const out = JSON.parse(m![1]!.replace(/&quot;/g, '"').replace(/&amp;/g, "&"));
    expect(out.matchNames).toEqual(["main.leakStep"]);
    expect(out.matchInfo).toMatch(/^1 frame matches: [\d.]+ MiB \([\d.]+% of total\)$/);
    expect(out.leakWidthBefore).not.toBe("100%");
    expect(out.leakWidthZoomed).toBe("100%");
    expect(out.churnWhileZoomed).toBe(false);
    expect(out.crumbs).toContain("main.leakStep");
    expect(out.resetEnabled).toBe(true);
    expect(out.leakWidthAfterZoomOut).toBe(out.leakWidthBefore);
    expect(out.options.map((o: string) => o.split(" ")[0])).toEqual([
      "inuse_objects",
      "inuse_space",
      "gc_live_objects",
      "gc_live_space",
      "since_gc_objects",
      "since_gc_space",
      "alloc_objects",
      "alloc_space",
    ]);
    expect(out.selected).toBe("inuse_space (bytes)");
    expect(out.totalBefore).toMatch(/^Total inuse_space: /);
    expect(out.totalAfter).toMatch(/^Total gc_live_space: /);
    expect(out.leakAfterSwitch).toBe(true);
    expect(out.sortedByName).toBe(true);
  });

  test("the screenshot is a real rendering", () => {
    expect(existsSync(screenshot)).toBe(true);
    const png = readFileSync(screenshot);
    expect([...png.subarray(0, 8)]).toEqual([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    expect(png.length).toBeGreaterThan(10 * 1024);
    // IHDR: 1280 wide.
    expect(png.readUInt32BE(16)).toBe(1280);
  });
});

describe("oomprof report on a program with long import paths, in a narrow window", () => {
  const ENGINE = "github.com/example-organization/a-rather-long-repository-name/internal/storage/engine";
  let dom: string;

  beforeAll(async () => {
    const longpaths = await buildGoProgram("longpaths");
    const dir = tempDir("oomprof-report-long-");
    const run = await runOomprof(["run", "--limit", "96M", "--out", dir, "--events", "-", "--", longpaths]);
    const k = run.events.find((e) => e.event === "oom_kill");
    if (k?.event !== "oom_kill" || !k.profile) throw new Error(`no profile; status ${run.status}; stderr:\n${run.stderr}`);
    const reportPath = join(dir, "report.html");
    const r = await runOomprof(["report", k.profile, "-o", reportPath]);
    if (r.status !== 0) throw new Error(`oomprof report failed (${r.status}): ${r.stderr}`);
    // 640 px: the leak's frame, the whole width, holds about 80 characters of its 103.
    const d = await runChromium(["--dump-dom", "--window-size=640,900"], `file://${reportPath}`);
    if (d.status !== 0) throw new Error(`chromium --dump-dom failed (${d.status}): ${d.stderr.slice(-2000)}`);
    dom = d.stdout;
  });

  test("labels are cut from the left: the import path goes, the function's own name stays", () => {
    const label = new RegExp(`title="${ENGINE.replace(/[./()*]/g, "\\$&")}\\.\\(\\*Store\\)\\.Append" style="[^"]*">([^<]*)</div>`).exec(dom)?.[1];
    expect(label).toBe("engine.(*Store).Append");
    // Nothing is cut at its end into an unreadable prefix.
    expect(dom).not.toMatch(/>github\.com\/[^<]{0,40}…</);
  });
});
