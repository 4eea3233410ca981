/**
 * The report page's script, inlined into the HTML. Plain ES2017 for any browser, no
 * libraries. It reads the JSON that html.ts embeds (#profile-data) and draws:
 *
 * - an icicle graph (root on top) of the chosen sample type from absolutely positioned
 *   divs, so frame names are ordinary DOM text; click a frame to zoom into it, click an
 *   ancestor row (or press Escape) to zoom out;
 * - a search box that highlights matching frames and sums what they hold;
 * - a per-function table (flat and cumulative), sortable by clicking its headers.
 *
 * Written as a string (not a template with substitutions): it must not contain
 * backquotes or dollar-brace sequences.
 */
export const CLIENT_SCRIPT = String.raw`
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("profile-data").textContent);
  var ROW = 19;
  var MAX_TOP_ROWS = 300;
  var DESCRIPTIONS = {
    inuse_space: "bytes not known to be freed at death (includes garbage no GC has collected yet)",
    inuse_objects: "objects not known to be freed at death (includes garbage no GC has collected yet)",
    gc_live_space: "bytes live at the last completed GC (what runtime/pprof would report)",
    gc_live_objects: "objects live at the last completed GC (what runtime/pprof would report)",
    since_gc_space: "bytes allocated since the last GC and not yet collected",
    since_gc_objects: "objects allocated since the last GC and not yet collected",
    alloc_space: "bytes allocated over the process's whole life (sampled)",
    alloc_objects: "objects allocated over the process's whole life (sampled)"
  };

  function $(id) { return document.getElementById(id); }
  var els = {
    flame: $("flame"), select: $("sample-type"), desc: $("sample-desc"), search: $("search"),
    reset: $("reset"), detail: $("detail"), total: $("total"), matchInfo: $("match-info"),
    tbody: $("top-body"), thead: $("top-head"), topNote: $("top-note"), crumbs: $("crumbs")
  };

  // Nodes arrive as [nameIndex, fileIndex, inlined, totals[], children[]].
  var nodes = [];
  function build(a, parent, depth) {
    var node = { id: nodes.length, name: D.names[a[0]], file: D.files[a[1]], inl: a[2] === 1, v: a[3], kids: [], parent: parent, depth: depth };
    nodes.push(node);
    for (var i = 0; i < a[4].length; i++) node.kids.push(build(a[4][i], node, depth + 1));
    return node;
  }
  var root = build(D.root, null, 0);
  var top = D.top.map(function (e) { return { name: D.names[e[0]], file: D.files[e[1]], flat: e[2], cum: e[3] }; });

  var st = { t: D.defaultIndex, focus: root, query: "", sortKey: "flat", sortDesc: true };

  function unit() { return D.sampleTypes[st.t].unit; }
  function fmt(v) {
    if (unit() === "bytes") {
      var u = ["B", "KiB", "MiB", "GiB", "TiB"], i = 0, x = v;
      while (Math.abs(x) >= 1024 && i < u.length - 1) { x /= 1024; i++; }
      return i === 0 ? Math.round(x) + " B" : x.toFixed(x >= 100 ? 0 : 1) + " " + u[i];
    }
    return String(Math.round(v)).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  }
  function pct(v, total) { return total > 0 ? (100 * v / total).toFixed(1) + "%" : "-"; }
  function selfOf(node) {
    var s = node.v[st.t];
    for (var i = 0; i < node.kids.length; i++) s -= node.kids[i].v[st.t];
    return s;
  }

  function hash(s) {
    var h = 2166136261;
    for (var i = 0; i < s.length; i++) { h ^= s.charCodeAt(i); h = Math.imul(h, 16777619); }
    return h >>> 0;
  }
  // Hue by kind of code: the program's own (main) warm, runtime cool, the standard
  // library sand, other modules green; lightness varies a little per name.
  function color(node) {
    if (node === root) return "hsl(220, 12%, 80%)";
    var n = node.name, h = hash(n), j = (h % 997) / 997, k = ((h >>> 12) % 991) / 991;
    if (/^0x[0-9a-f]+$/.test(n)) return "hsl(0, 0%, " + (74 + 8 * k).toFixed(1) + "%)";
    if (/^(runtime|internal)[./]/.test(n)) return "hsl(" + (198 + 22 * j).toFixed(1) + ", 48%, " + (74 + 8 * k).toFixed(1) + "%)";
    if (/^main\./.test(n)) return "hsl(" + (6 + 26 * j).toFixed(1) + ", 82%, " + (63 + 9 * k).toFixed(1) + "%)";
    var slash = n.indexOf("/");
    if (slash > 0 && n.slice(0, slash).indexOf(".") >= 0) return "hsl(" + (95 + 40 * j).toFixed(1) + ", 42%, " + (66 + 10 * k).toFixed(1) + "%)";
    return "hsl(" + (38 + 16 * j).toFixed(1) + ", 70%, " + (66 + 10 * k).toFixed(1) + "%)";
  }

  function matches(node) { return st.query !== "" && node !== root && node.name.toLowerCase().indexOf(st.query) >= 0; }
  function sortedKids(node) {
    var t = st.t;
    return node.kids.filter(function (k) { return k.v[t] > 0; }).sort(function (a, b) { return b.v[t] - a.v[t] || (a.name < b.name ? -1 : 1); });
  }

  function renderFlame() {
    var t = st.t, focus = st.focus, fv = focus.v[t];
    var width = els.flame.clientWidth || 1000;
    var html = [];
    var maxDepth = 0;
    function place(node, left, w, depth, ancestor) {
      var cls = "fr";
      if (ancestor) cls += " anc";
      if (node.inl) cls += " inl";
      if (st.query) cls += matches(node) ? " match" : " dim";
      var label = esc(fitLabel(node.name, Math.floor((w * width / 100 - 8) / CHAR_PX)));
      html.push('<div class="' + cls + '" data-id="' + node.id + '" title="' + esc(node.name) + '" style="left:' + left.toFixed(4) + "%;width:" + w.toFixed(4) + "%;top:" + depth * ROW + "px;background:" + color(node) + '">' + label + "</div>");
      if (depth > maxDepth) maxDepth = depth;
    }
    var chain = [];
    for (var a = focus; a; a = a.parent) chain.unshift(a);
    for (var i = 0; i < chain.length; i++) place(chain[i], 0, 100, i, i < chain.length - 1);
    var minPct = 100 * 0.6 / width;
    function walk(node, left, depth) {
      var kids = sortedKids(node), x = left;
      for (var i = 0; i < kids.length; i++) {
        var w = fv > 0 ? 100 * kids[i].v[t] / fv : 0;
        if (w >= minPct) { place(kids[i], x, w, depth, false); walk(kids[i], x, depth + 1); }
        x += w;
      }
    }
    if (fv > 0) walk(focus, 0, chain.length);
    els.flame.innerHTML = html.join("");
    els.flame.style.height = (maxDepth + 1) * ROW + "px";
    els.reset.disabled = focus === root;
    renderCrumbs(chain);
  }

  function renderCrumbs(chain) {
    if (chain.length <= 1) { els.crumbs.textContent = ""; return; }
    els.crumbs.textContent = "Zoomed into: " + chain.slice(1).map(function (n) { return n.name; }).join(" \u203a ");
  }

  function renderMatchInfo() {
    if (!st.query) { els.matchInfo.textContent = ""; return; }
    var t = st.t, count = 0, sum = 0;
    (function visit(node) {
      if (!(node.v[t] > 0)) return;
      if (matches(node)) { sum += node.v[t]; count++; countBelow(node); return; }
      for (var i = 0; i < node.kids.length; i++) visit(node.kids[i]);
    })(st.focus);
    function countBelow(node) {
      for (var i = 0; i < node.kids.length; i++) { if (matches(node.kids[i]) && node.kids[i].v[t] > 0) count++; countBelow(node.kids[i]); }
    }
    els.matchInfo.textContent = count === 0 ? "no frame matches" : count + (count === 1 ? " frame matches: " : " frames match: ") + fmt(sum) + " (" + pct(sum, st.focus.v[t]) + (st.focus === root ? " of total)" : " of the zoomed frame)");
  }

  function renderTop() {
    var t = st.t, total = root.v[t], key = st.sortKey, dir = st.sortDesc ? -1 : 1;
    var rows = top.filter(function (e) { return e.flat[t] > 0 || e.cum[t] > 0; });
    rows.sort(function (a, b) {
      var c = key === "name" ? (a.name < b.name ? -1 : a.name > b.name ? 1 : 0) : a[key][t] - b[key][t];
      return dir * c || b.flat[t] - a.flat[t] || (a.name < b.name ? -1 : 1);
    });
    var shown = rows.slice(0, MAX_TOP_ROWS), html = [];
    for (var i = 0; i < shown.length; i++) {
      var e = shown[i], fp = total > 0 ? 100 * e.flat[t] / total : 0, cp = total > 0 ? 100 * e.cum[t] / total : 0;
      var hit = st.query && e.name.toLowerCase().indexOf(st.query) >= 0;
      html.push('<tr data-name="' + esc(e.name) + '"' + (hit ? ' class="hit"' : "") + ">" +
        '<td class="num">' + fmt(e.flat[t]) + "</td>" +
        '<td class="num bar" style="--w:' + fp.toFixed(2) + '%">' + fp.toFixed(1) + "%</td>" +
        '<td class="num">' + fmt(e.cum[t]) + "</td>" +
        '<td class="num bar cum" style="--w:' + cp.toFixed(2) + '%">' + cp.toFixed(1) + "%</td>" +
        '<td class="fn">' + esc(e.name) + (e.file ? '<span class="file">' + esc(e.file) + "</span>" : "") + "</td></tr>");
    }
    els.tbody.innerHTML = html.join("") || '<tr><td colspan="5" class="empty">No samples in this view.</td></tr>';
    els.topNote.textContent = rows.length > MAX_TOP_ROWS ? "Showing the first " + MAX_TOP_ROWS + " of " + rows.length + " functions." : rows.length + (rows.length === 1 ? " function." : " functions.");
    var ths = els.thead.querySelectorAll("th[data-sort]");
    for (var j = 0; j < ths.length; j++) {
      var s = ths[j].getAttribute("data-sort");
      ths[j].classList.toggle("sorted", s === key);
      ths[j].classList.toggle("desc", s === key && st.sortDesc);
      ths[j].classList.toggle("asc", s === key && !st.sortDesc);
    }
  }

  function renderSummary() {
    var st0 = D.sampleTypes[st.t];
    els.total.textContent = "Total " + st0.type + ": " + fmt(root.v[st.t]);
    els.desc.textContent = DESCRIPTIONS[st0.type] ? "\u2014 " + DESCRIPTIONS[st0.type] : "";
  }

  function renderAll() {
    renderSummary();
    renderFlame();
    renderMatchInfo();
    renderTop();
    setDetail(null);
  }

  function setDetail(node) {
    if (!node) { els.detail.textContent = "Hover over a frame for details. Click a frame to zoom in; click a full-width row above it, or press Escape, to zoom out."; els.detail.className = "detail hint"; return; }
    var t = st.t, v = node.v[t], parts = [];
    parts.push(fmt(v) + " (" + pct(v, root.v[t]) + " of total" + (st.focus !== root && node.depth > st.focus.depth ? ", " + pct(v, st.focus.v[t]) + " of zoom" : "") + ")");
    parts.push("self " + fmt(selfOf(node)));
    if (node.file) parts.push(node.file);
    els.detail.textContent = "";
    var b = document.createElement("b");
    b.textContent = node.name + (node.inl ? " (inlined)" : "");
    els.detail.appendChild(b);
    els.detail.appendChild(document.createTextNode("  " + parts.join("  \u00b7  ")));
    els.detail.className = "detail";
  }

  // Frame labels are cut from the left: the import path goes first, then the front of
  // what is left, so the function's own name stays readable ("…(*Head).Append").
  var CHAR_PX = 7.3;
  function fitLabel(name, chars) {
    if (chars < 4) return "";
    if (name.length <= chars) return name;
    var paren = name.indexOf("(");
    var slash = name.lastIndexOf("/", paren >= 0 ? paren : name.length);
    var short = slash >= 0 ? name.slice(slash + 1) : name;
    if (short.length <= chars) return short;
    return "\u2026" + short.slice(short.length - chars + 1);
  }

  function esc(s) {
    return String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
  }

  function zoom(node) {
    st.focus = node;
    renderFlame();
    renderMatchInfo();
  }

  // Controls.
  D.sampleTypes.forEach(function (s, i) {
    var o = document.createElement("option");
    o.value = String(i);
    o.textContent = s.type + " (" + s.unit + ")";
    els.select.appendChild(o);
  });
  els.select.value = String(st.t);
  els.select.addEventListener("change", function () {
    st.t = Number(els.select.value);
    if (!(st.focus.v[st.t] > 0)) st.focus = root;
    renderAll();
  });
  els.search.addEventListener("input", function () {
    st.query = els.search.value.trim().toLowerCase();
    renderFlame();
    renderMatchInfo();
    renderTop();
  });
  els.reset.addEventListener("click", function () { zoom(root); });
  els.flame.addEventListener("click", function (ev) {
    var el = ev.target.closest ? ev.target.closest(".fr") : null;
    if (el) zoom(nodes[Number(el.getAttribute("data-id"))]);
  });
  els.flame.addEventListener("mouseover", function (ev) {
    var el = ev.target.closest ? ev.target.closest(".fr") : null;
    setDetail(el ? nodes[Number(el.getAttribute("data-id"))] : null);
  });
  els.flame.addEventListener("mouseleave", function () { setDetail(null); });
  els.thead.addEventListener("click", function (ev) {
    var th = ev.target.closest ? ev.target.closest("th[data-sort]") : null;
    if (!th) return;
    var key = th.getAttribute("data-sort");
    if (st.sortKey === key) st.sortDesc = !st.sortDesc;
    else { st.sortKey = key; st.sortDesc = key !== "name"; }
    renderTop();
  });
  els.tbody.addEventListener("click", function (ev) {
    var tr = ev.target.closest ? ev.target.closest("tr[data-name]") : null;
    if (!tr) return;
    els.search.value = tr.getAttribute("data-name");
    st.query = els.search.value.toLowerCase();
    renderFlame();
    renderMatchInfo();
    renderTop();
    els.flame.scrollIntoView({ block: "nearest" });
  });
  document.addEventListener("keydown", function (ev) {
    if (ev.key !== "Escape") return;
    if (document.activeElement === els.search && els.search.value) {
      els.search.value = "";
      st.query = "";
      renderFlame();
      renderMatchInfo();
      renderTop();
    } else zoom(root);
  });
  var resizeTimer = 0;
  window.addEventListener("resize", function () {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(renderFlame, 100);
  });

  renderAll();

  // Self-check for tests and the curious: how many subresources this page loaded
  // (it is self-contained: always 0).
  function markResources() {
    document.body.setAttribute("data-resources", String(performance.getEntriesByType("resource").length));
  }
  markResources();
  window.addEventListener("load", markResources);
  document.body.setAttribute("data-rendered", "1");
})();
`;
