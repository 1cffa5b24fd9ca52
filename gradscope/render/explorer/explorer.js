/* gradscope report: the explorer of each distinct graph: drawing, zoom, clicks and keys,
   the URL fragment, and the page's explorers drawn in turn.
   The page holds each graph as data (a JSON block, see explorer/data.py). The state of a
   view (which module calls are open, which ×N folds are split, what is selected) becomes
   DOT (view.js), laid out by Graphviz compiled to WebAssembly (vendor/graphviz.js), so only
   what is shown is laid out. User text only ever goes in as text (textContent, or DOT strings
   that Graphviz writes out as escaped SVG text): never as HTML. The state lives in the
   URL fragment: #graph=2&expand=blocks.3&select=n187&search=model.py:12 */
(function () {
  "use strict";
  var MIN = 0.05, MAX = 8, STEP = 1.25, MAX_MATCHES = 200;
  var gvReady = null;

  function graphviz() {
    if (!gvReady) gvReady = globalThis.GradscopeGraphviz.load();
    return gvReady;
  }

  var P = globalThis.GradscopeExplorerPanel, U = P.util;  // panel.js: the details panel, text helpers
  var cut = U.cut;

  // -- one explorer ----------------------------------------------------------------------
  function Explorer(root) {
    var data = JSON.parse(root.querySelector(".gs-x-data").textContent);
    var view = root.querySelector(".gs-x-view"), panel = root.querySelector(".gs-x-details");
    var status = root.querySelector(".gs-x-status"), search = root.querySelector(".gs-x-search");
    var v = globalThis.GradscopeExplorerView.View(data);  // view.js: what is shown, as DOT
    var calls = v.calls, nodes = v.nodes, byId = v.byId, chains = v.chains, st = v.st;
    var isOpen = v.isOpen, boxOf = v.boxOf, repOf = v.repOf, boxInfo = v.boxInfo, toDot = v.toDot;
    st.selected = null; st.marked = {}; st.scale = 1; st.w = 0; st.h = 0;
    var self = this, svg = null, drag = null, dragged = false, first = true;

    function reset() {
      st.open = {}; st.unfolded = {};
      data.open.forEach(function (i) { st.open[i] = true; });
    }

    // -- drawing -------------------------------------------------------------------------
    this.draw = function () {
      root.setAttribute("data-gs-state", "laying-out");
      return graphviz().then(function (gv) {
        var t0 = performance.now(), made = toDot();
        var text = gv.layout(made.dot, "svg", "dot");
        var doc = new DOMParser().parseFromString(text, "image/svg+xml");
        var next = document.importNode(doc.documentElement, true);
        var ms = performance.now() - t0;
        view.textContent = "";
        view.appendChild(next);
        svg = next;
        st.w = svg.width.baseVal.value; st.h = svg.height.baseVal.value;
        var title = svg.querySelectorAll("title");
        for (var k = 0; k < title.length; k++) title[k].parentNode.removeChild(title[k]);
        // fit the frame, but never so small that the labels cannot be read: the rest scrolls
        zoomTo(Math.max(Math.min(view.clientWidth / st.w, view.clientHeight / st.h, 1), 0.6));
        paint();
        var focus = st.focus && svg.querySelector('[id="' + st.focus + '"]');
        var start = !focus && first && !st.selected && topmost();  // opened: where the graph starts
        if (focus && !st.selected) centre(focus, true);
        else if (start) centre(start);
        st.focus = null;
        first = false;
        var n = made.shown.nodes + made.shown.boxes;
        root.setAttribute("data-gs-boxes", String(n));
        root.setAttribute("data-gs-layout-ms", String(Math.round(ms)));
        root.setAttribute("data-gs-state", "ready");
        status.textContent = made.shown.nodes + " nodes · " + made.shown.boxes + " boxes · laid out in " +
          Math.round(ms) + " ms" + (self.note ? " · " + self.note : "");
        return ms;
      }).catch(function (err) {
        root.setAttribute("data-gs-state", "error");
        status.textContent = "could not lay this graph out: " + err;
      });
    };

    function paint() {  // selection and marks: classes on what is drawn, no new layout
      if (!svg) return;
      var old = svg.querySelectorAll(".gs-x-sel, .gs-x-mark");
      for (var k = 0; k < old.length; k++) old[k].classList.remove("gs-x-sel", "gs-x-mark");
      Object.keys(st.marked).forEach(function (id) {
        var n = byId[id], g = n && svg.querySelector('[id="x_' + repOf(n) + '"]');
        if (g) g.classList.add("gs-x-mark");
      });
      if (st.selected) {
        var g = svg.querySelector('[id="x_' + st.selected + '"]');
        if (g) { g.classList.add("gs-x-sel"); centre(g); }
      }
    }

    function topmost() {  // the drawn node nearest the top (a graph laid out askew starts far right)
      var all = svg.querySelectorAll("g.node"), best = null, y = Infinity;
      for (var k = 0; k < all.length; k++) {
        var r = all[k].getBoundingClientRect();
        if (r.top < y) { y = r.top; best = all[k]; }
      }
      return best;
    }

    function centre(g, top) {  // bring g into the frame (a frame opened: its top, in the middle)
      var r = g.getBoundingClientRect(), v = view.getBoundingClientRect();
      if (r.left >= v.left && r.right <= v.right && r.top >= v.top && r.bottom <= v.bottom) return;
      view.scrollLeft += r.left + r.width / 2 - (v.left + v.width / 2);
      view.scrollTop += top && r.height > v.height ? r.top - v.top - 20 : r.top + r.height / 2 - (v.top + v.height / 2);
    }

    function zoomTo(next, x, y) {
      if (!svg) return;
      next = Math.min(MAX, Math.max(MIN, next));
      var r = view.getBoundingClientRect();
      if (x === undefined) { x = r.width / 2; y = r.height / 2; }
      var gx = (view.scrollLeft + x) / st.scale, gy = (view.scrollTop + y) / st.scale;
      st.scale = next;
      svg.style.width = st.w * next + "px";
      svg.style.height = st.h * next + "px";
      view.scrollLeft = gx * next - x;
      view.scrollTop = gy * next - y;
    }
    this.fit = function () { zoomTo(Math.min(view.clientWidth / st.w, view.clientHeight / st.h)); };

    // -- state changes -------------------------------------------------------------------
    function openTo(home) {  // open every call around `home` (and split the folds on the way)
      if (home === undefined || home < 0) return;
      chains[home].forEach(function (c) { st.open[c] = true; });
    }
    function whatIs(id) {  // a DOT id -> {kind, ...}
      var t = id.charAt(0);
      if (t === "n") return { kind: "node", node: nodes[+id.slice(1)] };
      if (t === "e") return { kind: "edge", edge: data.edges[+id.slice(1)] };
      if (t === "c") return { kind: "cluster", call: +id.slice(1) };
      return { kind: "box", id: id };
    }
    this.select = function (nodeId, mark) {
      var n = byId[nodeId];
      if (!n) { status.textContent = "no node " + cut(nodeId, 40) + " in this graph"; return false; }
      openTo(n.c);
      st.marked = {};
      (mark || [nodeId]).forEach(function (m) { if (byId[m]) { st.marked[m] = true; openTo(byId[m].c); } });
      st.selected = "n" + n.k_;
      details({ kind: "node", node: n });
      return true;
    };
    this.expandPath = function (path) {
      var hit = false;
      calls.forEach(function (c) {
        if (c.path === path) { hit = true; chains[c.i].forEach(function (a) { st.open[a] = true; }); }
      });
      if (!hit) status.textContent = "no module " + cut(path, 60) + " in this graph";
      return hit;
    };
    this.find = function (text) {
      text = String(text).trim();
      st.marked = {};
      if (!text) { self.note = ""; return 0; }
      var m = /^(.*):(\d+)$/.exec(text), low = text.toLowerCase(), hits = [];
      nodes.forEach(function (n) {
        var ok;
        if (m && n.src >= 0) {
          var s = data.sources[n.src];
          ok = +s[2] === +m[2] && (s[0] === text || s[1] === m[1] || s[1].slice(-m[1].length - 1) === "/" + m[1]);
        } else if (!m) {
          ok = [n.n, n.o, n.g, n.mod].some(function (v) { return v && String(v).toLowerCase().indexOf(low) >= 0; });
        }
        if (ok && hits.length < MAX_MATCHES) hits.push(n);
      });
      hits.forEach(function (n) { st.marked[n.i] = true; openTo(n.c); });
      self.note = hits.length + (hits.length === MAX_MATCHES ? "+" : "") + " match" + (hits.length === 1 ? "" : "es") +
        " for " + cut(text, 40);
      if (hits.length) { st.selected = "n" + hits[0].k_; details({ kind: "node", node: hits[0] }); }
      return hits.length;
    };
    function level(more) {
      var vis = calls.filter(function (c) { return c.path && boxOf(c.i) === null; });
      if (more) {
        calls.forEach(function (c) {
          if (!c.path || isOpen(c.i)) return;
          if (c.parent < 0 || (isOpen(c.parent) && boxOf(c.parent) === null)) st.open[c.i] = true;
        });
      } else {
        var open = vis.filter(function (c) { return isOpen(c.i); });
        var deepest = Math.max.apply(null, open.map(function (c) { return c.depth; }).concat([-1]));
        open.forEach(function (c) { if (c.depth === deepest) st.open[c.i] = false; });
      }
    }

    function act(what, quiet) {
      if (what === "fit") { self.fit(); return; }
      if (what === "in") { zoomTo(st.scale * STEP); return; }
      if (what === "out") { zoomTo(st.scale / STEP); return; }
      if (what === "more") level(true);
      else if (what === "less") level(false);
      else if (what === "all") { calls.forEach(function (c) { st.open[c.i] = true; }); data.folds.forEach(function (f, k) { st.unfolded[k] = true; }); }
      else if (what === "reset") { reset(); st.selected = null; st.marked = {}; self.note = ""; }
      if (quiet) return;
      save();
      self.draw();
    }

    function clickOn(id) {
      var it = whatIs(id);
      if (it.kind === "box") {
        if (id.charAt(0) === "f") { st.unfolded[+id.slice(1)] = true; st.focus = "x_b" + data.folds[+id.slice(1)][0]; }
        else { st.open[+id.slice(1)] = true; st.focus = "x_c" + id.slice(1); }
        boxDetails(id);
        st.selected = null;
        save(); self.draw();
      } else if (it.kind === "cluster") {
        st.open[it.call] = false;  // (a fold the user split stays split: its calls a box each)
        st.focus = "x_b" + it.call;
        save(); self.draw();
      } else {
        st.selected = id;
        details(it);
        save(); paint();
      }
    }

    // -- the details panel (panel.js) ---------------------------------------------------
    var ctx = { panel: panel, data: data, byId: byId, calls: calls };
    function details(it) { P.details(ctx, it); }
    function boxDetails(id) { P.box(ctx, boxInfo(id)); }

    // -- the URL fragment ----------------------------------------------------------------
    function save() {
      var parts = ["graph=" + data.graph];
      var ex = calls.filter(function (c) { return c.path && st.open[c.i] && data.open.indexOf(c.i) < 0 && boxOf(c.i) === null; })
        .filter(function (c) { return !calls.some(function (d) { return d.parent === c.i && st.open[d.i] && data.open.indexOf(d.i) < 0; }); })
        .map(function (c) { return encodeURIComponent(c.path); });
      if (ex.length) parts.push("expand=" + ex.join(","));
      if (st.selected && st.selected.charAt(0) === "n") parts.push("select=" + encodeURIComponent(nodes[+st.selected.slice(1)].i));
      try { history.replaceState(null, "", "#" + parts.join("&")); } catch (e) { /* a sandboxed frame */ }
    }
    this.apply = function (p) {  // p: the parsed fragment
      self.set(p);
      return self.draw();
    };
    this.dot = function () { return toDot().dot; };  // the DOT of the current state (bench, debugging)
    this.set = function (p) {
      reset(); st.selected = null; st.marked = {}; self.note = "";
      if (p.depth !== undefined && /^\d+$/.test(p.depth)) {  // every call down to this depth open
        calls.forEach(function (c) { st.open[c.i] = c.depth <= +p.depth; });
      }
      if (p.expand === "*") act("all", true);  // everything open: a linkable "expand all"
      else (p.expand || "").split(",").forEach(function (x) {
        if (x && self.expandPath(x)) st.focus = "x_c" + calls.filter(function (c) { return c.path === x; })[0].i;
      });
      if (p.search) { search.value = p.search; self.find(p.search); }
      if (p.select) self.select(p.select, p.mark ? p.mark.split(",") : null);
    };

    // -- events --------------------------------------------------------------------------
    root.addEventListener("click", function (ev) {
      var b = ev.target.closest && ev.target.closest("[data-gs-x]");
      if (b) { act(b.getAttribute("data-gs-x")); return; }
      if (dragged) { dragged = false; return; }
      var g = ev.target.closest && ev.target.closest("g.node, g.edge, g.cluster");
      if (g && view.contains(g) && g.id.indexOf("x_") === 0) clickOn(g.id.slice(2));
    });
    search.addEventListener("keydown", function (ev) {
      if (ev.key === "Enter") { self.find(search.value); save(); self.draw(); }
      else if (ev.key === "Escape") { search.value = ""; self.find(""); paint(); }
      ev.stopPropagation();
    });
    root.addEventListener("keydown", function (ev) {
      if (ev.target === search || ev.ctrlKey || ev.metaKey || ev.altKey) return;
      var k = ev.key, done = true;
      if (k === "+" || k === "=") act("in");
      else if (k === "-") act("out");
      else if (k === "f") act("fit");
      else if (k === "e") act("more");
      else if (k === "c") act("less");
      else if (k === "0") act("reset");
      else if (k === "/") search.focus();
      else if (k === "Escape") { st.selected = null; st.marked = {}; paint(); }
      else if (k === "ArrowLeft") view.scrollLeft -= 60;
      else if (k === "ArrowRight") view.scrollLeft += 60;
      else if (k === "ArrowUp") view.scrollTop -= 60;
      else if (k === "ArrowDown") view.scrollTop += 60;
      else done = false;
      if (done) ev.preventDefault();
    });
    view.addEventListener("wheel", function (ev) {
      if (!ev.ctrlKey && !ev.metaKey) return;  // a plain wheel scrolls, as in the pictures above
      ev.preventDefault();
      var r = view.getBoundingClientRect();
      zoomTo(st.scale * Math.pow(STEP, -ev.deltaY / 100), ev.clientX - r.left, ev.clientY - r.top);
    }, { passive: false });
    view.addEventListener("pointerdown", function (ev) {
      if (ev.button !== 0 || ev.pointerType === "touch") return;
      drag = { x: ev.clientX, y: ev.clientY, left: view.scrollLeft, top: view.scrollTop };
      dragged = false;
    });
    view.addEventListener("pointermove", function (ev) {
      if (!drag) return;
      if (Math.abs(ev.clientX - drag.x) + Math.abs(ev.clientY - drag.y) > 4) dragged = true;
      view.scrollLeft = drag.left - (ev.clientX - drag.x);
      view.scrollTop = drag.top - (ev.clientY - drag.y);
    });
    view.addEventListener("pointerup", function () { drag = null; });
    view.addEventListener("pointercancel", function () { drag = null; dragged = false; });

    this.number = data.graph;
    this.root = root;
    reset();
  }

  // -- the page ------------------------------------------------------------------------------
  function parse(hash) {
    var p = {};
    if (!hash || hash.indexOf("=") < 0) return null;
    hash.replace(/^#/, "").split("&").forEach(function (kv) {
      var i = kv.indexOf("=");
      if (i > 0) { try { p[kv.slice(0, i)] = decodeURIComponent(kv.slice(i + 1)); } catch (e) { /* bad escape */ } }
    });
    return p;
  }
  var all = [], roots = document.querySelectorAll(".gs-x");
  for (var i = 0; i < roots.length; i++) {
    if (roots[i].getAttribute("data-gs-live")) continue;
    roots[i].setAttribute("data-gs-live", "1");
    try { all.push(new Explorer(roots[i])); } catch (e) {
      roots[i].querySelector(".gs-x-status").textContent = "the explorer could not read this graph: " + e;
    }
  }
  if (!all.length) return;
  function target(p) {
    var n = p && p.graph !== undefined ? +p.graph : null;
    return all.filter(function (x) { return x.number === n; })[0] || (n === null ? null : undefined);
  }
  function route(scroll) {
    var p = parse(location.hash), x = p && target(p);
    if (!x) return null;
    var done = x.apply(p);
    if (scroll) x.root.scrollIntoView({ block: "start" });
    return done;
  }
  // Draw in turn (one Graphviz, one layout at a time): the graph the fragment names first.
  var first = route(true), chain = first || Promise.resolve();
  var want = parse(location.hash), named = want && target(want);
  all.forEach(function (x) { if (x !== named) chain = chain.then(function () { return x.draw(); }); });
  window.addEventListener("hashchange", function () { route(true); });
  document.addEventListener("click", function (ev) {  // the same link twice: no hashchange
    var a = ev.target.closest && ev.target.closest('a[href^="#graph="]');
    if (a && a.getAttribute("href") === location.hash) { ev.preventDefault(); route(true); }
  });
  window.gradscopeExplorers = { all: all, ready: chain };
  // What tests and bench/bench_explorer.py read from the DOM: the load event's time, and
  // how many resources the page fetched (none: everything is inline).
  window.addEventListener("load", function () {
    setTimeout(function () {
      var nav = performance.getEntriesByType("navigation")[0], html = document.documentElement;
      if (nav) html.setAttribute("data-gs-load-ms", String(Math.round(nav.loadEventStart)));
      html.setAttribute("data-gs-resources", String(performance.getEntriesByType("resource").length));
    }, 0);
  });
})();
