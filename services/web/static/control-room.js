/* TooLoo Control Room: live panels from the SSE stream, controls through the gateway.
   No build step, no library, nothing fetched from the network beyond this origin. */
(function () {
  "use strict";

  var TOKEN_KEY = "tooloo.apiToken";
  var HISTORY_MAX = 600; // points (one a second): ten minutes of chart
  var CHART_WINDOW_S = 300;
  var history = [];
  var pendingRetry = null;
  var formsPrimed = { fastLane: false, scale: false };
  var ACTOR_KEY = "tooloo.actor"; // who signs off or pauses, remembered for the tab's session
  var lastGates = null; // the latest snapshot's gates: the sign-off form's choices
  var sealEvents = {}; // gate id -> its newest `sealed` or `reopened` entry seen in the record
  var lastPause = null; // the newest full_pause / full_resume entry seen in the record
  var snapshotListeners = [];

  function $(id) { return document.getElementById(id); }

  function text(id, value) {
    var el = $(id);
    if (el) el.textContent = value === null || value === undefined || value === "" ? "—" : String(value);
  }

  function num(value, digits) {
    if (value === null || value === undefined || typeof value !== "number" || !isFinite(value)) return "—";
    if (digits === undefined) digits = 1;
    return Number.isInteger(value) ? value.toLocaleString("en-US") : value.toFixed(digits);
  }

  function pct(value, digits) { return value === null || value === undefined ? "—" : num(value, digits === undefined ? 3 : digits) + " %"; }
  function ms(value) { return value === null || value === undefined ? "—" : num(value, 1) + " ms"; }

  function duration(seconds) {
    if (typeof seconds !== "number" || !isFinite(seconds)) return "—";
    if (seconds < 60) return Math.round(seconds) + "s";
    if (seconds < 3600) return Math.floor(seconds / 60) + "m " + Math.round(seconds % 60) + "s";
    return Math.floor(seconds / 3600) + "h " + Math.floor((seconds % 3600) / 60) + "m";
  }

  // ---- operator messages ------------------------------------------------------------------
  var messageTimer = null;
  function showMessage(kind, message) {
    var el = $("message");
    el.className = "message " + kind;
    el.textContent = message;
    el.hidden = false;
    if (messageTimer) clearTimeout(messageTimer);
    // Errors stay until the next action; confirmations fade.
    if (kind !== "error") messageTimer = setTimeout(function () { el.hidden = true; }, 6000);
  }

  function showError(code, message, status) {
    showMessage("error", "Error" + (status ? " " + status : "") + " — " + code + ": " + message);
  }

  // ---- API calls --------------------------------------------------------------------------
  function token() {
    try { return sessionStorage.getItem(TOKEN_KEY); } catch (e) { return null; }
  }

  function askForToken(retry) {
    pendingRetry = retry;
    var form = $("token-form");
    form.hidden = false;
    $("token-input").value = "";
    $("token-input").focus();
    showError("unauthorized", token()
      ? "the saved API token was refused; enter the right one above"
      : "this call needs the fleet's API token; enter it above and it is retried", 401);
  }

  // Every call is bounded: a gateway that never answers becomes an error the operator sees.
  // The full pause waits for the coach and meta in turn (3 s each at most), hence its own bound.
  var CALL_TIMEOUT_MS = 10000;

  function formatDetails(details) {
    if (Array.isArray(details) && details.length) {
      return " (" + details.map(function (d) {
        return d && typeof d === "object" ? (d.loc || []).join(".") + ": " + d.msg : String(d);
      }).join("; ") + ")";
    }
    if (details && typeof details === "object") {
      // Parts of the fleet that did not follow (the full pause's 502): name each failed one.
      var failed = Object.keys(details).filter(function (k) {
        return details[k] && typeof details[k] === "object" && details[k].ok === false;
      });
      if (failed.length) {
        return " (" + failed.map(function (k) { return k + ": " + (details[k].error || "failed"); }).join("; ") + ")";
      }
    }
    return "";
  }

  /** POST/GET through the gateway; resolves to the JSON body, or null after showing the error.
      opts.timeoutMs bounds the call; opts.errorEl also shows the error beside the control that
      made the call; opts.quiet shows it only there (background refreshes). */
  function api(method, path, body, opts) {
    opts = opts || {};
    var headers = { "Accept": "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    var saved = token();
    if (saved) headers["Authorization"] = "Bearer " + saved;
    var timeoutMs = opts.timeoutMs || CALL_TIMEOUT_MS;
    var controller = typeof AbortController === "function" ? new AbortController() : null;
    var timer = controller ? setTimeout(function () { controller.abort(); }, timeoutMs) : null;
    function fail(code, message, status) {
      if (opts.errorEl) {
        opts.errorEl.textContent = "Error" + (status ? " " + status : "") + " — " + code + ": " + message;
        opts.errorEl.hidden = false;
      }
      if (!opts.quiet) showError(code, message, status);
      return null;
    }
    function failed(e) {
      if (timer) clearTimeout(timer);
      if (e && e.name === "AbortError") return fail("timeout", "the gateway did not answer within " + Math.round(timeoutMs / 1000) + " s");
      return fail("network_error", "the gateway did not answer (" + (e && e.message) + ")");
    }
    return fetch(path, {
      method: method,
      headers: headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: controller ? controller.signal : undefined,
    }).then(function (resp) {
      return resp.text().then(function (raw) {
        if (timer) clearTimeout(timer);
        var data = null;
        try { data = raw ? JSON.parse(raw) : null; } catch (e) { data = null; }
        if (resp.status === 401 && !opts.quiet) {
          return new Promise(function (resolve) {
            askForToken(function () { resolve(api(method, path, body, opts)); });
          });
        }
        if (!resp.ok || !data || data.ok === false) {
          var err = (data && data.error) || {};
          return fail(err.code || "http_" + resp.status, (err.message || resp.statusText || "request failed") + formatDetails(err.details), resp.status);
        }
        if (opts.errorEl) opts.errorEl.hidden = true;
        return data;
      }, failed);
    }, failed);
  }

  function withButton(button, promise) {
    if (button) button.disabled = true;
    return promise.then(function (v) { if (button) button.disabled = false; return v; },
      function (e) { if (button) button.disabled = false; throw e; });
  }

  function intValue(id) {
    var raw = $(id).value.trim();
    // Sent as typed: the server validates (and its 422 is shown), the page does not guess.
    return raw === "" ? null : Number(raw);
  }

  // ---- controls ---------------------------------------------------------------------------
  function boostResult(label, data, field) {
    var ids = (data.results || []).map(function (r) { return r.round; }).filter(function (r) { return r !== undefined && r !== null; });
    var el = $("boost-result");
    el.textContent = "";
    var strong = document.createElement("strong");
    strong.textContent = label + ": " + (data[field] !== undefined ? data[field] : ids.length) + " rounds — ids ";
    el.appendChild(strong);
    var code = document.createElement("code");
    code.setAttribute("data-testid", "boost-round-ids");
    code.textContent = ids.join(", ");
    el.appendChild(code);
  }

  function bindControls() {
    $("boost-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      withButton($("boost-button"), api("POST", "/api/v1/auto-coach/boost", { rounds: intValue("boost-rounds") }))
        .then(function (data) { if (data) { boostResult("Boosted", data, "boosted"); showMessage("info", "Boost ran " + data.boosted + " rounds"); } });
    });
    $("hyper-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      withButton($("hyper-button"), api("POST", "/api/v1/auto-coach/hyper-boost", { rounds: intValue("hyper-rounds") }))
        .then(function (data) { if (data) { boostResult("Hyper-boosted", data, "hyperBoosted"); showMessage("info", "Hyper-boost ran " + data.hyperBoosted + " rounds"); } });
    });
    $("coach-start").addEventListener("click", function () {
      withButton($("coach-start"), api("POST", "/api/v1/auto-coach/start", {}))
        .then(function (data) { if (data) { if (data.status) renderCoach(data.status); showMessage("info", "Coach started"); } });
    });
    $("coach-stop").addEventListener("click", function () {
      withButton($("coach-stop"), api("POST", "/api/v1/auto-coach/stop", {}))
        .then(function (data) { if (data) { if (data.status) renderCoach(data.status); showMessage("info", "Coach stopped"); } });
    });
    $("fastlane-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      var body = { enable: $("fastlane-enable").checked, weight: intValue("fastlane-weight"), intervalMs: intValue("fastlane-interval") };
      withButton($("fastlane-apply"), api("POST", "/api/v1/auto-coach/fast-lane", body)).then(function (data) {
        if (!data) return;
        if (data.fastLane) renderFastLane(data.fastLane);
        showMessage("info", "Fast lane " + (body.enable ? "enabled" : "disabled") + ": weight " + body.weight + ", interval " + body.intervalMs + " ms");
      });
    });
    $("scale-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      var body = { learners: intValue("scale-input"), hold: $("scale-hold-input").checked };
      withButton($("scale-apply"), api("POST", "/api/v1/system/scale", body)).then(function (data) {
        if (data) { renderScale(data.scale); showMessage("info", "Scale target " + data.scale.target + (data.scale.hold ? " (hold)" : "")); }
      });
    });
    $("pause-onboarding").addEventListener("click", function () {
      withButton($("pause-onboarding"), api("POST", "/api/v1/system/pause-onboarding", {})).then(function (data) {
        if (data) { renderScale(data.scale); showMessage("info", "Onboarding paused"); }
      });
    });
    $("resume-onboarding").addEventListener("click", function () {
      withButton($("resume-onboarding"), api("POST", "/api/v1/system/resume-onboarding", {})).then(function (data) {
        if (data) { renderScale(data.scale); showMessage("info", "Onboarding resumed"); }
      });
    });
    $("token-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      var value = $("token-input").value.trim();
      if (!value) return;
      try { sessionStorage.setItem(TOKEN_KEY, value); } catch (e) { /* private mode: kept for this call only */ }
      $("token-form").hidden = true;
      $("message").hidden = true;
      var retry = pendingRetry;
      pendingRetry = null;
      if (retry) retry();
    });
  }

  // ---- rendering --------------------------------------------------------------------------
  function cell(row, value, cls) {
    var td = document.createElement("td");
    td.textContent = value === null || value === undefined ? "—" : String(value);
    if (cls) td.className = cls;
    row.appendChild(td);
  }

  function badge(value, good, bad) {
    var span = document.createElement("span");
    span.className = "badge " + (good ? "ok" : bad ? "bad" : "warn");
    span.textContent = value;
    return span;
  }

  function renderProcesses(fleet) {
    var body = $("processes-body");
    body.textContent = "";
    var health = fleet.health || {};
    var rows = [];
    if (Array.isArray(fleet.processes) && fleet.processes.length) {
      rows = fleet.processes.map(function (p) {
        return { name: p.name, state: p.state, healthy: p.healthy, restarts: p.restarts, uptime: p.uptime_s, pid: p.pid };
      });
      $("processes-note").textContent = "From the orchestrator's process table" + (fleet.orchestrator && fleet.orchestrator.mode ? " (" + fleet.orchestrator.mode + " mode)" : "") + ".";
    } else {
      rows = Object.keys(health).map(function (name) {
        var h = health[name];
        return { name: name, state: h.up ? "up" : "down", healthy: h.up, restarts: null, uptime: h.uptime_s, pid: null };
      });
      $("processes-note").textContent = "Orchestrator: " + (fleet.error ? fleet.error.code + " — " + fleet.error.message : "no process table") + "; health probed by the gateway.";
    }
    rows.forEach(function (r) {
      var tr = document.createElement("tr");
      tr.setAttribute("data-service", r.name);
      cell(tr, r.name);
      var st = document.createElement("td");
      st.appendChild(badge(r.state || "—", r.state === "running" || r.state === "up", r.state === "failed" || r.state === "down" || r.state === "exited"));
      tr.appendChild(st);
      var hh = document.createElement("td");
      hh.appendChild(badge(r.healthy ? "healthy" : "unhealthy", r.healthy === true, r.healthy === false));
      tr.appendChild(hh);
      cell(tr, r.restarts);
      cell(tr, duration(r.uptime));
      cell(tr, r.pid);
      body.appendChild(tr);
    });
    if (!rows.length) {
      var tr = document.createElement("tr");
      cell(tr, "no data");
      body.appendChild(tr);
    }
    text("fleet-phase", "phase: " + (fleet.phase || (fleet.error ? "no orchestrator" : "—")));
    var phaseEl = $("fleet-phase");
    phaseEl.className = "pill " + (fleet.phase === "armed" ? "ok" : fleet.phase === "degraded" ? "bad" : "warn");
  }

  function renderFastLane(fl) {
    if (!fl) return;
    text("coach-fastlane", fl.enabled ? "enabled" + (typeof fl.learners === "number" ? " (" + fl.learners + " learners)" : "") : "disabled");
    text("coach-fastlane-weight", fl.weight);
    text("coach-fastlane-interval", fl.intervalMs);
    if (!formsPrimed.fastLane) {
      formsPrimed.fastLane = true;
      $("fastlane-enable").checked = !!fl.enabled;
      if (fl.weight) $("fastlane-weight").value = fl.weight;
      if (fl.intervalMs) $("fastlane-interval").value = fl.intervalMs;
    }
  }

  function renderCoach(c) {
    if (!c || c.error) {
      text("coach-active", c && c.error ? "unavailable — " + c.error.message : "—");
      return;
    }
    var active = $("coach-active");
    active.textContent = "";
    active.appendChild(badge(c.active ? "active" : "stopped", c.active, !c.active));
    // Each coach replica coaches the shards it holds; the one answering through the gateway may hold none.
    var owned = c.replica && c.replica.ownedShards;
    if (owned && c.shards) active.appendChild(document.createTextNode(" · replica " + c.replica.instance + " coaches " + owned.length + "/" + c.shards + " shards"));
    var tput = c.throughput && typeof c.throughput.roundsPerMin === "number" ? c.throughput.roundsPerMin : c.throughput_rounds_per_min;
    text("coach-throughput", num(tput, 0));
    text("coach-rounds", num(c.roundsRun, 0));
    text("coach-last-action", c.lastAction);
    renderFastLane(c.fastLane);
    text("coach-needing", num(c.learnersNeedingCoaching, 0));
    text("coach-coverage", typeof c.coverage === "number" ? num(c.coverage * 100, 1) + " %" : "—");
    var d = c.metaTrigger && c.metaTrigger.delayMs ? c.metaTrigger.delayMs : null;
    text("coach-meta-delay", d ? "p50 " + ms(d.p50) + " · p99 " + ms(d.p99) + " (" + (c.metaTrigger.count || 0) + " triggers)" : "—");
  }

  function renderScale(s) {
    if (!s || s.error) return;
    text("scale-learners", num(s.learners, 0));
    text("scale-target", s.target === null ? "not set" : num(s.target, 0));
    text("scale-hold", s.hold ? "held" : "no");
    var paused = $("scale-paused");
    paused.textContent = "";
    paused.appendChild(badge(s.paused ? "paused" : "running", !s.paused, s.paused));
    if (!formsPrimed.scale && s.target !== null) {
      formsPrimed.scale = true;
      $("scale-input").value = s.target;
      $("scale-hold-input").checked = !!s.hold;
    }
  }

  function renderMetrics(m) {
    if (!m || m.error) {
      ["lat-p95", "lat-p99", "error-rate", "uptime", "rpm", "meta-p50"].forEach(function (id) { text(id, "—"); });
      return;
    }
    var lat = m.round_latency_ms || {};
    text("lat-p95", ms(lat.p95));
    text("lat-p99", ms(lat.p99));
    text("error-rate", pct(m.error_rate_pct));
    text("uptime", pct(m.uptime_pct));
    text("rpm", num(m.rounds_per_min, 0));
    text("meta-p50", ms((m.meta_trigger_delay_ms || {}).p50));
    text("learners-regions", typeof m.regions === "number" ? m.regions : "—");
  }

  function renderMeta(meta) {
    var list = $("meta-phases");
    var metrics = $("meta-metrics");
    list.textContent = "";
    metrics.textContent = "";
    if (!meta || meta.error) {
      text("meta-summary", meta && meta.error ? "unavailable — " + meta.error.message : "—");
      return;
    }
    var s = meta.status || meta;
    var phases = s.phases || {};
    var keys = Object.keys(phases).sort();
    var done = keys.filter(function (k) { return phases[k].status === "completed"; }).length;
    text("meta-summary", (s.started ? "started" : "not started") + " · " + done + "/" + keys.length + " phases completed" +
      (s.paused ? " · paused" : "") + (s.nextRecommendedPhase ? " · next: phase " + s.nextRecommendedPhase : ""));
    keys.forEach(function (k) {
      var li = document.createElement("li");
      li.textContent = (phases[k].name || "phase " + k) + " — ";
      li.appendChild(badge(phases[k].status || "—", phases[k].status === "completed", false));
      list.appendChild(li);
    });
    var cur = (s.metrics && s.metrics.current) || {};
    Object.keys(cur).forEach(function (k) {
      var dt = document.createElement("dt");
      dt.textContent = k;
      var dd = document.createElement("dd");
      dd.textContent = num(cur[k], 3);
      metrics.appendChild(dt);
      metrics.appendChild(dd);
    });
  }

  function verdictClass(v) {
    if (v === "GO" || v === "PASS") return "ok";
    if (v === "FAIL" || v === "NO-GO") return "bad";
    return "warn";
  }

  function when(iso) {
    // "2026-12-03T17:50:12.345Z" -> "2026-12-03 17:50:12Z": UTC, as the record stores it.
    return typeof iso === "string" ? iso.replace("T", " ").replace(/\.\d+Z$/, "Z") : "—";
  }

  function unitText(value, unit) {
    var v = typeof value === "number" ? value.toLocaleString("en-US", { maximumFractionDigits: 6 }) : String(value);
    return unit === "$" ? "$" + v : v + (unit ? " " + unit : "");
  }

  function needsText(c) {
    var t = c.threshold;
    return Array.isArray(t) ? "between " + unitText(t[0], c.unit) + " and " + unitText(t[1], c.unit)
      : (c.comparator || "") + " " + unitText(t, c.unit);
  }

  function renderRollout(g) {
    text("current-phase", g.current_phase);
    text("active-gate", g.active_gate || "none (every gate passed)");
    var next = g.next_decision;
    var el = $("next-decision");
    el.textContent = "";
    if (!next) {
      el.textContent = g.active_gate ? "—" : "none: the rollout is complete";
      return;
    }
    var strong = document.createElement("strong");
    strong.textContent = next.gate;
    el.appendChild(strong);
    // `at`: when the gate's period completes if it keeps passing; else the gate's calendar date.
    el.appendChild(document.createTextNode(" · " + (next.at ? "at " + when(next.at) : next.when) +
      (next.verdict ? " · now " + next.verdict : "") + " · on " + next.on));
  }

  function recordBadges(gate, head) {
    var rec = gate.record || {};
    if (rec.sealed) {
      var sealed = badge(rec.regressed ? "sealed · regressed" : "sealed", !rec.regressed, rec.regressed);
      sealed.setAttribute("data-testid", "gate-sealed");
      sealed.title = "Passed for good at " + when(rec.sealed_at) + (rec.regressed ? "; its live verdict has regressed since" : "");
      head.appendChild(sealed);
    } else if (sealEvents[gate.id] && sealEvents[gate.id].type === "reopened") {
      var reopened = badge("re-opened", false, false);
      reopened.setAttribute("data-testid", "gate-reopened");
      reopened.title = "Re-opened by " + sealEvents[gate.id].actor + " at " + when(sealEvents[gate.id].at);
      head.appendChild(reopened);
    }
  }

  function periodText(rec) {
    if (!rec || rec.sealed) return rec && rec.sealed ? "sealed " + when(rec.sealed_at) : "";
    var parts = [];
    if (rec.hold) parts.push("period: " + rec.hold);
    if (rec.passing_for_s) parts.push("passing for " + duration(rec.passing_for_s));
    if (rec.seals_at) parts.push("seals at " + when(rec.seals_at));
    return parts.join(" · ");
  }

  function renderSignoffs(gate, li) {
    var crits = gate.signoffs || [];
    if (!crits.length) return;
    var ul = document.createElement("ul");
    ul.className = "signoffs";
    crits.forEach(function (c) {
      var item = document.createElement("li");
      item.setAttribute("data-testid", "gate-signoff");
      item.setAttribute("data-criterion", c.id);
      var s = c.signed_off;
      var name = document.createElement("span");
      name.textContent = c.name + ": ";
      item.appendChild(name);
      if (s) {
        item.appendChild(badge(unitText(s.value, c.unit), c.status === "pass", c.status === "fail"));
        item.appendChild(document.createTextNode(" signed off by " + s.actor + " at " + when(s.at) + (s.note ? " — " + s.note : "")));
      } else {
        item.appendChild(document.createTextNode("not signed off (needs " + needsText(c) + ")"));
        item.className = "muted";
      }
      ul.appendChild(item);
    });
    li.appendChild(ul);
  }

  function renderGates(g) {
    var list = $("gates-list");
    list.textContent = "";
    if (!g) return;
    lastGates = g;
    renderRollout(g);
    var passed = (g.gates_passed || []).length;
    text("gates-summary", "passed " + passed + " of " + (g.gates || []).length +
      (g.metrics_available ? "" : " · " + (g.reason || "metrics unavailable")));
    (g.record_alerts || []).forEach(function (alert) {
      var li = document.createElement("li");
      li.className = "gate-reason bad";
      li.setAttribute("data-testid", "gate-record-alert");
      li.textContent = alert.message;
      list.appendChild(li);
    });
    var esc = $("escalation");
    esc.textContent = "escalation: " + (g.escalation_level || "—");
    esc.className = "pill " + (g.escalation_level === "normal" ? "ok" : g.escalation_level === "red" ? "bad" : "warn");
    (g.gates || []).forEach(function (gate) {
      var li = document.createElement("li");
      li.setAttribute("data-gate", gate.id);
      if (gate.id === g.active_gate) li.className = "active";
      var head = document.createElement("div");
      head.className = "gate-head";
      var name = document.createElement("span");
      name.className = "gate-name";
      name.textContent = "Gate " + gate.number + " · " + gate.name;
      head.appendChild(name);
      var badges = document.createElement("span");
      badges.className = "gate-badges";
      var b = badge(gate.verdict, false, false);
      b.className = "badge " + verdictClass(gate.verdict);
      b.setAttribute("data-testid", "gate-verdict");
      badges.appendChild(b);
      recordBadges(gate, badges);
      head.appendChild(badges);
      li.appendChild(head);
      var reason = document.createElement("div");
      reason.className = "gate-reason";
      reason.textContent = gate.decision + (gate.reason ? " — " + gate.reason : "");
      li.appendChild(reason);
      var period = periodText(gate.record);
      if (period) {
        var p = document.createElement("div");
        p.className = "gate-reason";
        p.textContent = period;
        li.appendChild(p);
      }
      renderSignoffs(gate, li);
      list.appendChild(li);
    });
    fillGateChoices(g.gates || []);
    fillSealed(g.gates || []);
    showNeeds(); // the chosen criterion's current sign-off, as the fleet now has it
  }

  // ---- sign-offs ----------------------------------------------------------------------------
  var gateChoices = ""; // the gates the selects were filled from; refilled only when they change

  function option(value, label) {
    var o = document.createElement("option");
    o.value = value;
    o.textContent = label;
    return o;
  }

  function fillGateChoices(gates) {
    var key = gates.map(function (gate) {
      return gate.id + ":" + (gate.signoffs || []).map(function (c) { return c.id; }).join(",");
    }).join("|");
    if (key === gateChoices) return;
    gateChoices = key;
    var sel = $("signoff-gate");
    var keep = sel.value;
    sel.textContent = "";
    gates.filter(function (gate) { return (gate.signoffs || []).length; }).forEach(function (gate) {
      sel.appendChild(option(gate.id, "Gate " + gate.number + " · " + gate.name));
    });
    if (keep && Array.prototype.some.call(sel.options, function (o) { return o.value === keep; })) sel.value = keep;
    fillCriteria();
    var filter = $("record-gate");
    var keepFilter = filter.value;
    filter.textContent = "";
    filter.appendChild(option("", "all gates"));
    gates.forEach(function (gate) { filter.appendChild(option(gate.id, "Gate " + gate.number + " · " + gate.name)); });
    filter.value = keepFilter;
  }

  function signableOf(gateId) {
    var gate = ((lastGates && lastGates.gates) || []).filter(function (x) { return x.id === gateId; })[0];
    return (gate && gate.signoffs) || [];
  }

  function fillCriteria() {
    var sel = $("signoff-criterion");
    var keep = sel.value;
    sel.textContent = "";
    signableOf($("signoff-gate").value).forEach(function (c) {
      sel.appendChild(option(c.id, c.name + " (" + c.unit + ")"));
    });
    if (keep && Array.prototype.some.call(sel.options, function (o) { return o.value === keep; })) sel.value = keep;
    showNeeds();
  }

  function showNeeds() {
    var id = $("signoff-criterion").value;
    var c = signableOf($("signoff-gate").value).filter(function (x) { return x.id === id; })[0];
    text("signoff-needs", c ? "passes when " + needsText(c) + (c.signed_off ? "; now " + unitText(c.signed_off.value, c.unit) + " by " + c.signed_off.actor : "; not signed off yet") : "");
  }

  function rememberActor(actor) {
    try { if (actor && actor.trim()) sessionStorage.setItem(ACTOR_KEY, actor.trim()); } catch (e) { /* private mode */ }
  }

  function savedActor() {
    try { return sessionStorage.getItem(ACTOR_KEY) || ""; } catch (e) { return ""; }
  }

  function submitSignoff(ev) {
    ev.preventDefault();
    var gate = $("signoff-gate").value;
    var raw = $("signoff-value").value.trim();
    var note = $("signoff-note").value.trim();
    // Sent as typed (a blank or non-number value as null): the server validates, the page shows why.
    var body = { criterion: $("signoff-criterion").value, value: raw === "" ? null : Number(raw), actor: $("signoff-actor").value };
    if (note) body.note = note;
    var err = $("signoff-error");
    err.hidden = true;
    err.textContent = "";
    $("signoff-result").textContent = "";
    if (!gate) {
      err.textContent = "No gate to sign off: waiting for the gates from the fleet";
      err.hidden = false;
      return;
    }
    withButton($("signoff-submit"), api("POST", "/api/v1/system/gates/" + encodeURIComponent(gate) + "/signoff", body, { errorEl: $("signoff-error") }))
      .then(function (data) {
        if (!data) return;
        rememberActor(body.actor);
        var s = data.signoff || {};
        $("signoff-result").textContent = "Recorded: " + data.gate + " · " + data.criterion + " = " + s.value +
          " by " + s.actor + " at " + when(s.at) + " → " + data.status;
        showMessage("info", "Sign-off recorded for " + data.criterion + " (" + data.gate + ")");
        loadHistory(true);
      });
  }

  // ---- the full pause (L4) and the emergency pause (L3) ------------------------------------
  var pauseSeen = { onboarding: null, coach: null, meta: null };

  function stateBadge(id, running, runningText, stoppedText) {
    var el = $(id);
    el.textContent = "";
    if (running === null) { el.textContent = "unknown"; return; }
    el.appendChild(badge(running ? runningText : stoppedText, running, !running));
  }

  function renderPause(snap) {
    var scale = snap.scale && !snap.scale.error ? snap.scale : null;
    var coach = snap.coach && !snap.coach.error ? snap.coach : null;
    var meta = snap.meta && !snap.meta.error ? (snap.meta.status || snap.meta) : null;
    pauseSeen = {
      onboarding: scale ? !!scale.paused : null,
      coach: coach ? !coach.active : null,
      meta: meta && typeof meta.paused === "boolean" ? meta.paused : null,
    };
    stateBadge("pause-onboarding-state", pauseSeen.onboarding === null ? null : !pauseSeen.onboarding, "running", "paused" + (scale && scale.hold ? " · scale held" : ""));
    stateBadge("pause-coach-state", pauseSeen.coach === null ? null : !pauseSeen.coach, "active", "stopped");
    stateBadge("pause-meta-state", pauseSeen.meta === null ? null : !pauseSeen.meta, "running", "paused");
    var level, cls, pill;
    var o = pauseSeen.onboarding, c = pauseSeen.coach, m = pauseSeen.meta;
    if (o === null || c === null || m === null) {
      level = "unknown: a part of the fleet did not answer"; cls = "warn"; pill = "?";
    } else if (o && c && m) {
      level = "L4 full pause: onboarding, coach and meta stopped"; cls = "bad"; pill = "L4 full";
    } else if (o && !c && !m) {
      // The emergency pause stops new learners only; coaching and meta carry on.
      level = "L3 emergency pause: onboarding paused" + (scale.hold ? ", scale held" : "") + "; coach and meta running"; cls = "warn"; pill = "L3 emergency";
    } else if (!o && !m) {
      level = "running: no pause" + (c ? " (the coach is stopped)" : ""); cls = c ? "warn" : "ok"; pill = "none";
    } else {
      var stopped = [o ? "onboarding" : null, c ? "coach" : null, m ? "meta" : null].filter(Boolean);
      level = "partial: " + stopped.join(", ") + " stopped (Pause all or Resume all makes it whole)"; cls = "warn"; pill = "partial";
    }
    var el = $("pause-level");
    // A live region: rewritten only when it changes, so a screen reader announces changes only.
    if (el.textContent !== level) el.textContent = level;
    el.className = "pause-level " + cls;
    var p = $("pause-pill");
    p.textContent = "pause: " + pill;
    p.className = "pill " + cls;
  }

  function renderLastPause() {
    var e = lastPause;
    text("pause-last", e ? (e.type === "full_pause" ? "paused" : "resumed") + " by " + e.actor + " at " + when(e.at) + (e.note ? " — " + e.note : "") : "none in the loaded record");
  }

  // ---- confirmed actions: Pause all, Resume all, re-open a sealed gate ---------------------
  var confirming = null; // {mode, gate}: what the open confirmation is for

  var CONFIRM = {
    pause: {
      title: "Pause all?",
      text: "Rollback level 4: onboarding, the coach and meta stop together, and stay stopped through restarts until Resume all. Training still serves rounds its clients ask for.",
      ok: "Confirm pause all", cls: "danger",
    },
    resume: { title: "Resume all?", text: "Meta, the coach and onboarding start again together.", ok: "Confirm resume all", cls: "" },
    reopen: {
      title: "Re-open the gate?",
      text: "The sealed gate is judged again from now: it passes again only after its whole period.",
      ok: "Confirm re-open", cls: "danger",
    },
  };

  function openConfirm(mode, gate) {
    var c = CONFIRM[mode];
    confirming = { mode: mode, gate: gate || null };
    text("confirm-title", mode === "reopen" ? "Re-open " + gate + "?" : c.title);
    text("confirm-text", c.text);
    $("confirm-ok").textContent = c.ok;
    $("confirm-ok").className = c.cls;
    if (!$("confirm-actor").value) $("confirm-actor").value = savedActor();
    $("confirm-note").value = "";
    var dialog = $("confirm-dialog");
    if (typeof dialog.showModal === "function") dialog.showModal(); else dialog.setAttribute("open", "");
    $("confirm-actor").focus();
  }

  function closeConfirm() {
    var dialog = $("confirm-dialog");
    if (typeof dialog.close === "function") dialog.close(); else dialog.removeAttribute("open");
    confirming = null;
  }

  function submitConfirm(ev) {
    ev.preventDefault();
    var actorEl = $("confirm-actor");
    if (!actorEl.value.trim()) {
      actorEl.setCustomValidity("Say who does this: it is recorded with the action");
      actorEl.reportValidity();
      return;
    }
    actorEl.setCustomValidity("");
    var what = confirming;
    if (!what) return;
    var body = { actor: actorEl.value.trim() };
    var note = $("confirm-note").value.trim();
    if (note) body.note = note;
    closeConfirm();
    rememberActor(body.actor);
    if (what.mode === "reopen") {
      withButton($("reopen-button"), api("POST", "/api/v1/system/gates/" + encodeURIComponent(what.gate) + "/reopen", body)).then(function (data) {
        loadHistory(true);
        if (!data) return;
        if (data.reopened) sealEvents[what.gate] = data.reopened;
        showMessage("info", what.gate + " re-opened by " + body.actor + ": judged again from now");
      });
      return;
    }
    var pause = what.mode === "pause";
    withButton(pause ? $("pause-all") : $("resume-all"), api("POST", pause ? "/api/v1/system/pause" : "/api/v1/system/resume", body, { timeoutMs: 20000 })).then(function (data) {
      loadHistory(true);
      if (!data) return;
      if (data.recorded) { lastPause = data.recorded; renderLastPause(); }
      showMessage("info", (pause ? "Full pause (L4)" : "Resumed all") + " by " + body.actor + ": onboarding, coach and meta");
    });
  }

  var sealedChoices = null;

  function fillSealed(gates) {
    var sealed = gates.filter(function (gate) { return gate.record && gate.record.sealed; });
    var key = sealed.map(function (gate) { return gate.id; }).join(",");
    if (key === sealedChoices) return;
    sealedChoices = key;
    var sel = $("reopen-gate");
    var keep = sel.value;
    sel.textContent = "";
    sealed.forEach(function (gate) { sel.appendChild(option(gate.id, "Gate " + gate.number + " · " + gate.name)); });
    if (keep && sealed.some(function (gate) { return gate.id === keep; })) sel.value = keep;
    $("reopen-form").hidden = !sealed.length;
  }

  // ---- the decision record ------------------------------------------------------------------
  var HISTORY_PAGE = 25;
  var HISTORY_LIMIT_MAX = 1000; // the API's own bound on ?limit=
  var HISTORY_REFRESH_MS = 5000;
  var historyLimit = HISTORY_PAGE;
  var historyLoading = false;
  var historyAgain = false;
  var historyAt = 0;

  function partsText(parts) {
    if (!parts) return "";
    return Object.keys(parts).map(function (k) { return k + (parts[k] && parts[k].ok ? " ok" : " failed" + (parts[k] && parts[k].error ? " (" + parts[k].error + ")" : "")); }).join(", ");
  }

  function entryText(e) {
    var gate = e.gate ? e.gate + ": " : "";
    var by = e.actor ? " by " + e.actor : "";
    var note = e.note ? " — " + e.note : "";
    switch (e.type) {
      case "verdict": return gate + (e.from ? e.from + " → " : "first verdict ") + e.to + (e.reason ? " — " + e.reason : "");
      case "gap": return gate + "no evaluation for " + duration(e.gap_s) + ": its period restarts (" + e.verdict + ")";
      case "sealed": return gate + "sealed (passed for good), " + e.verdict + " held " + duration(e.held_s);
      case "regressed": return gate + "regressed to " + e.verdict + " after its seal" + (e.reason ? " — " + e.reason : "");
      case "recovered": return gate + "passes again (" + e.verdict + ")";
      case "reopened": return gate + "re-opened" + by + note;
      case "signoff": return gate + e.criterion + " = " + e.value + " signed off" + by + note;
      case "full_pause": return "Full pause (L4)" + by + note + " · " + partsText(e.parts);
      case "full_resume": return "Resumed all" + by + note + " · " + partsText(e.parts);
      default:
        // Entries of other kinds (added later): their simple fields, as recorded.
        return gate + Object.keys(e).filter(function (k) {
          return ["type", "gate", "at", "ms"].indexOf(k) < 0 && e[k] !== null && typeof e[k] !== "object";
        }).map(function (k) { return k + " " + e[k]; }).join(", ");
    }
  }

  function entryClass(e) {
    if (e.type === "sealed" || e.type === "recovered" || e.type === "full_resume") return "ok";
    if (e.type === "regressed" || e.type === "full_pause") return "bad";
    if (e.type === "verdict") return verdictClass(e.to);
    return "";
  }

  function noteEvents(entries) {
    // The newest seal/re-open of each gate and the newest full pause/resume, across loads.
    entries.forEach(function (e) {
      if ((e.type === "sealed" || e.type === "reopened") && e.gate && (!sealEvents[e.gate] || sealEvents[e.gate].ms < e.ms)) sealEvents[e.gate] = e;
      if ((e.type === "full_pause" || e.type === "full_resume") && (!lastPause || lastPause.ms < e.ms)) lastPause = e;
    });
    renderLastPause();
  }

  function renderHistory(entries) {
    var list = $("record-list");
    list.textContent = "";
    entries.forEach(function (e) {
      var li = document.createElement("li");
      li.setAttribute("data-testid", "record-entry");
      li.setAttribute("data-type", String(e.type));
      var t = document.createElement("time");
      t.dateTime = String(e.at || "");
      t.textContent = when(e.at);
      li.appendChild(t);
      var b = badge(String(e.type).replace("_", " "), false, false);
      b.className = "badge " + entryClass(e);
      li.appendChild(b);
      var span = document.createElement("span");
      span.className = "record-text";
      span.textContent = entryText(e);
      li.appendChild(span);
      list.appendChild(li);
    });
    if (!entries.length) {
      var none = document.createElement("li");
      none.className = "muted";
      none.textContent = "no entries yet";
      list.appendChild(none);
    }
    // The API has no cursor: "more" asks for a longer newest-first list, up to its bound.
    $("record-more").hidden = entries.length < historyLimit || historyLimit >= HISTORY_LIMIT_MAX;
    text("record-count", entries.length + " shown" + (entries.length >= historyLimit ? " (more exist)" : ""));
  }

  function loadHistory(force) {
    if (historyLoading) {
      // An action's entry may be newer than the answer in flight: read again once it lands.
      if (force) historyAgain = true;
      return;
    }
    if (!force && (document.hidden || Date.now() - historyAt < HISTORY_REFRESH_MS)) return;
    historyLoading = true;
    historyAt = Date.now();
    var gate = $("record-gate").value;
    var path = "/api/v1/system/gates/history?limit=" + historyLimit + (gate ? "&gate=" + encodeURIComponent(gate) : "");
    api("GET", path, undefined, { timeoutMs: 5000, quiet: true, errorEl: $("record-error") }).then(function (data) {
      historyLoading = false;
      if (data) {
        noteEvents(data.history || []);
        renderHistory(data.history || []);
      }
      if (historyAgain) {
        historyAgain = false;
        loadHistory(true);
      }
    });
  }

  function bindRolloutControls() {
    $("signoff-form").addEventListener("submit", submitSignoff);
    $("signoff-gate").addEventListener("change", fillCriteria);
    $("signoff-criterion").addEventListener("change", showNeeds);
    $("signoff-actor").value = savedActor();
    $("pause-all").addEventListener("click", function () { openConfirm("pause"); });
    $("resume-all").addEventListener("click", function () { openConfirm("resume"); });
    $("reopen-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      if ($("reopen-gate").value) openConfirm("reopen", $("reopen-gate").value);
    });
    $("confirm-form").addEventListener("submit", submitConfirm);
    $("confirm-cancel").addEventListener("click", closeConfirm);
    $("confirm-dialog").addEventListener("close", function () { confirming = null; });
    $("confirm-actor").addEventListener("input", function () { $("confirm-actor").setCustomValidity(""); });
    $("record-more").addEventListener("click", function () {
      historyLimit = Math.min(HISTORY_LIMIT_MAX, historyLimit + HISTORY_PAGE * 2);
      loadHistory(true);
    });
    $("record-gate").addEventListener("change", function () { historyLimit = HISTORY_PAGE; loadHistory(true); });
  }

  // ---- the chart (canvas, drawn by hand) ----------------------------------------------------
  function drawChart() {
    var canvas = $("chart");
    var dpr = window.devicePixelRatio || 1;
    var w = canvas.clientWidth, h = canvas.clientHeight;
    if (!w || !h) return;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
    }
    var ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    var css = getComputedStyle(document.documentElement);
    var line = css.getPropertyValue("--line").trim() || "#2c3a48";
    var muted = css.getPropertyValue("--muted").trim() || "#8b9bab";
    var colors = [css.getPropertyValue("--accent").trim() || "#4aa3ff", css.getPropertyValue("--accent-2").trim() || "#f2b84b"];
    var padL = 48, padR = 10, padT = 10, padB = 22;
    var now = Date.now() / 1000;
    var points = history.filter(function (p) { return p.t >= now - CHART_WINDOW_S; });
    var max = 10;
    points.forEach(function (p) {
      if (p.a !== null && p.a > max) max = p.a;
      if (p.b !== null && p.b > max) max = p.b;
    });
    // A "nice" tick step (1, 2, 2.5 or 5 × 10^n) so the four grid lines carry round numbers.
    var raw = max / 4;
    var mag = Math.pow(10, Math.floor(Math.log10(raw)));
    var nice = [1, 2, 2.5, 5, 10].find(function (f) { return f * mag >= raw; }) * mag;
    max = nice * 4;
    ctx.font = "11px system-ui, sans-serif";
    ctx.fillStyle = muted;
    ctx.strokeStyle = line;
    ctx.lineWidth = 1;
    for (var i = 0; i <= 4; i++) {
      var y = padT + (h - padT - padB) * (i / 4);
      ctx.beginPath(); ctx.moveTo(padL, y + 0.5); ctx.lineTo(w - padR, y + 0.5); ctx.stroke();
      var v = max * (1 - i / 4);
      ctx.textAlign = "right"; ctx.textBaseline = "middle";
      ctx.fillText(v >= 1000 ? +(v / 1000).toFixed(2) + "k" : String(+v.toFixed(1)), padL - 6, y);
    }
    ctx.textAlign = "center"; ctx.textBaseline = "top";
    for (var m = 0; m <= 5; m++) {
      var x = padL + (w - padL - padR) * (m / 5);
      ctx.fillText(m === 5 ? "now" : "-" + (5 - m) + "m", x, h - padB + 6);
    }
    if (points.length < 2) {
      ctx.textAlign = "center"; ctx.textBaseline = "middle";
      ctx.fillText("collecting data…", (padL + w - padR) / 2, (padT + h - padB) / 2);
      return;
    }
    ["a", "b"].forEach(function (key, idx) {
      ctx.strokeStyle = colors[idx];
      ctx.lineWidth = 2;
      ctx.beginPath();
      var started = false;
      points.forEach(function (p) {
        if (p[key] === null) { started = false; return; }
        var px = padL + (w - padL - padR) * (1 - (now - p.t) / CHART_WINDOW_S);
        var py = padT + (h - padT - padB) * (1 - p[key] / max);
        if (!started) { ctx.moveTo(px, py); started = true; } else { ctx.lineTo(px, py); }
      });
      ctx.stroke();
    });
  }

  // ---- the stream ---------------------------------------------------------------------------
  function onSnapshot(snap) {
    renderProcesses(snap.fleet || {});
    renderCoach(snap.coach);
    renderScale(snap.scale);
    renderMetrics(snap.metrics);
    renderMeta(snap.meta);
    renderGates(snap.gates);
    renderPause(snap);
    loadHistory(false); // on the stream's cadence, at most every HISTORY_REFRESH_MS, one at a time
    snapshotListeners.forEach(function (fn) {
      try { fn(snap); } catch (e) { showError("panel_error", e.message); }
    });
    var t = snap.throughput || {};
    history.push({ t: (snap.ts || Date.now()) / 1000, a: typeof t.rounds_per_min === "number" ? t.rounds_per_min : null, b: typeof t.coach_rounds_per_min === "number" ? t.coach_rounds_per_min : null });
    if (history.length > HISTORY_MAX) history.splice(0, history.length - HISTORY_MAX);
    drawChart();
  }

  function connect() {
    var state = $("stream-state");
    var source = new EventSource("/api/v1/system/events");
    source.addEventListener("open", function () { state.textContent = "live"; state.className = "pill ok"; });
    source.addEventListener("snapshot", function (ev) {
      state.textContent = "live"; state.className = "pill ok";
      try { onSnapshot(JSON.parse(ev.data)); } catch (e) { showError("bad_snapshot", e.message); }
    });
    // EventSource reconnects by itself; say so rather than freezing silently.
    source.addEventListener("error", function () { state.textContent = "reconnecting…"; state.className = "pill warn"; });
  }

  // For panels in their own files (control-room-*.js): the same calls (token, timeouts, errors
  // shown) and every snapshot of the stream, without reaching into this file.
  window.ControlRoom = {
    api: api,
    showMessage: showMessage,
    showError: showError,
    onSnapshot: function (fn) { if (typeof fn === "function") snapshotListeners.push(fn); },
  };

  bindControls();
  bindRolloutControls();
  loadHistory(true);
  window.addEventListener("resize", drawChart);
  drawChart();
  connect();
})();
