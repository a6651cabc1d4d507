// claiim admin UI: the live feed (server-sent events), the overview chart and the proof check.
// Data from the server is inserted as text, never as HTML.
"use strict";

function csrfToken() {
  const meta = document.querySelector('meta[name="csrf"]');
  return meta ? meta.content : "";
}

function cell(text, cls) {
  const td = document.createElement("td");
  if (cls) td.className = cls;
  td.textContent = text;
  td.title = text;  // cells are cut to one line: the whole value shows on hover
  return td;
}

function outcomeCell(outcome) {
  const td = document.createElement("td");
  const pill = document.createElement("span");
  pill.className = "pill pill-" + outcome.toLowerCase();
  pill.textContent = outcome;
  td.appendChild(pill);
  return td;
}

function decisionRow(d) {
  const tr = document.createElement("tr");
  tr.dataset.chronId = d.chron_id;
  tr.className = "fresh";
  tr.appendChild(cell(d.decided_at.replace("T", " ").slice(0, 19), "mono"));
  tr.appendChild(outcomeCell(d.outcome));
  tr.appendChild(cell(d.agent_id));
  tr.appendChild(cell(d.action, "mono"));
  tr.appendChild(cell(d.target, "mono"));
  tr.appendChild(cell(d.anchor));
  tr.appendChild(cell(d.policy, "mono"));
  tr.appendChild(cell(d.reason, "reason"));
  const link = document.createElement("a");
  link.href = "/decisions/" + encodeURIComponent(d.chron_id);
  link.textContent = d.chron_id;
  const td = cell("", "mono");
  td.title = d.chron_id;
  td.appendChild(link);
  tr.appendChild(td);
  return tr;
}

// The live feed keeps the newest `cap` rows. Paused, it holds new decisions (the newest `cap` of them) and
// shows how many; resumed, it puts them in. The filter hides the rows whose agent, outcome, action and
// target do not contain every word typed; it applies to the rows that arrive later too.
function startFeed(table) {
  const body = table.querySelector("tbody");
  const cap = Number(table.dataset.cap) || 200;
  const state = document.getElementById("live-state");
  const pause = document.getElementById("feed-pause");
  const held = document.getElementById("feed-held");
  const filter = document.getElementById("feed-filter");
  const shown = document.getElementById("feed-shown");
  let paused = false;
  let waiting = [];
  const words = () => filter.value.toLowerCase().split(/\s+/).filter(Boolean);
  const matches = (tr, want) => {
    const text = Array.from(tr.cells).slice(1, 5).map((c) => c.textContent).join(" ").toLowerCase();
    return want.every((w) => text.includes(w));
  };
  const apply = () => {
    const want = words();
    let visible = 0;
    for (const tr of body.rows) {
      tr.hidden = !matches(tr, want);
      if (!tr.hidden) visible += 1;
    }
    shown.textContent = want.length ? visible + " of " + body.rows.length + " shown" : "";
  };
  const add = (d) => {
    if (body.querySelector('tr[data-chron-id="' + CSS.escape(d.chron_id) + '"]')) return;
    body.insertBefore(decisionRow(d), body.firstChild);
    while (body.rows.length > cap) body.deleteRow(body.rows.length - 1);
  };
  const showHeld = () => {
    held.hidden = !paused;
    held.textContent = waiting.length + " new while paused";
  };
  pause.addEventListener("click", () => {
    paused = !paused;
    pause.textContent = paused ? "Resume" : "Pause";
    pause.setAttribute("aria-pressed", String(paused));
    if (!paused) {
      waiting.forEach(add);
      waiting = [];
      apply();
    }
    showHeld();
  });
  filter.addEventListener("input", apply);
  const source = new EventSource(table.dataset.src);
  source.onopen = () => { state.className = "live-dot on"; state.title = "live"; };
  source.onerror = () => { state.className = "live-dot off"; state.title = "reconnecting"; };
  source.addEventListener("decision", (event) => {
    const d = JSON.parse(event.data);
    if (paused) {
      waiting.push(d);
      if (waiting.length > cap) waiting.shift();
      showHeld();
      return;
    }
    add(d);
    apply();
  });
}

const SVG = "http://www.w3.org/2000/svg";

function drawChart(svg, minutes) {
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const width = 720, height = 200, top = 10, bottom = 20;
  const max = Math.max(1, ...minutes.map((m) => m.allow + m.deny));
  const step = width / minutes.length;
  const scale = (height - top - bottom) / max;
  const axis = document.createElementNS(SVG, "line");
  axis.setAttribute("x1", 0); axis.setAttribute("x2", width);
  axis.setAttribute("y1", height - bottom); axis.setAttribute("y2", height - bottom);
  axis.setAttribute("class", "axis");
  svg.appendChild(axis);
  minutes.forEach((m, i) => {
    let y = height - bottom;
    for (const [kind, n] of [["allow", m.allow], ["deny", m.deny]]) {
      if (!n) continue;
      const rect = document.createElementNS(SVG, "rect");
      rect.setAttribute("x", (i * step + 1).toFixed(1));
      rect.setAttribute("width", Math.max(1, step - 2).toFixed(1));
      rect.setAttribute("y", (y - n * scale).toFixed(1));
      rect.setAttribute("height", (n * scale).toFixed(1));
      rect.setAttribute("class", kind);
      const title = document.createElementNS(SVG, "title");
      title.textContent = new Date(m.t * 1000).toISOString().slice(11, 16) + " UTC: " + n + " " + kind.toUpperCase();
      rect.appendChild(title);
      svg.appendChild(rect);
      y -= n * scale;
    }
    if (i % 10 === 0) {
      const label = document.createElementNS(SVG, "text");
      label.setAttribute("x", (i * step + 2).toFixed(1));
      label.setAttribute("y", height - 5);
      label.textContent = new Date(m.t * 1000).toISOString().slice(11, 16);
      svg.appendChild(label);
    }
  });
  const peak = document.createElementNS(SVG, "text");
  peak.setAttribute("x", 2); peak.setAttribute("y", top);
  peak.textContent = "max " + max + "/min";
  svg.appendChild(peak);
}

function setText(id, text) {
  const el = document.getElementById(id);
  if (el) el.textContent = text;
}

function showOverview(data) {
  setText("m-rate", data.rate);
  setText("m-allow", data.allow);
  setText("m-deny", data.deny);
  if (!data.chron.error) {
    setText("m-lag", data.chron.pending);
    setText("m-age", data.chron.checkpoint_age === null ? "—" : data.chron.checkpoint_age.toFixed(1) + " s");
    const problems = document.getElementById("m-problems");
    if (problems) {
      problems.hidden = data.chron.problems.length === 0;
      setText("m-problems-text", data.chron.problems.join("; "));
    }
  }
  if (data.verification) {
    setText("m-verify", data.verification.ok ? "OK" : "FAILED");
    document.getElementById("m-verify").className = "value " + (data.verification.ok ? "ok" : "bad");
    setText("m-verify-text", data.verification.message);
  }
  drawChart(document.getElementById("chart"), data.minutes);
}

function startOverview(section) {
  const load = () => fetch(section.dataset.src, { credentials: "same-origin" })
    .then((r) => (r.ok ? r.json() : Promise.reject(r.status)))
    .then(showOverview)
    .catch(() => {});
  load();
  setInterval(load, 2000);
}

function startVerify(button) {
  const list = document.getElementById("verify-steps");
  button.addEventListener("click", () => {
    button.disabled = true;
    list.textContent = "";
    fetch(button.dataset.url, { method: "POST", credentials: "same-origin", headers: { "X-CSRF-Token": csrfToken() } })
      .then((r) => r.json())
      .then((result) => {
        for (const step of result.steps) {
          const li = document.createElement("li");
          li.className = step.ok ? "ok" : "bad";
          li.textContent = step.text;
          list.appendChild(li);
        }
        const verdict = document.createElement("li");
        verdict.className = result.ok ? "ok" : "bad";
        verdict.id = "verify-result";
        verdict.textContent = result.ok ? "proof verified" : "proof FAILED";
        list.appendChild(verdict);
      })
      .finally(() => { button.disabled = false; });
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const feed = document.getElementById("feed");
  if (feed) startFeed(feed);
  const overview = document.getElementById("overview");
  if (overview) startOverview(overview);
  const verify = document.getElementById("verify");
  if (verify) startVerify(verify);
});
