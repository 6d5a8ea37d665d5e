/* The annotate screen: keyboard shortcuts, time on item, lease warning, ranking by keyboard and drag.
   The form works without this file (plain POST); this only adds speed. */
(function () {
  "use strict";
  var started = performance.now();
  var leaseTimer = null;
  var selected = null; // ranking: the selected card

  function form() { return document.getElementById("annotate-form"); }
  function byId(id) { return document.getElementById(id); }
  function say(text) { var live = byId("live"); if (live) { live.textContent = ""; live.textContent = text; } }
  function message(text) {
    var el = byId("form-msg");
    if (!el) return;
    el.textContent = text; el.hidden = !text;
  }
  function checked(name) {
    var input = form() && form().querySelector('input[name="' + name + '"]:checked');
    return input ? input.value : null;
  }

  // --- keys: each input names its own keys (data-keys, from frontend/keys.py) -------------------
  var KEYS = (function () {
    var el = byId("rater-keys");
    try { return el ? JSON.parse(el.textContent) : {}; } catch (e) { return {}; }
  })();
  function is(key, name) { return KEYS[name] === key; }
  function keyed(key) {
    var fm = form(); if (!fm) return null;
    return Array.prototype.filter.call(fm.querySelectorAll("input[data-keys]"), function (input) {
      return input.dataset.keys.split(" ").indexOf(key) >= 0;
    })[0] || null;
  }
  var SAID = { choice: "Chosen: ", strength: "Strength: ", overall: "Overall: " };
  function pressKeyed(key) {
    var input = keyed(key); if (!input) return false;
    if (input.disabled || input.closest("fieldset:disabled")) {
      if (input.name === "strength") message("Choose A or B first, then how much better.");
      return true;
    }
    input.checked = true;
    input.dispatchEvent(new Event("change", { bubbles: true }));
    if (input.name === "choice") syncStrength();
    message("");
    say((SAID[input.name] || "") + input.value);
    return true;
  }

  // --- pairwise -------------------------------------------------------------------------------
  function syncStrength() {
    var group = byId("strength-group"); if (!group) return;
    var open = ["A", "B"].indexOf(checked("choice")) >= 0;
    group.disabled = !open;
    if (!open) group.querySelectorAll("input").forEach(function (i) { i.checked = false; });
  }
  function pairwiseProblem() {
    if (!checked("choice")) return "Choose A, B" + (form().querySelector('input[value="tie"]') ? ", tie" : "") + " or another option first.";
    var group = byId("strength-group");
    if (group && !group.disabled && !checked("strength")) return "Say by how much (" +
      Array.prototype.map.call(group.querySelectorAll("input[data-keys]"), function (i) { return i.dataset.keys.toUpperCase(); }).join(" ") + ").";
    return "";
  }

  // --- rating ---------------------------------------------------------------------------------
  function ratingProblem() { return checked("overall") ? "" : "Choose an overall score first."; }

  // --- ranking --------------------------------------------------------------------------------
  function list() { return byId("rank-list"); }
  function cards() { return list() ? Array.prototype.slice.call(list().children) : []; }
  function renumber() {
    var rank = 0;
    cards().forEach(function (card, i) {
      if (i === 0) card.classList.remove("tied");
      if (!card.classList.contains("tied")) rank += 1;
      card.querySelector('input[type="number"]').value = rank;
    });
  }
  function fromInputs() { // a rank typed by hand: reorder the cards to match
    var all = cards().map(function (card, i) {
      return { card: card, rank: parseInt(card.querySelector('input[type="number"]').value, 10) || 99, i: i };
    });
    all.sort(function (a, b) { return a.rank - b.rank || a.i - b.i; });
    all.forEach(function (x, i) {
      list().appendChild(x.card);
      x.card.classList.toggle("tied", i > 0 && x.rank === all[i - 1].rank);
    });
  }
  function select(card) {
    cards().forEach(function (c) {
      c.classList.toggle("selected", c === card);
      c.querySelector(".num").setAttribute("aria-pressed", c === card ? "true" : "false");
    });
    selected = card;
    if (card) say("Response " + card.dataset.number + " selected, position " + (cards().indexOf(card) + 1));
  }
  function move(card, delta) {
    var all = cards(), i = all.indexOf(card), j = i + delta;
    if (!card || j < 0 || j >= all.length) return;
    card.classList.remove("tied");
    if (delta < 0) list().insertBefore(card, all[j]); else list().insertBefore(all[j], card);
    renumber();
    say("Response " + card.dataset.number + " moved to position " + (j + 1));
  }
  function tie(card) {
    if (!card || list().dataset.allowTies !== "true") return;
    if (cards().indexOf(card) === 0) { message("The top card has nothing above it to tie with."); return; }
    card.classList.toggle("tied");
    renumber();
    say(card.classList.contains("tied") ? "Tied with the one above" : "Untied");
  }
  function rankingKey(key, event) {
    if (/^[0-9]$/.test(key)) {
      var number = key === "0" ? "10" : key;
      var card = cards().filter(function (c) { return c.dataset.number === number; })[0];
      if (card) select(card);
      return true;
    }
    if (is(key, "move_up") || is(key, "move_down")) {
      if (!selected) { message("Press a card's number to select it first."); return true; }
      move(selected, is(key, "move_up") ? -1 : 1);
      event.preventDefault();
      return true;
    }
    if (is(key, "tie_above")) { if (selected) tie(selected); else message("Press a card's number to select it first."); return true; }
    if (is(key, "not_rankable")) { var box = byId("not-rankable"); box.checked = !box.checked; say(box.checked ? "Marked as not rankable" : "Rankable"); return true; }
    return false;
  }
  function setupRanking() {
    selected = null;
    var el = list(); if (!el) return;
    renumber();
    el.addEventListener("click", function (e) {
      var btn = e.target.closest("button"); if (!btn) return;
      var card = btn.closest(".rank-card");
      if (btn.dataset.select) select(card);
      else if (btn.dataset.move) { select(card); move(card, parseInt(btn.dataset.move, 10)); btn.focus(); }
      else if ("tie" in btn.dataset) { select(card); tie(card); }
    });
    el.addEventListener("change", function (e) { if (e.target.type === "number") fromInputs(); });
    if (window.Sortable) {
      window.Sortable.create(el, {
        handle: ".drag", animation: 120,
        onEnd: function (e) { e.item.classList.remove("tied"); renumber(); select(e.item); }
      });
    }
  }

  // --- demonstration ---------------------------------------------------------------------------
  function editor() { return byId("answer"); }
  function setDraft(used) {
    var input = byId("draft-used"), state = byId("draft-state");
    if (input) input.value = used ? "A" : "";
    if (state) state.textContent = used ? "Started from the draft." : "Written from scratch.";
  }
  function edited(box) { box.dispatchEvent(new Event("input", { bubbles: true })); } // autosave it too
  function useDraft() {
    var box = editor(), draft = byId("draft-text"); if (!box || !draft) return;
    box.value = draft.value; setDraft(true); edited(box);
    box.focus(); box.setSelectionRange(0, 0); say("The draft is in the editor.");
  }
  function fromScratch() {
    var box = editor(); if (!box) return;
    box.value = ""; setDraft(false); edited(box);
    box.focus(); say("Editor cleared: write from scratch.");
  }
  function demonstrationKey(key) {
    if (is(key, "write")) { var box = editor(); if (box) { box.focus(); } return true; }
    if (is(key, "use_draft") && byId("draft-text")) { useDraft(); return true; }
    if (is(key, "from_scratch") && byId("draft-text")) { fromScratch(); return true; }
    return false;
  }
  function demonstrationProblem() {
    var box = editor();
    return box && box.value.trim() ? "" : "Write the answer first (E puts you in the editor).";
  }
  function setupDemonstration() {
    var box = editor(); if (!box) return;
    var use = byId("use-draft"), scratch = byId("from-scratch");
    if (use) use.addEventListener("click", useDraft);
    if (scratch) scratch.addEventListener("click", fromScratch);
    box.focus({ preventScroll: true });
  }

  // --- improve this response (pairwise and rating projects that ask for it) ---------------------
  function improveBox() { return byId("improve-text"); }
  function improveSide() { var fm = form(); return fm && fm.dataset.mode === "rating" ? "A" : checked("choice"); }
  function improveDirty(box) { return box.value !== (box.dataset.original || ""); }
  function fillImprove(side) {
    var box = improveBox(), resp = byId("improve-response"), raw = byId("raw-" + side);
    if (!box || !raw) return;
    box.value = raw.value; box.dataset.original = raw.value; resp.value = side;
    byId("improve-label").textContent = "Response " + side + ", improved";
  }
  function openImprove() {
    var box = improveBox(); if (!box) return false;
    var side = improveSide(), resp = byId("improve-response");
    if (side !== "A" && side !== "B") { message("Choose A or B first: the better response is the one to improve."); return true; }
    if (box.disabled || (!improveDirty(box) && resp.value !== side)) fillImprove(side);
    box.disabled = false; resp.disabled = false;
    byId("improve").open = true;
    box.focus(); box.setSelectionRange(box.value.length, box.value.length);
    message(""); say("Improving response " + resp.value);
    return true;
  }
  function improveChoiceChanged() {
    var box = improveBox(); if (!box || box.disabled) return;
    var side = improveSide(), resp = byId("improve-response");
    if (side !== "A" && side !== "B") return;
    if (!improveDirty(box)) fillImprove(side);
    else if (side !== resp.value) message("Your rewrite is of response " + resp.value + ": choose " + resp.value + " again, or clear the rewrite.");
  }
  function setupImprove() {
    var box = improveBox(); if (!box) return;
    var resp = byId("improve-response");
    if (!box.disabled) { var raw = byId("raw-" + resp.value); box.dataset.original = raw ? raw.value : ""; }
    byId("improve").addEventListener("toggle", function (e) { if (e.target.open && box.disabled) openImprove(); });
  }

  // --- everything else ------------------------------------------------------------------------
  function setupLease() {
    clearInterval(leaseTimer);
    var fm = form(); if (!fm || !fm.dataset.leaseSeconds) return;
    var total = parseInt(fm.dataset.leaseSeconds, 10);
    var deadline = Date.now() + total * 1000;
    var warnAt = Math.min(60, Math.max(10, Math.round(total / 5)));
    leaseTimer = setInterval(function () {
      var left = Math.round((deadline - Date.now()) / 1000);
      var el = byId("lease-warning"); if (!el) { clearInterval(leaseTimer); return; }
      if (left > warnAt) return;
      el.hidden = false;
      if (left > 0) {
        el.textContent = "Your hold on this item ends in " + Math.floor(left / 60) + ":" + String(left % 60).padStart(2, "0") + ". Submit or skip soon.";
      } else {
        el.textContent = "Your hold on this item has ended. You can still submit: it counts if the item still needs answers.";
        clearInterval(leaseTimer);
      }
    }, 1000);
  }

  function init() {
    started = performance.now();
    message("");
    setupLease();
    setupRanking();
    setupDemonstration();
    setupImprove();
    var fm = form();
    if (fm) fm.addEventListener("change", function (e) { if (e.target.name === "choice") { syncStrength(); improveChoiceChanged(); } });
  }

  function submitForm() {
    var fm = form(); if (!fm) return;
    var mode = fm.dataset.mode;
    var problem = mode === "pairwise" ? pairwiseProblem() : mode === "rating" ? ratingProblem()
      : mode === "demonstration" ? demonstrationProblem() : "";
    if (problem) { message(problem); say(problem); return; }
    fm.requestSubmit(byId("submit-btn"));
  }

  // Time on item goes with every submit, whichever way it was sent.
  document.addEventListener("submit", function (e) {
    var input = e.target.querySelector && e.target.querySelector('input[name="time_spent_ms"]');
    if (input) input.value = String(Math.round(performance.now() - started));
    var box = e.target.querySelector && e.target.querySelector("#improve-text");
    if (box && !box.disabled && !improveDirty(box)) { // opened but left as it was: nothing to send
      box.disabled = true; byId("improve-response").disabled = true;
    }
  }, true);

  function openDialog(id) {
    var d = byId(id); if (!d) return;
    if (d.open) d.close(); else d.showModal();
  }
  document.addEventListener("click", function (e) {
    var opener = e.target.closest("[data-open]");
    if (opener) openDialog(opener.dataset.open);
  });

  document.addEventListener("keydown", function (e) {
    if (e.defaultPrevented || e.isComposing) return;
    var t = e.target, tag = t.tagName;
    var typing = tag === "TEXTAREA" || tag === "SELECT" || (tag === "INPUT" && ["radio", "checkbox"].indexOf(t.type) < 0);
    if (typing) {
      if (e.key === "Escape") { t.blur(); e.preventDefault(); }
      else if (e.key === "Enter" && (e.ctrlKey || e.metaKey) && form() && form().contains(t)) { e.preventDefault(); submitForm(); }
      else if (e.key === "Enter" && tag === "INPUT" && t.type === "number") { e.preventDefault(); fromInputs(); }
      return;
    }
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (document.querySelector("dialog[open]")) return; // Esc closes it (native)
    var key = e.key.length === 1 ? e.key.toLowerCase() : e.key.toLowerCase();
    if (is(key, "help")) { openDialog("shortcuts"); e.preventDefault(); return; }
    if (is(key, "guidelines")) { openDialog("guidelines"); e.preventDefault(); return; }
    if (is(key, "edit_last")) { var link = byId("edit-last"); if (link) { link.click(); e.preventDefault(); } return; }
    var fm = form(); if (!fm) return;
    if (is(key, "submit")) {
      if (tag === "BUTTON" || tag === "A" || tag === "SUMMARY") return; // Enter on a focused button does what it says
      e.preventDefault(); submitForm(); return;
    }
    if (is(key, "skip")) { var skip = byId("skip-btn"); if (skip) { skip.click(); e.preventDefault(); } return; }
    if (is(key, "comment")) { var box = byId("comment"); if (box) { box.focus(); e.preventDefault(); } return; }
    var mode = fm.dataset.mode;
    if (is(key, "improve") && improveBox()) { openImprove(); e.preventDefault(); return; }
    var handled = mode === "ranking" ? rankingKey(key, e) : mode === "demonstration" ? demonstrationKey(key) : pressKeyed(key);
    if (handled) e.preventDefault();
  });

  document.addEventListener("htmx:afterSettle", function (e) {
    if (!e.detail.target || e.detail.target.id !== "stage") return;
    init();
    var heading = byId("item-heading");
    if (heading && !editor()) heading.focus({ preventScroll: true });
    var notice = document.querySelector("#stage .notice");
    say(notice ? notice.textContent : (heading ? heading.textContent : ""));
  });
  document.addEventListener("htmx:responseError", function () {
    message("The server could not take that just now. Try again; nothing was lost.");
  });
  document.addEventListener("htmx:sendError", function () {
    message("No connection to the server. Try again; nothing was lost.");
  });
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init); else init();
})();
