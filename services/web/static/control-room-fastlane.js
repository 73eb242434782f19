/* TooLoo Control Room: the fast lane's members panel. Builds its own section into the
   placeholder <section id="fastlane-panel">: who is in the fast lane (pinned by an operator,
   automatic because close to readiness, pinned out), and controls to pin a learner in or out or
   drop its pin. Reads GET /api/v1/auto-coach/fast-lane through the gateway every few seconds and
   after each change; changes are POST /api/v1/auto-coach/fast-lane {learners: {add|exclude|remove}}.
   No library, nothing fetched beyond this origin. */
(function () {
  "use strict";

  var PATH = "/api/v1/auto-coach/fast-lane";
  var REFRESH_MS = 3000;
  var root = document.getElementById("fastlane-panel");
  if (!root || !window.ControlRoom) return;

  function el(tag, attrs, textContent) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (textContent !== undefined) node.textContent = textContent;
    return node;
  }

  // ---- the section ------------------------------------------------------------------------
  root.className = "panel panel-fastlane";
  root.setAttribute("aria-labelledby", "h-fastlane-members");
  root.setAttribute("data-testid", "fastlane-panel");
  root.appendChild(el("h2", { id: "h-fastlane-members" }, "Fast-lane members"));
  var summary = el("p", { class: "small", "data-testid": "fastlane-summary" }, "—");
  root.appendChild(summary);

  var form = el("form", { class: "row", "data-testid": "fastlane-pin-form" });
  form.appendChild(el("label", { for: "fastlane-pin-learner" }, "Learner id"));
  var input = el("input", {
    id: "fastlane-pin-learner", type: "text", maxlength: "64", required: "",
    "data-testid": "fastlane-pin-learner",
  });
  form.appendChild(input);
  var buttons = {
    add: el("button", { type: "submit", "data-testid": "fastlane-pin-in" }, "Pin in"),
    exclude: el("button", { type: "button", class: "secondary", "data-testid": "fastlane-pin-out" }, "Pin out"),
    remove: el("button", { type: "button", class: "secondary", "data-testid": "fastlane-unpin" }, "Unpin"),
  };
  Object.keys(buttons).forEach(function (k) { form.appendChild(buttons[k]); });
  root.appendChild(form);

  var result = el("div", { class: "result", role: "status", "aria-live": "polite", "data-testid": "fastlane-pin-result" });
  root.appendChild(result);

  var wrap = el("div", { class: "table-wrap" });
  var table = el("table", { class: "table", "data-testid": "fastlane-members-table" });
  var head = el("thead");
  var headRow = el("tr");
  ["Learner", "Kind", "Until", ""].forEach(function (h) { headRow.appendChild(el("th", { scope: "col" }, h)); });
  head.appendChild(headRow);
  table.appendChild(head);
  var body = el("tbody");
  table.appendChild(body);
  wrap.appendChild(table);
  root.appendChild(wrap);

  // ---- API --------------------------------------------------------------------------------
  // Through the main page's helper: the same token (and its prompt on a 401), a timeout on every
  // call, errors shown beside the control as well as at the top of the page.
  var cr = window.ControlRoom;

  function showResult(kind, message) {
    result.textContent = message;
    result.setAttribute("data-kind", kind);
    result.hidden = false; // the main helper hides its error element after a call that went well
  }

  /** Resolves to the JSON body, or null after the error was shown in the panel. */
  function api(method, payload) {
    return cr.api(method, PATH, payload, { errorEl: result }).then(function (data) {
      if (!data) result.setAttribute("data-kind", "error");
      return data;
    });
  }

  // ---- rendering --------------------------------------------------------------------------
  function time(ms) {
    return typeof ms === "number" ? new Date(ms).toLocaleTimeString("en-GB") : "—";
  }

  function row(learner, kind, until, action) {
    var tr = el("tr", { "data-learner": learner, "data-kind": kind, "data-testid": "fastlane-member" });
    tr.appendChild(el("td", {}, learner));
    tr.appendChild(el("td", { "data-testid": "fastlane-member-kind" }, kind));
    tr.appendChild(el("td", {}, until));
    var cell = el("td");
    if (action) {
      var b = el("button", { type: "button", class: "secondary small" }, action.label);
      b.setAttribute("aria-label", action.label + " " + learner);
      b.addEventListener("click", function () { change(action.op, learner, b); });
      cell.appendChild(b);
    }
    tr.appendChild(cell);
    return tr;
  }

  function render(data) {
    var lane = data.fastLane || {};
    var members = data.members || {};
    summary.textContent = (lane.enabled ? "On" : "Off") + " · weight " + lane.weight + " · " +
      lane.learners + " members: " + lane.pinned + " pinned, " + lane.automatic + " automatic" +
      (lane.auto ? " (close to readiness: not ready, average ≥ " +
        Math.max(0, data.thresholds.minAvgMastery - lane.autoMargin) + ", up to " + lane.autoMax +
        ", for " + lane.windowS + " s each)" : " (automatic rule off)") +
      "; " + lane.excluded + " pinned out";
    body.textContent = "";
    (members.pinned || []).forEach(function (x) {
      body.appendChild(row(x, "pinned", "—", { label: "Unpin", op: "remove" }));
    });
    (members.automatic || []).forEach(function (m) {
      body.appendChild(row(m.learner, "automatic", time(m.until), { label: "Pin out", op: "exclude" }));
    });
    (members.excluded || []).forEach(function (x) {
      body.appendChild(row(x, "pinned out", "—", { label: "Unpin", op: "remove" }));
    });
    if (!body.firstChild) {
      var empty = el("tr");
      empty.appendChild(el("td", { colspan: "4", class: "muted" }, "nobody in the fast lane"));
      body.appendChild(empty);
    }
  }

  function refresh() {
    // Quiet: a poll that fails (the gateway restarting) waits for the next one, unannounced.
    return cr.api("GET", PATH, undefined, { quiet: true, timeoutMs: REFRESH_MS }).then(function (data) {
      if (data) render(data);
    });
  }

  var LABELS = { add: "pinned into the fast lane", exclude: "pinned out of the fast lane", remove: "unpinned" };

  function change(op, learner, button) {
    if (!learner) return;
    var learners = {};
    learners[op] = [learner];
    if (button) button.disabled = true;
    api("POST", { learners: learners }).then(function (data) {
      if (button) button.disabled = false;
      if (!data) return;
      render(data);
      showResult("info", learner + " " + LABELS[op]);
    });
  }

  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    change("add", input.value.trim(), buttons.add);
  });
  buttons.exclude.addEventListener("click", function () {
    if (form.reportValidity()) change("exclude", input.value.trim(), buttons.exclude);
  });
  buttons.remove.addEventListener("click", function () {
    if (form.reportValidity()) change("remove", input.value.trim(), buttons.remove);
  });

  refresh();
  setInterval(refresh, REFRESH_MS);
})();
