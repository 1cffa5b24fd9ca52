/* gradscope report: the explorer's details panel (what a click on a node, an edge or a
   box shows) and the text helpers the explorer shares. User text only ever goes in as
   text (textContent), never as HTML. Sets globalThis.GradscopeExplorerPanel. */
(function () {
  "use strict";
  var SVGNS = "http://www.w3.org/2000/svg";

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function cut(s, n) { s = String(s); return s.length > n ? s.slice(0, n - 1) + "…" : s; }
  function num(x) {
    if (x === null || x === undefined) return "–";
    if (typeof x !== "number") return String(x);
    if (x === 0) return "0";
    var a = Math.abs(x);
    return (a >= 1e4 || a < 1e-3) ? x.toExponential(3) : String(+x.toPrecision(4));
  }
  function shape(s) { return s ? "[" + s.join(", ") + "]" : ""; }
  function count(n) {
    if (n >= 1e9) return (n / 1e9).toFixed(1) + "G";
    if (n >= 1e6) return (n / 1e6).toFixed(1) + "M";
    if (n >= 1e3) return (n / 1e3).toFixed(1) + "k";
    return String(n);
  }
  function single(v) {  // the one number a value holds ([[2]] -> 2), else null
    while (Array.isArray(v) && v.length === 1) v = v[0];
    return typeof v === "number" ? v : null;
  }
  function show(v) { var t = JSON.stringify(v); return cut(t, 600); }

  function table(rows) {
    var t = el("table", "gs-x-facts");
    rows.forEach(function (r) {
      if (r[1] === undefined || r[1] === null || r[1] === "") return;
      var tr = el("tr");
      tr.appendChild(el("th", "", r[0]));
      var td = el("td");
      if (r[1] instanceof Node) td.appendChild(r[1]); else td.textContent = String(r[1]);
      tr.appendChild(td);
      t.appendChild(tr);
    });
    return t;
  }
  function tensor(t) {
    if (!t) return null;
    var s = "‖·‖ " + num(t.n) + " · max|·| " + num(t.m) + " · mean " + num(t.a);
    if (t.nan) s += " · " + t.nan + " NaN";
    if (t.inf) s += " · " + t.inf + " inf";
    if (t.v !== undefined) s += " · value " + show(t.v);
    return s;
  }
  function chart(values, data) {
    var pts = values.map(function (v, k) { return [k, typeof v === "number" ? v : null]; })
      .filter(function (p) { return p[1] !== null; });
    if (pts.length < 2) return null;
    var W = 220, H = 56, lo = Math.min.apply(null, pts.map(function (p) { return p[1]; }));
    var hi = Math.max.apply(null, pts.map(function (p) { return p[1]; })), n = values.length - 1 || 1;
    var s = document.createElementNS(SVGNS, "svg");
    s.setAttribute("width", W); s.setAttribute("height", H); s.setAttribute("class", "gs-x-chart");
    var line = document.createElementNS(SVGNS, "polyline");
    line.setAttribute("points", pts.map(function (p) {
      return (4 + p[0] * (W - 8) / n).toFixed(1) + "," + (H - 4 - (hi > lo ? (p[1] - lo) / (hi - lo) : 0.5) * (H - 8)).toFixed(1);
    }).join(" "));
    s.appendChild(line);
    var box = el("div");
    box.appendChild(s);
    box.appendChild(el("div", "gs-x-small", "passes " + data.seriesPasses[0] + "–" +
      data.seriesPasses[data.seriesPasses.length - 1] + " · min " + num(lo) + " · max " + num(hi)));
    return box;
  }
  function details(ctx, it) {
    var panel = ctx.panel, data = ctx.data, byId = ctx.byId, calls = ctx.calls;
    panel.textContent = "";
    if (it.kind === "edge") {
      var e = it.edge, a = byId[e[0]], b = byId[e[1]];
      panel.appendChild(el("h5", "", "edge " + (a ? a.n || a.o || a.g : e[0]) + " → " + (b ? b.n || b.o || b.g : e[1])));
      panel.appendChild(table([["input", a && (a.n || a.g)], ["consumer", b && (b.o || b.g)], ["input #", e[2]],
        ["gradient", tensor(e[3])], ["local derivative", e[4] !== null && e[4] !== undefined ? show(e[4]) : "not recorded"]]));
      return;
    }
    var n = it.node, src = n.src >= 0 ? data.sources[n.src] : null;
    panel.appendChild(el("h5", "", n.k === "leaf" ? (n.n || "leaf") : (n.o || n.g)));
    var code = null;
    if (src) { code = el("span"); code.appendChild(el("span", "gs-x-src", src[0])); if (src[3]) { code.appendChild(el("br")); code.appendChild(el("code", "", src[3])); } }
    var mod = n.mod !== undefined ? n.mod + (n.mc ? " (call " + n.mc + ")" : "") : "";
    var cls = n.c >= 0 && n.c !== undefined ? calls[n.c].cls : "";
    panel.appendChild(table([
      ["id", n.i], ["name", n.n], ["op", n.o], ["grad_fn", n.g], ["module", mod ? mod + (cls ? " · " + cls : "") : ""],
      ["source", code], ["made by", n.cb ? "backward of " + n.cb : ""],
      ["shape", shape(n.s)], ["dtype", n.t], ["device", n.d],
      ["value", n.v !== undefined ? show(n.v) : ""],
      ["seeded with", tensor(n.seed)],
      ["gradient", n.go ? n.go.map(function (g, k) { return (n.go.length > 1 ? "#" + k + " " : "") + (tensor(g) || "none"); }).join("\n") : ""],
      [".grad before", n.k === "leaf" ? (tensor(n.gb) || "None") : ""],
      [".grad after", n.k === "leaf" ? (tensor(n.ga) || "None") : ""]]));
    var ins = data.edges.filter(function (e) { return e[1] === n.i; });
    if (ins.length) {
      panel.appendChild(el("h6", "", "inputs: gradient sent back · local derivative"));
      panel.appendChild(table(ins.slice(0, 12).map(function (e) {
        var s = byId[e[0]];
        return [(s ? s.n || s.o || s.g : e[0]) + " (#" + e[2] + ")",
                (tensor(e[3]) || "–") + (e[4] !== null && e[4] !== undefined ? " · d/d " + show(e[4]) : "")];
      })));
    }
    var series = data.series[n.i];
    if (series) {
      panel.appendChild(el("h6", "", (n.k === "leaf" ? "‖.grad‖" : "‖gradient‖") + " across the " + data.passes.length + " passes of this graph"));
      var c = chart(series, data);
      if (c) panel.appendChild(c);
    }
  }
  function box(ctx, b) {
    var panel = ctx.panel, calls = ctx.calls;
    panel.textContent = "";
    panel.appendChild(el("h5", "", b.first.path + (b.n > 1 ? " – " + b.last.path + " ×" + b.n : "")));
    panel.appendChild(table([["class", b.first.cls], ["parameters", b.params ? count(b.params) + (b.n > 1 ? " each" : "") : ""],
      ["‖grad‖", typeof b.gnorm === "number" ? num(b.gnorm) : ""],
      ["per call", b.n > 1 ? b.calls.map(function (c) { return num(calls[c].gnorm); }).join(" · ") : ""]]));
  }


  globalThis.GradscopeExplorerPanel = {
    util: { el: el, cut: cut, num: num, shape: shape, count: count, single: single, show: show },
    details: details, box: box
  };
})();
