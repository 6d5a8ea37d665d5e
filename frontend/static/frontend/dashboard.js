/* Dashboard charts (uPlot). Data comes from json_script blocks named by each chart's data-chart;
   the run page's curves are redrawn whenever its polled partial brings new data (htmx). */
(function () {
  "use strict";
  var COLORS = ["#1a56db", "#d9480f", "#2b8a3e", "#862e9c", "#c92a2a", "#0b7285"];
  var charts = {}; // data-chart name -> uPlot
  var WHOLE = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000];
  var curveCharts = {}; // run curve panel id -> {plot, n}

  function readJSON(id) {
    var el = document.getElementById(id);
    if (!el) return null;
    try { return JSON.parse(el.textContent); } catch (e) { return null; }
  }

  function widthOf(el) { return Math.max(240, Math.floor(el.clientWidth || el.parentNode.clientWidth || 600)); }

  function options(el, data) {
    var kind = el.dataset.kind || "lines";
    var xKind = el.dataset.x || "steps";
    var series = [{}];
    (data.series || []).forEach(function (s, i) {
      var color = COLORS[i % COLORS.length];
      var one = { label: s.label, stroke: color, width: 2, spanGaps: true, points: { show: (data.x || []).length < 40 } };
      if (kind === "bars") {
        one.fill = color + "cc";
        one.width = 0;
        one.paths = uPlot.paths.bars({ size: [0.7, 40] });
        one.points = { show: false };
      }
      series.push(one);
    });
    var xAxis = { stroke: "#5b6470", grid: { stroke: "#eceef2" } };
    var scales = { x: { time: false } };
    if (xKind === "time" && data.axis) {
      // range, ticks and labels come from the server (frontend/dashboard/charts.py): they fit the data's span
      var axis = data.axis;
      scales.x.range = function () { return [axis.range[0], axis.range[1]]; };
      xAxis.splits = function () { return axis.ticks; };
      xAxis.values = function () { el.dataset.xLabels = JSON.stringify(axis.labels); return axis.labels; };
      xAxis.space = 40;
      var when = new Intl.DateTimeFormat(undefined, { timeZone: axis.tz || "UTC", month: "short", day: "numeric",
                                                      hour: "2-digit", minute: "2-digit", hour12: false });
      series[0] = { label: "time", value: function (u, v) { return v == null ? "--" : when.format(new Date(v * 1000)); } };
    } else if (xKind === "labels") {
      var labels = data.labels || [];
      scales.x = { time: false, range: function () { return [-0.6, Math.max(labels.length, 1) - 0.4]; } };
      xAxis.incrs = [1];
      xAxis.values = function (u, vals) {
        return vals.map(function (v) { return Number.isInteger(v) && labels[v] !== undefined ? labels[v] : ""; });
      };
    } else {
      scales.x = { time: false };
      xAxis.label = "step";
      xAxis.incrs = WHOLE;
      series[0] = { label: "step" };
    }
    var yAxis = { stroke: "#5b6470", grid: { stroke: "#eceef2" }, size: 56, label: el.dataset.y || "" };
    if (el.dataset.y === "annotations") yAxis.incrs = WHOLE;
    if (kind === "bars") { // a bar's length is its value: bars start at zero
      scales.y = { range: function (u, min, max) { return [0, max > 0 ? max * 1.1 : 1]; } };
    }
    return {
      width: widthOf(el),
      height: parseInt(el.dataset.height || "220", 10),
      scales: scales,
      series: series,
      legend: { show: series.length > 2 || kind !== "bars" },
      cursor: { drag: { x: false, y: false } },
      hooks: { draw: [function (u) { drawnScales(el, u); }] },
      axes: [xAxis, yAxis]
    };
  }

  function drawnScales(el, plot) {
    // what was drawn, on the element: the axes' ranges (for a reader of the page's source, and for tests)
    el.dataset.xMin = plot.scales.x.min; el.dataset.xMax = plot.scales.x.max;
    el.dataset.yMin = plot.scales.y.min; el.dataset.yMax = plot.scales.y.max;
  }

  function aligned(data) {
    return [data.x || []].concat((data.series || []).map(function (s) { return s.values; }));
  }

  function draw(el, data) {
    var name = el.dataset.chart;
    if (charts[name]) { charts[name].destroy(); }
    el.textContent = "";
    charts[name] = new uPlot(options(el, data), aligned(data), el);
    el.classList.add("drawn");
    return charts[name];
  }

  function drawStatic() {
    document.querySelectorAll(".chart[data-chart]").forEach(function (el) {
      if (el.closest("#curves")) return;
      var data = readJSON(el.dataset.chart);
      if (data && (data.x || []).length) draw(el, data);
    });
  }

  // --- the run page's live curves -----------------------------------------------------------
  function refreshCurves() {
    var box = document.getElementById("curves");
    if (!box) return;
    var panels = readJSON(box.dataset.source) || [];
    var empty = document.getElementById("no-curves");
    if (empty) empty.hidden = panels.length > 0;
    var added = false;
    panels.forEach(function (panel) {
      var entry = curveCharts[panel.id];
      if (entry && entry.n === panel.series.length) {
        entry.plot.setData(aligned(panel));
        return;
      }
      if (entry) { entry.plot.destroy(); }
      var fig = box.querySelector('[data-panel="' + panel.id + '"]');
      if (!fig) {
        fig = document.createElement("figure");
        fig.className = "curve";
        fig.dataset.panel = panel.id;
        var cap = document.createElement("figcaption");
        cap.textContent = panel.title;
        var el = document.createElement("div");
        el.className = "chart";
        el.dataset.chart = "curve-" + panel.id;
        el.dataset.x = "steps";
        el.dataset.height = "200";
        el.setAttribute("role", "img");
        el.setAttribute("aria-label", panel.title + " by step");
        fig.appendChild(cap);
        fig.appendChild(el);
        box.appendChild(fig);
      }
      var target = fig.querySelector(".chart");
      curveCharts[panel.id] = { plot: draw(target, panel), n: panel.series.length };
      added = true;
    });
    if (added) resizeAll(); // a new panel changes the grid: every chart takes its cell's width again
  }

  function resizeAll() {
    Object.keys(charts).forEach(function (name) {
      var plot = charts[name];
      var el = plot.root.parentNode;
      if (el) plot.setSize({ width: 10, height: plot.height }); // shrink first so the grid can settle
    });
    Object.keys(charts).forEach(function (name) {
      var plot = charts[name];
      var el = plot.root.parentNode;
      if (el) plot.setSize({ width: widthOf(el), height: plot.height });
    });
  }

  function focusFirstError() {
    // a refused form: take the admin to the first field that needs fixing
    var bad = document.querySelector("form .field.invalid input, form .field.invalid select");
    if (bad) { bad.focus(); bad.scrollIntoView({ block: "center" }); }
  }

  function fitDataToMethod() {
    // the launch form offers only the data the chosen method trains on (each option's data-methods)
    var method = document.getElementById("id_method"), data = document.getElementById("id_dataset");
    if (!method || !data) return;
    function apply() {
      Array.prototype.forEach.call(data.querySelectorAll("option[data-methods]"), function (opt) {
        var fits = opt.dataset.methods.split(" ").indexOf(method.value) >= 0;
        opt.hidden = opt.disabled = !fits;
        if (!fits && opt.selected) data.value = "";
      });
      Array.prototype.forEach.call(data.querySelectorAll("optgroup"), function (group) {
        group.hidden = !group.querySelector("option:not([hidden])");
      });
    }
    method.addEventListener("change", apply);
    apply();
  }

  function init() {
    focusFirstError();
    fitDataToMethod();
    if (typeof uPlot === "undefined") return;
    drawStatic();
    refreshCurves();
    document.body.addEventListener("htmx:afterSettle", refreshCurves);
    var timer = null;
    window.addEventListener("resize", function () {
      clearTimeout(timer);
      timer = setTimeout(resizeAll, 150);
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
