/* TooLoo Control Room: the ramp controller panel. Builds its own section into the placeholder
   <section id="ramp-panel">, reads GET /api/v1/system/ramp every two seconds and switches the ramp
   with POST /api/v1/system/ramp (an actor is required: the change is recorded with it). Calls go
   through the main page's window.ControlRoom.api (its token, timeouts and error display); no
   library, nothing fetched beyond this origin. */
(function () {
  "use strict";

  var POLL_MS = 2000;
  // The page's number-input look, for the text inputs too (its stylesheet styles numbers only).
  var FIELD_STYLE = "width: 90px; max-width: 100%; box-sizing: border-box; padding: 5px 7px; "
    + "border-radius: 6px; border: 1px solid var(--line); background: var(--bg); color: var(--text); font: inherit";

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") node.textContent = attrs[k];
      else node.setAttribute(k, attrs[k]);
    });
    (children || []).forEach(function (c) { node.appendChild(c); });
    return node;
  }

  // Through the main page's helper: the same token (and its prompt on a 401), a timeout on every
  // call. It resolves to null once it has shown an error; `errorEl` shows it in this panel too.
  function call(method, path, body, opts) {
    return window.ControlRoom.api(method, path, body, opts);
  }

  function show(id, value) {
    var node = document.getElementById(id);
    if (node) node.textContent = value === null || value === undefined || value === "" ? "—" : String(value);
  }

  function describeAction(a) {
    if (!a) return null;
    var what = a.type.replace("ramp_", "") + " → " + (a.target === undefined ? "" : a.target);
    return what + (a.hold ? " (held)" : "") + " at " + a.at + (a.reason ? ": " + a.reason : "");
  }

  function render(ramp) {
    show("ramp-enabled", ramp.enabled ? "on" : "off");
    show("ramp-stage", ramp.stage === null ? null
      : (ramp.stage + 1) + " of " + ramp.stages.length + " (" + ramp.stage_target + " learners)"
        + (ramp.throttled ? ", throttled" : ""));
    show("ramp-stages", ramp.stages.join(" → "));
    show("ramp-since", ramp.since);
    show("ramp-next", ramp.next_check);
    show("ramp-last", describeAction(ramp.last_action));
  }

  function refresh() {
    // Quiet: the gateway away, the next poll tries again.
    return call("GET", "/api/v1/system/ramp", undefined, { quiet: true, timeoutMs: POLL_MS })
      .then(function (data) { if (data) render(data.ramp); });
  }

  function build(root) {
    var status = el("dl", { "class": "kv" }, [
      el("dt", { text: "Ramp" }), el("dd", { id: "ramp-enabled", "data-testid": "ramp-enabled", text: "—" }),
      el("dt", { text: "Stage" }), el("dd", { id: "ramp-stage", "data-testid": "ramp-stage", text: "—" }),
      el("dt", { text: "Stages" }), el("dd", { id: "ramp-stages", text: "—" }),
      el("dt", { text: "Since" }), el("dd", { id: "ramp-since", text: "—" }),
      el("dt", { text: "Next check" }), el("dd", { id: "ramp-next", text: "—" }),
      el("dt", { text: "Last action" }), el("dd", { id: "ramp-last", "data-testid": "ramp-last", text: "—" }),
    ]);
    var actor = el("input", { id: "ramp-actor", type: "text", maxlength: "100", required: "required",
      placeholder: "your name", style: FIELD_STYLE, "data-testid": "ramp-actor" });
    var stages = el("input", { id: "ramp-stages-input", type: "text", placeholder: "settings' stages",
      style: FIELD_STYLE, "data-testid": "ramp-stages-input" });
    var hold = el("input", { id: "ramp-hold-input", type: "number", min: "1", placeholder: "settings' hold",
      style: FIELD_STYLE, "data-testid": "ramp-hold-input" });
    var on = el("button", { type: "button", id: "ramp-on", "data-testid": "ramp-on", text: "Enable ramp" });
    var off = el("button", { type: "button", id: "ramp-off", "class": "secondary", "data-testid": "ramp-off",
      text: "Disable ramp" });
    var error = el("p", { id: "ramp-error", "class": "small", role: "alert", "data-testid": "ramp-error" });
    var form = el("fieldset", {}, [
      el("legend", { text: "Ramp controller" }),
      el("label", { "for": "ramp-actor", text: "Actor" }), actor,
      el("label", { "for": "ramp-stages-input", text: "Stages (optional)" }), stages,
      el("label", { "for": "ramp-hold-input", text: "Hold, s (optional)" }), hold,
      el("div", { "class": "row", style: "grid-column: 1 / -1" }, [on, off]),
    ]);
    root.appendChild(el("h2", { id: "h-ramp", text: "Ramp controller" }));
    root.appendChild(status);
    root.appendChild(el("div", { "class": "fieldset" }, [form]));
    root.appendChild(error);
    root.setAttribute("aria-labelledby", "h-ramp");
    root.removeAttribute("aria-label");
    root.className = "panel panel-ramp"; // the placeholder may be a bare slot
    root.setAttribute("data-testid", "ramp-panel");

    function send(enabled, button) {
      var body = { enabled: enabled, actor: actor.value.trim() };
      if (enabled && stages.value.trim()) {
        body.stages = stages.value.split(",").map(function (s) { return Number(s.trim()); });
      }
      if (enabled && hold.value.trim()) body.hold_s = [Number(hold.value)];
      error.textContent = "";
      button.disabled = true;
      call("POST", "/api/v1/system/ramp", body, { errorEl: error }).then(function (data) {
        if (data) render(data.ramp);
        button.disabled = false;
      });
    }
    on.addEventListener("click", function () { send(true, on); });
    off.addEventListener("click", function () { send(false, off); });
  }

  function start() {
    var root = document.getElementById("ramp-panel");
    if (!root || !window.ControlRoom) return;
    build(root);
    refresh();
    setInterval(refresh, POLL_MS); // bounded by the page's life
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
