/* gradscope report: what one explorer shows. The graph's data (a JSON block, see
   explorer/data.py) and the view's state (which module calls are open, which ×N folds are
   split) decide what stands for each node (itself, or the box of a closed call) and give the
   DOT that Graphviz lays out: only what is shown. User text only ever goes into DOT strings,
   which Graphviz writes out as escaped SVG text. Sets globalThis.GradscopeExplorerView. */
(function () {
  "use strict";
  var MAX_LABELLED = 400;  // more edges than this: drawn without their gradient labels

  function esc(s) { return String(s).replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/[\r\n]+/g, " "); }
  function q(s) { return '"' + esc(s) + '"'; }  // a DOT string: quotes and backslashes escaped, one line
  function ql(lines) { return '"' + lines.map(esc).join("\\n") + '"'; }  // lines joined by DOT's \n
  var U = globalThis.GradscopeExplorerPanel.util;  // panel.js: text helpers
  var cut = U.cut, num = U.num, shape = U.shape, count = U.count, single = U.single;

  // The view of one graph: its data, indexed, and the state `st` the explorer changes
  // (`st.open[call]`, `st.unfolded[fold]`); the functions below read that state.
  function View(data) {
    var calls = data.calls.map(function (c, i) {
      return { i: i, path: c[0], cls: c[1], call: c[2], parent: c[3], params: c[4], gnorm: c[5], depth: data.depths[i] };
    });
    var nodes = data.nodes, byId = {}, foldOf = {}, chains = [];
    nodes.forEach(function (n, k) { n.k_ = k; byId[n.i] = n; });
    data.folds.forEach(function (f, k) { f.forEach(function (c) { foldOf[c] = k; }); });
    calls.forEach(function (c) { chains.push(c.parent >= 0 ? chains[c.parent].concat([c.i]) : [c.i]); });
    var st = { open: {}, unfolded: {} };
    function isOpen(i) { return !calls[i].path || st.open[i]; }

    // What stands for node n now: itself (null) or the box of its outermost closed call.
    function boxOf(home) {
      if (home === undefined || home < 0) return null;
      var ch = chains[home];
      for (var k = 0; k < ch.length; k++) {
        var c = ch[k];
        if (!isOpen(c)) {
          var f = foldOf[c];
          if (f !== undefined && !st.unfolded[f] && data.folds[f].every(function (j) { return !isOpen(j); }))
            return "f" + f;
          return "b" + c;
        }
      }
      return null;
    }
    function repOf(n) { var b = boxOf(n.c); return b === null ? "n" + n.k_ : b; }

    function nodeLabel(n) {
      if (n.k === "leaf") return [cut(n.n || "leaf", 40), shape(n.s)];
      var src = n.src >= 0 ? data.sources[n.src][0] : (n.cb ? "backward of " + n.cb : "");
      return [cut(n.o || n.g, 40)].concat(src ? [cut(src, 40)] : []);
    }
    function boxInfo(id) {
      if (id.charAt(0) === "f") {
        var f = data.folds[+id.slice(1)], a = calls[f[0]], z = calls[f[f.length - 1]];
        var sq = 0, any = false;
        f.forEach(function (c) { var g = calls[c].gnorm; if (typeof g === "number") { sq += g * g; any = true; } });
        return { first: a, last: z, n: f.length, gnorm: any ? Math.sqrt(sq) : null, params: a.params, calls: f };
      }
      var c = calls[+id.slice(1)];
      return { first: c, last: c, n: 1, gnorm: c.gnorm, params: c.params, calls: [c.i] };
    }
    function boxLabel(id) {
      var b = boxInfo(id), head = cut(b.first.path, 40);
      if (b.n > 1) head += " – " + cut(b.last.path.split(".").pop(), 12) + "  ×" + b.n;
      var facts = [];
      if (b.params) facts.push(count(b.params) + " params" + (b.n > 1 ? " each" : ""));
      if (typeof b.gnorm === "number") facts.push("‖grad‖ " + num(b.gnorm));
      return [head, cut(b.first.cls, 30)].concat(facts.length ? [facts.join(" · ")] : []);
    }

    // The DOT of the current state; fills `shown` (DOT id -> what it is).
    function toDot() {
      var items = {}, kids = {}, shown = { nodes: 0, boxes: 0 };
      function put(cluster, line) { (items[cluster] = items[cluster] || []).push(line); }
      function clusterOf(home) {  // the innermost open call with a path at or above `home`
        if (home === undefined || home < 0) return -1;
        var ch = chains[home];
        for (var k = ch.length - 1; k >= 0; k--) if (calls[ch[k]].path) return ch[k];
        return -1;
      }
      var boxes = {};
      nodes.forEach(function (n) {
        var r = repOf(n);
        if (r.charAt(0) === "n") {
          var attrs = n.k === "leaf"
            ? 'shape=ellipse,style=filled,fillcolor="' + (n.r ? "#dcfce7" : n.p ? "#fef3c7" : "#f5f5f4") + '"'
            : 'shape=box,style="rounded,filled",fillcolor="' + (n.r ? "#dcfce7" : "#eff6ff") + '"';
          if (n.f) attrs += ',color="#dc2626",penwidth=2.5';
          put(clusterOf(n.c), r + " [id=" + q("x_" + r) + ",label=" + ql(nodeLabel(n)) + "," + attrs + "]");
          shown.nodes++;
        } else if (!boxes[r]) {
          var b = boxInfo(r);
          boxes[r] = { flagged: false, parent: clusterOf(b.first.parent) };
        }
        if (r.charAt(0) !== "n" && n.f) boxes[r].flagged = true;
      });
      Object.keys(boxes).forEach(function (r) {
        var attrs = boxes[r].flagged ? ',color="#dc2626",fillcolor="#fee2e2",penwidth=3' : "";
        put(boxes[r].parent, r + " [id=" + q("x_" + r) + ',shape=box,style="filled,bold",fillcolor="#f5f5f4",' +
          'color="#57534e",penwidth=1.6,label=' + ql(boxLabel(r)) + attrs + "]");
        shown.boxes++;
      });
      calls.forEach(function (c) {
        if (c.path && isOpen(c.i) && boxOf(c.i) === null) {
          var p = clusterOf(c.parent);
          (kids[p] = kids[p] || []).push(c.i);
        }
      });
      function has(k) { return (items[k] && items[k].length) || (kids[k] || []).some(has); }
      function emit(k, out) {
        (kids[k] || []).forEach(function (c) {
          if (!has(c)) return;
          var lab = calls[c].path + "  " + calls[c].cls + (calls[c].call ? " (call " + calls[c].call + ")" : "");
          out.push("subgraph cluster_" + c + " {id=" + q("x_c" + c) + ";label=" + q(cut(lab, 60)) +
                   ';style="rounded";color="#a8a29e";fontcolor="#44403c";');
          emit(c, out);
          out.push("}");
        });
        (items[k] || []).forEach(function (l) { out.push(l); });
      }
      var out = ['digraph G { rankdir=TB; nodesep=0.3; ranksep=0.4; fontname="Helvetica,Arial,sans-serif"; fontsize=11;',
                 'node [fontname="Helvetica,Arial,sans-serif",fontsize=11,margin="0.14,0.05",penwidth=1.2];',
                 'edge [color="#1d4ed8",fontcolor="#1d4ed8",fontname="Helvetica,Arial,sans-serif",fontsize=9,dir=back,arrowsize=0.7];'];
      emit(-1, out);
      var seen = {}, drawn = [];
      data.edges.forEach(function (e, k) {
        var s = byId[e[0]], d = byId[e[1]];
        if (!s || !d) return;
        var a = repOf(s), b = repOf(d);
        if (a === b || seen[a + ">" + b]) return;
        seen[a + ">" + b] = true;
        drawn.push([a, b, k, e[3]]);
      });
      // each edge's gradient as its label, as on the static pictures; a big view goes
      // without (labels slow the layout down and would not be read at that zoom)
      var labels = drawn.length <= MAX_LABELLED;
      drawn.forEach(function (x) {
        var g = x[3], one = g ? single(g.v) : null;
        var text = !labels || !g ? "" : one !== null ? "grad " + num(one) : "‖g‖ " + num(g.n);
        out.push(x[0] + " -> " + x[1] + " [id=" + q("x_e" + x[2]) + (text ? ",label=" + q(text) : "") + "]");
      });
      out.push("}");
      return { dot: out.join("\n"), shown: shown };
    }

    return { data: data, calls: calls, nodes: nodes, byId: byId, chains: chains, st: st,
             isOpen: isOpen, boxOf: boxOf, repOf: repOf, boxInfo: boxInfo, toDot: toDot };
  }

  globalThis.GradscopeExplorerView = { View: View };
})();
