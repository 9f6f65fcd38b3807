// Charts of the console pages, drawn with Chart.js from the JSON each page embeds.
(function () {
  function data(id) {
    const el = document.getElementById(id);
    return el ? JSON.parse(el.textContent) : null;
  }
  const series = data("series-data");
  if (series && document.getElementById("chart-queries")) {
    new Chart(document.getElementById("chart-queries"), {
      type: "line",
      data: {
        labels: series.map((r) => new Date(r[0] * 1000).toISOString().slice(11, 16)),
        datasets: [
          { label: "queries", data: series.map((r) => r[1]), borderColor: "#16324f", tension: 0.2 },
          { label: "blocked", data: series.map((r) => r[2]), borderColor: "#a40000", tension: 0.2 },
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
  const cats = data("category-data");
  if (cats && document.getElementById("chart-categories")) {
    new Chart(document.getElementById("chart-categories"), {
      type: "doughnut",
      data: { labels: Object.keys(cats), datasets: [{ data: Object.values(cats) }] },
      options: { animation: false, responsive: true },
    });
  }
  const timeline = data("timeline-data");
  if (timeline && document.getElementById("chart-timeline")) {
    new Chart(document.getElementById("chart-timeline"), {
      type: "bar",
      data: {
        labels: timeline.map((r) => r.label),
        datasets: [{ label: "first seen .. last seen", data: timeline.map((r) => [r.first * 1000, r.last * 1000]), backgroundColor: "#16324f" }],
      },
      options: {
        animation: false, indexAxis: "y", responsive: true,
        scales: { x: { type: "linear", ticks: { callback: (v) => new Date(v).toISOString().slice(0, 10) } } },
      },
    });
  }
})();
