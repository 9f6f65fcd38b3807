// The console's scripts (no inline script anywhere: the pages work under a CSP without
// 'unsafe-inline'). Charts drawn with Chart.js from the JSON each page embeds; the live
// query log; the Block / Allow buttons (POST /api/v1/rules with the session's CSRF token).
(function () {
  function data(id) {
    const el = document.getElementById(id);
    return el ? JSON.parse(el.textContent) : null;
  }
  const series = data("series-data");
  const queriesCanvas = document.getElementById("chart-queries");
  if (series && queriesCanvas) {
    new Chart(queriesCanvas, {
      type: "line",
      data: {
        labels: series.map((r) => new Date(r[0] * 1000).toISOString().slice(11, 16)),
        datasets: [
          { label: queriesCanvas.dataset.labelQueries || "queries", data: series.map((r) => r[1]),
            borderColor: "#16324f", tension: 0.2 },
          { label: queriesCanvas.dataset.labelBlocked || "blocked", data: series.map((r) => r[2]),
            borderColor: "#a40000", tension: 0.2 },
        ],
      },
      options: { animation: false, responsive: true, scales: { y: { beginAtZero: true } } },
    });
  }
  const blocks = data("blocks-data");
  if (series && blocks && document.getElementById("chart-blocks")) {
    new Chart(document.getElementById("chart-blocks"), {
      type: "bar",
      data: {
        labels: series.map((r) => new Date(r[0] * 1000).toISOString().slice(11, 16)),
        datasets: Object.entries(blocks).map(([cat, counts]) => ({ label: cat, data: counts })),
      },
      options: {
        animation: false, responsive: true,
        scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true } },
      },
    });
  }
  const countries = data("countries-data");
  if (countries && document.getElementById("chart-countries")) {
    const hourly = countries.bucket < 86400;
    new Chart(document.getElementById("chart-countries"), {
      type: "bar",
      data: {
        labels: countries.buckets.map((t) =>
          new Date(t * 1000).toISOString().slice(hourly ? 5 : 0, hourly ? 16 : 10).replace("T", " ")),
        datasets: Object.entries(countries.series).map(([cc, counts]) => ({ label: cc, data: counts })),
      },
      options: {
        animation: false, responsive: true,
        scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true } },
      },
    });
  }
  const cats = data("category-data");
  if (cats && document.getElementById("chart-categories")) {
    new Chart(document.getElementById("chart-categories"), {
      type: "doughnut",
      data: { labels: Object.keys(cats), datasets: [{ data: Object.values(cats) }] },
      options: { animation: false, responsive: true },
    });
  }
  const timeline = data("timeline-data");
  const timelineCanvas = document.getElementById("chart-timeline");
  if (timeline && timelineCanvas) {
    // Times are UNIX seconds; the axis is in milliseconds and fitted to the data (a bar
    // chart's value axis starts at zero otherwise: 1970).
    const firsts = timeline.map((r) => r.first * 1000);
    const lasts = timeline.map((r) => r.last * 1000);
    const lo = Math.min(...firsts);
    const hi = Math.max(...lasts);
    const pad = Math.max((hi - lo) * 0.05, 3600 * 1000);
    const day = (v) => new Date(v).toISOString().slice(0, 10);
    const minute = (v) => new Date(v).toISOString().slice(0, 16).replace("T", " ");
    new Chart(timelineCanvas, {
      type: "bar",
      data: {
        labels: timeline.map((r) => r.label),
        datasets: [{
          label: timelineCanvas.dataset.label || "first seen .. last seen",
          data: timeline.map((r, i) => [firsts[i], lasts[i]]),
          backgroundColor: "#16324f", minBarLength: 3,
        }],
      },
      options: {
        animation: false, indexAxis: "y", responsive: true,
        scales: {
          x: {
            type: "linear", beginAtZero: false, min: lo - pad, max: hi + pad,
            ticks: { callback: (v) => (hi - lo < 3 * 86400 * 1000 ? minute(v) : day(v)) },
          },
        },
        plugins: {
          tooltip: { callbacks: { label: (c) => minute(c.raw[0]) + " .. " + minute(c.raw[1]) } },
        },
      },
    });
  }

  // ------------------------------------------------------------ live query log
  const results = document.getElementById("results");
  const body = document.getElementById("results-body");
  if (results && body && results.dataset.live) {
    const state = document.getElementById("live-state");
    const toggle = document.getElementById("live-toggle");
    const noResults = document.getElementById("no-results");
    let after = results.dataset.after || "0";
    let paused = false;
    let busy = false;
    const MAX_ROWS = 500;
    const poll = async () => {
      if (paused || busy || document.hidden) return;
      busy = true;
      try {
        const sep = results.dataset.live.includes("?") ? "&" : "?";
        const r = await fetch(results.dataset.live + sep + "after=" + encodeURIComponent(after),
          { credentials: "same-origin", headers: { Accept: "application/json" } });
        if (!r.ok) throw new Error("HTTP " + r.status);
        const doc = await r.json();
        for (const row of doc.rows) {  // oldest first: each goes on top
          body.insertAdjacentHTML("afterbegin", row.html);
          body.firstElementChild.classList.add("new");
        }
        if (doc.rows.length && noResults) noResults.hidden = true;
        while (body.children.length > MAX_ROWS) body.lastElementChild.remove();
        after = String(doc.last);
        results.dataset.after = after;
        if (!paused) state.textContent = state.dataset.live;
        state.classList.remove("bad");
      } catch (e) {
        state.textContent = state.dataset.error;
        state.classList.add("bad");
      } finally {
        busy = false;
      }
    };
    toggle.addEventListener("click", () => {
      paused = !paused;
      toggle.textContent = paused ? toggle.dataset.resume : toggle.dataset.pause;
      state.textContent = paused ? state.dataset.paused : state.dataset.live;
      results.dataset.paused = paused ? "1" : "";
      if (!paused) poll();
    });
    setInterval(poll, 2000);
  }

  // ------------------------------------------------------------ Block / Allow
  const dialog = document.getElementById("quick-rule-dialog");
  const form = document.getElementById("quick-rule-form");
  const csrf = document.querySelector('meta[name="csrf"]');
  if (dialog && form && csrf) {
    const err = document.getElementById("quick-rule-error");
    const status = document.getElementById("quick-rule-status");
    document.addEventListener("click", (ev) => {
      const btn = ev.target.closest(".rule-btn");
      if (!btn) return;
      form.reset();
      err.textContent = "";
      document.getElementById("quick-rule-name").value = btn.dataset.name;
      form.querySelector(`input[name="action"][value="${btn.dataset.action}"]`).checked = true;
      dialog.showModal();
      document.getElementById("quick-rule-comment").focus();
    });
    document.getElementById("quick-rule-cancel").addEventListener("click", () => dialog.close());
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      err.textContent = "";
      const body = {
        name: document.getElementById("quick-rule-name").value.trim(),
        action: form.querySelector('input[name="action"]:checked').value,
        subdomains: document.getElementById("quick-rule-subdomains").checked,
        comment: document.getElementById("quick-rule-comment").value,
      };
      let r;
      try {
        r = await fetch("/api/v1/rules", {
          method: "POST", credentials: "same-origin",
          headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf.content,
                     Accept: "application/json" },
          body: JSON.stringify(body),
        });
      } catch (e) {
        err.textContent = dialog.dataset.msgNetwork;
        return;
      }
      let doc = {};
      try { doc = await r.json(); } catch (e) { doc = {}; }
      if (r.ok) {
        dialog.close();
        const label = body.action === "block" ? dialog.dataset.msgBlock : dialog.dataset.msgAllow;
        status.textContent = dialog.dataset.msgSaved
          .replace("%(action)s", label).replace("%(name)s", body.name + (body.subdomains ? " (*)" : ""));
        status.hidden = false;
        return;
      }
      const field = doc.field ? " (" + doc.field + ")" : "";
      err.textContent = dialog.dataset.msgFailed + ": " + (doc.error || "HTTP " + r.status) + field;
      if (doc.field && form.elements[doc.field]) form.elements[doc.field].focus();
    });
  }
})();
