// The interactive parts of report.html, inlined into the page (no network): tables sorted by
// a click on a column header and filtered by the text typed above them, and the plotly figures
// drawn from the JSON beside them after the page has loaded (plotly.js is inlined as text and
// run then), one at a time, so that the page answers while they draw.
// window.landscapeReport tells how far the drawing got: {figures, drawn, failed, doneAt} and
// how long it took: plotlyMs (running plotly.js), drawMs (each figure, by its slot's id).
(function () {
  "use strict";
  var MISSING = "\u2013";
  var NUMBER = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?/i;
  var state = { figures: 0, drawn: 0, failed: 0, doneAt: null, plotlyMs: null, drawMs: {} };
  window.landscapeReport = state;

  // ---------------------------------------------------------------- tables
  function sortKey(text) {
    var t = text.trim();
    if (t === "" || t === MISSING) return null; // missing values sort last either way
    var m = NUMBER.exec(t);
    return m ? { num: parseFloat(m[0]), str: t } : { num: null, str: t.toLowerCase() };
  }

  function compare(a, b) {
    if (a.num !== null && b.num !== null) return a.num - b.num;
    if (a.num !== null) return -1; // numbers before words
    if (b.num !== null) return 1;
    return a.str.localeCompare(b.str, undefined, { numeric: true });
  }

  function sortBy(table, th, col) {
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    var heads = table.tHead.rows[0].cells;
    for (var i = 0; i < heads.length; i++) heads[i].removeAttribute("aria-sort");
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows).map(function (row, i) {
      return { row: row, i: i, key: sortKey(row.cells[col] ? row.cells[col].textContent : "") };
    });
    rows.sort(function (x, y) {
      if (x.key === null || y.key === null) {
        return x.key === y.key ? x.i - y.i : x.key === null ? 1 : -1;
      }
      var c = compare(x.key, y.key);
      return (ascending ? c : -c) || x.i - y.i;
    });
    rows.forEach(function (r) { body.appendChild(r.row); });
  }

  function filterRows(table, input, count) {
    var words = input.value.toLowerCase().split(/\s+/).filter(Boolean);
    var rows = table.tBodies[0].rows;
    var shown = 0;
    for (var i = 0; i < rows.length; i++) {
      var text = rows[i].textContent.toLowerCase();
      var keep = words.every(function (w) { return text.indexOf(w) >= 0; });
      rows[i].hidden = !keep;
      if (keep) shown++;
    }
    count.textContent = words.length ? shown + " of " + rows.length + " rows" : "";
  }

  function setUpTable(table) {
    var heads = table.tHead ? table.tHead.rows[0].cells : [];
    Array.prototype.forEach.call(heads, function (th, col) {
      th.tabIndex = 0;
      th.title = "Sort by " + th.textContent;
      th.addEventListener("click", function () { sortBy(table, th, col); });
      th.addEventListener("keydown", function (ev) {
        if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); sortBy(table, th, col); }
      });
    });
    var box = table.closest(".table");
    var input = box && box.querySelector("input.filter");
    if (input) {
      var count = box.querySelector(".count");
      input.addEventListener("input", function () { filterRows(table, input, count); });
    }
  }

  // ---------------------------------------------------------------- figures
  var CONFIG = { responsive: true, displaylogo: false };

  function draw(slot) {
    var pick = slot.querySelector("select");
    var id = pick ? pick.value : slot.getAttribute("data-figure");
    var plot = slot.querySelector(".plot");
    var spec = JSON.parse(document.getElementById(id).textContent);
    var how = plot.getAttribute("data-drawn") ? Plotly.react : Plotly.newPlot;
    return how(plot, spec.data, spec.layout, CONFIG).then(function () {
      plot.setAttribute("data-drawn", id);
    });
  }

  function fail(slot, err) {
    state.failed++;
    var note = document.createElement("p");
    note.className = "failed";
    note.textContent = "This figure could not be drawn: " + err;
    slot.appendChild(note);
    console.error("landscape report: figure " + slot.id + ": " + err);
  }

  function drawAll(slots) {
    var i = 0;
    function next() {
      if (i >= slots.length) {
        state.doneAt = performance.now();
        return;
      }
      var slot = slots[i++];
      var t0 = performance.now();
      var step;
      try {
        step = draw(slot);
      } catch (err) {
        step = Promise.reject(err);
      }
      step.then(function () {
        state.drawn++;
        state.drawMs[slot.id] = performance.now() - t0;
      }, function (err) { fail(slot, err); })
        .then(function () { setTimeout(next, 0); });
    }
    next();
  }

  function loadPlotly() {
    // plotly.js is in the page as text (not run while the page loads): run it now
    var source = document.getElementById("plotly-js");
    if (typeof Plotly !== "undefined" || !source) return;
    var t0 = performance.now();
    var run = document.createElement("script");
    run.text = source.textContent;
    document.head.appendChild(run);
    state.plotlyMs = performance.now() - t0;
  }

  function setUpFigures() {
    var slots = Array.prototype.slice.call(document.querySelectorAll(".figure-slot"));
    state.figures = slots.length;
    if (!slots.length) {
      state.doneAt = performance.now();
      return;
    }
    loadPlotly();
    if (typeof Plotly === "undefined") {
      slots.forEach(function (s) { fail(s, "plotly.js is not in the page"); });
      state.doneAt = performance.now();
      return;
    }
    slots.forEach(function (slot) {
      var pick = slot.querySelector("select");
      if (pick) {
        pick.addEventListener("change", function () {
          draw(slot).catch(function (err) { fail(slot, err); });
        });
      }
    });
    drawAll(slots);
  }

  function setUpTables() {
    Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), setUpTable);
  }

  function later(f) {
    return function () { setTimeout(f, 0); }; // after the load event has finished
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", setUpTables);
  } else {
    setUpTables();
  }
  if (document.readyState === "complete") {
    later(setUpFigures)();
  } else {
    window.addEventListener("load", later(setUpFigures));
  }
})();
