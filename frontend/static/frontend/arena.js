/* Arena pages: keys to start a battle, vote and go on (the pairwise keys, from frontend/keys.py), and the
   leaderboard's plot of ratings with their intervals (uPlot). The forms work without this file (plain POST);
   htmx polls a battle's answers while they are being written. */
(function () {
  "use strict";
  var readyAt = performance.now();

  function byId(id) { return document.getElementById(id); }
  function say(text) { var live = byId("live"); if (live) { live.textContent = ""; live.textContent = text; } }
  function message(text) {
    var el = byId("form-msg");
    if (!el) return;
    el.textContent = text; el.hidden = !text;
  }
  var KEYS = (function () {
    var el = byId("arena-keys");
    try { return el ? JSON.parse(el.textContent) : {}; } catch (e) { return {}; }
  })();

  function openDialog(id) {
    var d = byId(id); if (!d) return;
    if (d.open) d.close(); else d.showModal();
  }
  document.addEventListener("click", function (e) {
    var opener = e.target.closest && e.target.closest("[data-open]");
    if (opener) openDialog(opener.dataset.open);
  });

  // --- voting -------------------------------------------------------------------------------
  function voteForm() { return byId("vote-form"); }
  function choose(key) {
    var fm = voteForm(); if (!fm) return false;
    var input = Array.prototype.filter.call(fm.querySelectorAll("input[data-keys]"), function (i) {
      return i.dataset.keys.split(" ").indexOf(key) >= 0;
    })[0];
    if (!input) return false;
    input.checked = true;
    message("");
    say("Chosen: " + input.parentNode.textContent.trim());
    return true;
  }
  function vote() {
    var fm = voteForm(); if (!fm) return;
    if (!fm.querySelector('input[name="choice"]:checked')) {
      var problem = "Choose A, B" + (fm.querySelector('input[value="tie"]') ? ", tie" : "") + " or another option first.";
      message(problem); say(problem); return;
    }
    fm.requestSubmit(byId("vote-btn"));
  }
  document.addEventListener("submit", function (e) {
    var input = e.target.querySelector && e.target.querySelector('input[name="time_spent_ms"]');
    if (input) input.value = String(Math.round(performance.now() - readyAt));
  }, true);

  // --- keys ---------------------------------------------------------------------------------
  document.addEventListener("keydown", function (e) {
    if (e.defaultPrevented || e.isComposing) return;
    var t = e.target, tag = t.tagName;
    var key = e.key.toLowerCase();
    var typing = tag === "TEXTAREA" || tag === "SELECT" || (tag === "INPUT" && ["radio", "checkbox"].indexOf(t.type) < 0);
    if (typing) {
      if (e.key === "Escape") { t.blur(); e.preventDefault(); }
      else if (key === KEYS.vote && (e.ctrlKey || e.metaKey) && t.form && t.form.id === "battle-form") {
        e.preventDefault(); t.form.requestSubmit(byId("start-btn"));
      }
      return;
    }
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (document.querySelector("dialog[open]")) return; // Esc closes it (native)
    if (key === KEYS.help) { openDialog("shortcuts"); e.preventDefault(); return; }
    if (key === KEYS.guidelines) { openDialog("guidelines"); e.preventDefault(); return; }
    if (key === KEYS.suggest && byId("suggest-btn")) { byId("suggest-btn").click(); e.preventDefault(); return; }
    if (key === KEYS.new_battle && byId("next-battle")) { byId("next-battle").click(); e.preventDefault(); return; }
    if (key === KEYS.vote && voteForm()) {
      if (tag === "BUTTON" || tag === "A") return; // Enter on a focused button does what it says
      e.preventDefault(); vote(); return;
    }
    if (choose(key)) e.preventDefault();
  });

  document.addEventListener("htmx:afterSettle", function (e) {
    var target = e.detail.target;
    if (target && target.id === "prompt") { target.focus(); say("Suggested prompt: " + target.value); return; }
    var state = byId("battle-state");
    if (!state) return;
    if (state.dataset.status === "ready" && !state.dataset.announced) {
      state.dataset.announced = "1";
      readyAt = performance.now();
      say("Both answers are complete. Vote with " + Array.prototype.map.call(
        state.querySelectorAll("input[data-keys]"), function (i) { return i.dataset.keys.split(" ")[0].toUpperCase(); }).join(", ") + ", then Enter.");
    } else if (state.dataset.status === "voted") {
      var revealed = byId("revealed");
      if (revealed) say(revealed.textContent.replace(/\s+/g, " ").trim());
    }
  });
  document.addEventListener("htmx:responseError", function () {
    message("The server could not take that just now. Try again; nothing was lost.");
  });

  // --- the leaderboard's plot ---------------------------------------------------------------
  function readJSON(id) {
    var el = byId(id);
    try { return el ? JSON.parse(el.textContent) : null; } catch (e) { return null; }
  }
  function intervals(u) { // each source's 95% interval as a vertical bar with caps
    var ctx = u.ctx, data = u.data, capW = 6 * devicePixelRatio;
    ctx.save();
    ctx.strokeStyle = "#1a56db";
    ctx.lineWidth = 2 * devicePixelRatio;
    for (var i = 0; i < data[0].length; i++) {
      var x = u.valToPos(data[0][i], "x", true);
      var lo = u.valToPos(data[2][i], "y", true), hi = u.valToPos(data[3][i], "y", true);
      ctx.beginPath();
      ctx.moveTo(x, lo); ctx.lineTo(x, hi);
      ctx.moveTo(x - capW, lo); ctx.lineTo(x + capW, lo);
      ctx.moveTo(x - capW, hi); ctx.lineTo(x + capW, hi);
      ctx.stroke();
    }
    ctx.restore();
  }
  function drawLeaderboard() {
    var el = byId("leaderboard-chart");
    var data = readJSON("leaderboard-data");
    if (!el || !data || !data.labels.length || typeof uPlot === "undefined") return;
    var labels = data.labels;
    var xs = labels.map(function (_, i) { return i; });
    var lo = Math.min.apply(null, data.low), hi = Math.max.apply(null, data.high);
    var pad = Math.max(10, (hi - lo) * 0.1);
    var none = function () { return null; };
    var opts = {
      width: Math.max(280, el.clientWidth || 600), height: 280,
      scales: { x: { time: false, range: function () { return [-0.6, labels.length - 0.4]; } },
                y: { range: function () { return [lo - pad, hi + pad]; } } },
      axes: [
        { stroke: "#5b6470", grid: { show: false }, incrs: [1],
          values: function (u, vals) { return vals.map(function (v) { return Number.isInteger(v) && labels[v] !== undefined ? labels[v] : ""; }); } },
        { stroke: "#5b6470", grid: { stroke: "#eceef2" }, size: 56, label: "rating" }
      ],
      series: [
        { label: "source", value: function (u, v) { return v == null ? "" : labels[v]; } },
        { label: "rating", stroke: "#1a56db", width: 0, paths: none, points: { show: true, size: 10, fill: "#1a56db" } },
        { label: "95% low", show: true, width: 0, paths: none, points: { show: false } },
        { label: "95% high", show: true, width: 0, paths: none, points: { show: false } }
      ],
      legend: { show: false },  // the table beside it says the same in words
      cursor: { drag: { x: false, y: false } },
      hooks: { draw: [intervals] }
    };
    el.textContent = "";
    new uPlot(opts, [xs, data.rating, data.low, data.high], el);
    el.classList.add("drawn");
  }

  function init() {
    readyAt = performance.now();
    drawLeaderboard();
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init); else init();
})();
