/* gradscope report: pan and zoom for each graph frame.
   A graph starts at its natural size (100 %). Drag pans, Ctrl+wheel (or a pinch) zooms
   around the pointer, the buttons zoom in, out, back to 100 % or to fit the frame.
   Frames already set up are skipped, so several reports on one notebook page work. */
(function () {
  "use strict";
  var MIN = 0.1, MAX = 8, STEP = 1.25;

  function setUp(frame) {
    if (frame.getAttribute("data-gs-live")) return;
    var view = frame.querySelector(".gs-graph"), svg = view && view.querySelector("svg");
    if (!svg) return;
    frame.setAttribute("data-gs-live", "1");
    // The natural size: Graphviz's width and height (in pt), as CSS pixels.
    var width = svg.width.baseVal.value, height = svg.height.baseVal.value, scale = 1;
    var label = frame.querySelector('[data-gs-zoom="reset"]');

    function zoomTo(next, x, y) {  // (x, y): the point of the frame that stays put
      next = Math.min(MAX, Math.max(MIN, next));
      var r = view.getBoundingClientRect();
      if (x === undefined) { x = r.width / 2; y = r.height / 2; }
      var gx = (view.scrollLeft + x) / scale, gy = (view.scrollTop + y) / scale;
      scale = next;
      svg.style.width = width * scale + "px";
      svg.style.height = height * scale + "px";
      view.scrollLeft = gx * scale - x;
      view.scrollTop = gy * scale - y;
      if (label) label.textContent = Math.round(scale * 100) + "%";
    }

    frame.addEventListener("click", function (ev) {
      var act = ev.target.getAttribute && ev.target.getAttribute("data-gs-zoom");
      if (act === "in") zoomTo(scale * STEP);
      else if (act === "out") zoomTo(scale / STEP);
      else if (act === "reset") zoomTo(1);
      else if (act === "fit") zoomTo(Math.min(view.clientWidth / width, view.clientHeight / height, 1));
    });
    view.addEventListener("wheel", function (ev) {
      if (!ev.ctrlKey && !ev.metaKey) return;  // a plain wheel scrolls, as anywhere else
      ev.preventDefault();
      var r = view.getBoundingClientRect();
      zoomTo(scale * Math.pow(STEP, -ev.deltaY / 100), ev.clientX - r.left, ev.clientY - r.top);
    }, { passive: false });

    var drag = null;
    view.addEventListener("pointerdown", function (ev) {
      if (ev.button !== 0 || ev.pointerType === "touch") return;  // touch scrolls natively
      var r = view.getBoundingClientRect();
      if (ev.clientX - r.left >= view.clientLeft + view.clientWidth ||
          ev.clientY - r.top >= view.clientTop + view.clientHeight) return;  // on a scrollbar
      drag = { x: ev.clientX, y: ev.clientY, left: view.scrollLeft, top: view.scrollTop };
      try { view.setPointerCapture(ev.pointerId); } catch (e) { /* a pointer already gone */ }
      view.classList.add("gs-dragging");
    });
    view.addEventListener("pointermove", function (ev) {
      if (!drag) return;
      view.scrollLeft = drag.left - (ev.clientX - drag.x);
      view.scrollTop = drag.top - (ev.clientY - drag.y);
    });
    function stop() { drag = null; view.classList.remove("gs-dragging"); }
    view.addEventListener("pointerup", stop);
    view.addEventListener("pointercancel", stop);
  }

  var frames = document.querySelectorAll(".gs-frame");
  for (var i = 0; i < frames.length; i++) setUp(frames[i]);
})();
