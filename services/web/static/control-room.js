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

  /** POST/GET through the gateway; resolves to the JSON body, or null after showing the error. */
  function api(method, path, body) {
    var headers = { "Accept": "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    var saved = token();
    if (saved) headers["Authorization"] = "Bearer " + saved;
    return fetch(path, {
      method: method,
      headers: headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    }).then(function (resp) {
      return resp.text().then(function (raw) {
        var data = null;
        try { data = raw ? JSON.parse(raw) : null; } catch (e) { data = null; }
        if (resp.status === 401) {
          return new Promise(function (resolve) {
            askForToken(function () { resolve(api(method, path, body)); });
          });
        }
        if (!resp.ok || !data || data.ok === false) {
          var err = (data && data.error) || {};
          var detail = err.details && Array.isArray(err.details) && err.details.length
            ? " (" + err.details.map(function (d) { return (d.loc || []).join(".") + ": " + d.msg; }).join("; ") + ")"
            : "";
          showError(err.code || "http_" + resp.status, (err.message || resp.statusText || "request failed") + detail, resp.status);
          return null;
        }
        return data;
      });
    }, function (e) {
      showError("network_error", "the gateway did not answer (" + e.message + ")");
      return null;
    });
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

  function renderGates(g) {
    var list = $("gates-list");
    list.textContent = "";
    if (!g) return;
    var passed = (g.gates_passed || []).length;
    var next = g.next_decision;
    text("gates-summary", "Phase " + (g.current_phase || "—") + " · active gate " + (g.active_gate || "none") +
      " · passed " + passed +
      (next ? " · next decision: " + next.gate + (next.at ? " at " + next.at : " (" + next.when + ")") + " on " + next.on : "") +
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
      var head = document.createElement("div");
      head.className = "gate-head";
      var name = document.createElement("span");
      name.className = "gate-name";
      name.textContent = "Gate " + gate.number + " · " + gate.name;
      head.appendChild(name);
      var b = badge(gate.verdict, false, false);
      b.className = "badge " + verdictClass(gate.verdict);
      b.setAttribute("data-testid", "gate-verdict");
      head.appendChild(b);
      li.appendChild(head);
      var reason = document.createElement("div");
      reason.className = "gate-reason";
      reason.textContent = gate.decision + (gate.reason ? " — " + gate.reason : "");
      li.appendChild(reason);
      list.appendChild(li);
    });
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

  bindControls();
  window.addEventListener("resize", drawChart);
  drawChart();
  connect();
})();
