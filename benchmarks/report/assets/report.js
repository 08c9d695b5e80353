// mnist-bench report: renders window.MNIST_BENCH_REPORT (data.js) with plotly, offline, one view at a time.
// Every string from a results file is data: it reaches the DOM through textContent and plotly through plain(),
// never as markup. The page sets <html data-ready="VIEW"> once the view's plots have rendered (the tests wait on it).
(function () {
  "use strict";
  const DATA = window.MNIST_BENCH_REPORT;
  const root = document.documentElement;
  const view = document.getElementById("view");
  let pending = [];

  // One colour per backend on every view and in the PNGs: the registry's order (report/plots.py's backend_color).
  const colors = Object.assign({}, DATA.colors);
  function color(backend) {
    if (!(backend in colors)) colors[backend] = "#7f7f7f";
    return colors[backend];
  }
  const PHASE_COLORS = ["#8da0cb", "#fc8d62", "#66c2a5", "#e78ac3", "#a6d854", "#ffd92f", "#e5c494"];

  // plotly reads a subset of HTML in labels (<b>, <a href>, entities): escaping makes every label plain text.
  function plain(text) {
    return String(text === null || text === undefined ? "" : text)
      .replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "class") node.className = value;
      else if (key === "on") Object.entries(value).forEach(([event, fn]) => node.addEventListener(event, fn));
      else node.setAttribute(key, value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const fmt = (value, digits = 3) => (value === null || value === undefined || !isFinite(value)) ? "—"
    : Number(value).toFixed(digits);
  const interval = (item, digits = 3) => !item ? "—" : item.low === null ? `${fmt(item.value, digits)} (no CI)`
    : `${fmt(item.value, digits)} [${fmt(item.low, digits)}, ${fmt(item.high, digits)}]`;
  const ratioText = ratio => !ratio ? "—" : ratio.low === null ? `${fmt(ratio.estimate, 2)}x (no CI: 1 round)`
    : `${fmt(ratio.estimate, 2)}x [${fmt(ratio.low, 2)}, ${fmt(ratio.high, 2)}] ${ratio.verdict}`;
  const link = (hash, text) => el("a", {href: "#" + hash}, text);
  const runHash = id => "run/" + encodeURIComponent(id);

  function table(header, rows) {
    return el("table", {}, header.some(Boolean) ? el("thead", {}, el("tr", {}, header.map(h => el("th", {}, h)))) : null,
              el("tbody", {}, rows.map(row => el("tr", row.attrs || {}, (row.cells || row).map(c => el("td", {}, c))))));
  }

  function plot(title, traces, layout, options = {}) {
    const box = el("div", {class: "plot", "data-plot": title});
    const figure = Object.assign({title: {text: plain(title), font: {size: 14}}, margin: {l: 60, r: 20, t: 40, b: 60},
                                  legend: {orientation: "h", y: -0.28}, hovermode: "closest"}, layout);
    const holder = el("section", {class: "figure"});
    if (options.logToggle) {
      const axis = options.logToggle;
      const box2 = el("input", {type: "checkbox"});
      box2.checked = (figure[axis] || {}).type === "log";
      box2.addEventListener("change", () => Plotly.relayout(box, {[axis + ".type"]: box2.checked ? "log" : "linear"}));
      holder.appendChild(el("label", {class: "toggle"}, box2, " log scale"));
    }
    holder.appendChild(box);
    pending.push(() => Plotly.newPlot(box, traces, figure, {responsive: true, displaylogo: false}));
    return holder;
  }

  // ---- views ------------------------------------------------------------------------------------------------------
  function viewRuns() {
    const parts = [el("h2", {}, `Runs (${DATA.runs.length})`)];
    if (DATA.skipped.length) parts.push(el("ul", {class: "warnings"}, DATA.skipped.map(s => el("li", {}, s))));
    parts.push(table(["run", "created", "machine", "model", "rows: speed vs " + DATA.reference],
      DATA.runs.slice().reverse().map(run => [link(runHash(run.id), run.id), run.created, run.machine.hostname || "?",
        run.model, run.groups.map(g => `${g.label}: ${g.ratio ? ratioText(g.ratio) : fmt(g.epoch_s && g.epoch_s.value) + " s/epoch"}`).join("; ")])));
    return parts;
  }

  function forest(rows, threshold, title) {
    // rows: {label, backend, ratio}; x: the speed ratio on a log axis, the noise band shaded around 1.
    const shown = rows.filter(r => r.ratio);
    const labels = shown.map(r => plain(r.label));
    const traces = shown.map((r, i) => ({
      type: "scatter", mode: "markers", x: [r.ratio.estimate], y: [labels[i]], name: plain(r.label), showlegend: false,
      marker: {color: color(r.backend), size: 10},
      error_x: r.ratio.low === null ? {visible: false} : {type: "data", symmetric: false,
        array: [r.ratio.high - r.ratio.estimate], arrayminus: [r.ratio.estimate - r.ratio.low], color: color(r.backend)},
      hovertext: plain(ratioText(r.ratio)), hoverinfo: "text"}));
    const layout = {xaxis: {type: "log", title: {text: "speed vs " + DATA.reference + " (x, log; > 1 faster)"}},
      yaxis: {automargin: true, autorange: "reversed"}, height: 130 + 36 * shown.length, margin: {l: 20, r: 20, t: 40, b: 50},
      showlegend: false,
      shapes: [{type: "rect", xref: "x", yref: "paper", x0: 1 - threshold, x1: 1 + threshold, y0: 0, y1: 1,
                fillcolor: "#999", opacity: 0.2, line: {width: 0}},
               {type: "line", xref: "x", yref: "paper", x0: 1, x1: 1, y0: 0, y1: 1, line: {color: "#444", dash: "dot"}}]};
    return shown.length ? plot(title, traces, layout) : el("p", {}, "No speed ratios: one backend, or no reference in this run.");
  }

  function curvesPlot(run, trainKey, valKey, title, scale) {
    const traces = [];
    run.groups.forEach(group => {
      if (!group.curves.length) return;
      [[trainKey, "solid", "train"], [valKey, "dash", "val"]].forEach(([key, dash, kind]) => {
        const series = group.curves.map(c => c[key]);
        const epochs = series[0].map((_, i) => i + 1);
        const mean = epochs.map((_, i) => series.reduce((s, v) => s + v[i], 0) / series.length * scale);
        if (series.length > 1) {
          const low = epochs.map((_, i) => Math.min(...series.map(v => v[i])) * scale);
          const high = epochs.map((_, i) => Math.max(...series.map(v => v[i])) * scale);
          traces.push({x: epochs, y: low, mode: "lines", line: {width: 0}, showlegend: false, hoverinfo: "skip"});
          traces.push({x: epochs, y: high, mode: "lines", line: {width: 0}, fill: "tonexty", fillcolor: color(group.backend) + "33",
                       showlegend: false, hoverinfo: "skip"});
        }
        traces.push({x: epochs, y: mean, mode: "lines+markers", name: plain(`${group.label} ${kind}`),
                     line: {color: color(group.backend), dash: dash}});
      });
    });
    return plot(title, traces, {xaxis: {title: {text: "epoch"}}, yaxis: {title: {text: title}}},
                {logToggle: "yaxis"});
  }

  function viewRun(id) {
    const run = DATA.runs.find(r => r.id === id);
    if (!run) return [el("p", {class: "error"}, `No run ${id} in this report.`)];
    const m = run.machine;
    const parts = [el("h2", {}, `Run ${run.id}`), el("p", {}, `${run.created} · ${run.model_text}`)];
    parts.push(el("div", {class: "cards"}, run.groups.map(g => el("div", {class: "card", style: `border-color: ${color(g.backend)}`},
      el("h3", {}, g.label), el("p", {class: "muted"}, g.repeats || "1 process", " · ", g.status),
      el("p", {class: "verdict " + (g.ratio ? g.ratio.verdict.replace(/[^a-z]/g, "") || "same" : "none")},
         g.ratio ? ratioText(g.ratio) : g.reference === null ? "reference" : "—"),
      el("p", {}, "epoch s ", interval(g.epoch_s)),
      el("p", {}, "test acc ", g.test_acc ? `${fmt(g.test_acc.value, 2)}%` + (g.test_acc.n > 1 ? ` ± ${fmt(g.test_acc.half, 2)}` : "") : "—"),
      el("p", {}, "x step floor ", interval(g.floor, 2))))));
    const equivalence = DATA.verifies.filter(v => v.hostname === m.hostname && v.model === run.model);
    if (equivalence.length) {
      const latest = equivalence[equivalence.length - 1];
      parts.push(el("p", {}, "Equivalence (", link("verify/" + encodeURIComponent(latest.id), `verify ${latest.id}`), `, ${latest.created}): `,
        Object.entries(latest.backends).map(([name, b]) => `${name} ${b.passed ? "passed" : "FAILED"}`).join(", ")));
    }
    parts.push(forest(run.groups.map(g => ({label: g.label, backend: g.backend, ratio: g.ratio})), run.threshold,
                      `Speed vs ${DATA.reference} with 95% CIs (band: noise threshold ±${fmt(run.threshold, 3)})`));
    parts.push(el("h3", {}, "Provenance"), table(["", ""], [
      ["machine", `${m.hostname || "?"}: ${m.cpu || "?"}, ${m.usable_cores} cores, ${m.memory_gib} GiB, ${m.os}`],
      ["python and packages", `Python ${m.python}; ` + Object.entries(run.packages).map(([k, v]) => `${k} ${v}`).join(", ")],
      ["stack", run.stack], ["command", run.command || "not recorded"], ["commit", run.commit || "—"],
      ["settings", `${run.job.epochs} epochs, batch ${run.job.batch}, seeds ${run.job.seeds.join(" ")}, ${run.job.rounds} round(s) + ${run.job.timing_rounds} timing, ${run.job.device}, precision ${run.job.precision}` + (run.job.train_limit ? `, train limit ${run.job.train_limit}` : "")],
      ["noise threshold", `${fmt(run.threshold, 3)} (${run.threshold_source})`],
      ...run.groups.map(g => [`routes: ${g.label}`, g.routes])]));
    parts.push(el("h3", {}, "Curves"), el("div", {class: "grid"},
      curvesPlot(run, "loss", "val_loss", "loss", 1), curvesPlot(run, "accuracy", "val_accuracy", "accuracy %", 100)));
    const epochTraces = run.groups.map(g => {
      const xs = [], ys = [], texts = [];
      g.epoch_times.forEach((p, index) => p.times.forEach((t, epoch) => {
        xs.push(index + 1); ys.push(t); texts.push(plain(`${p.timing ? "timing" : "full"} round ${p.round} seed ${p.seed} epoch ${epoch + 1}`));
      }));
      return {x: xs, y: ys, text: texts, mode: "markers", name: plain(g.label), marker: {color: color(g.backend), size: 6, opacity: 0.7}};
    });
    // Per row: the mean time to the target over the seeds that reached it, and how far the fastest and slowest lie.
    const targets = run.groups.map(g => {
      const reached = g.time_to_target_s.filter(v => v !== null);
      const mean = reached.length ? reached.reduce((a, b) => a + b) / reached.length : null;
      return {mean, above: reached.length ? Math.max(...reached) - mean : 0, below: reached.length ? mean - Math.min(...reached) : 0};
    });
    parts.push(el("div", {class: "grid"},
      plot("epoch seconds per process (first epochs compile)", epochTraces,
           {xaxis: {title: {text: "process (in run order per backend)"}}, yaxis: {title: {text: "epoch s"}}}, {logToggle: "yaxis"}),
      plot(`time to ${fmt(run.job.target * 100, 0)}% validation accuracy`, [{type: "bar", x: run.groups.map(g => plain(g.label)),
        y: targets.map(t => t.mean), marker: {color: run.groups.map(g => color(g.backend))},
        error_y: {type: "data", symmetric: false, array: targets.map(t => t.above), arrayminus: targets.map(t => t.below)}}],
        {yaxis: {title: {text: "seconds (mean, min-max over seeds)"}}})));
    const clocked = run.groups.filter(g => g.step_ms.length);
    if (clocked.length) {
      parts.push(plot("step time (--step-times: every step clocked, steady epochs)", clocked.map(g => ({type: "box",
        y: g.step_ms, name: plain(g.label), marker: {color: color(g.backend)}, boxpoints: false})),
        {yaxis: {type: "log", title: {text: "ms per step"}}, showlegend: false}, {logToggle: "yaxis"}));
    }
    const phases = [...new Set(run.groups.flatMap(g => Object.keys(g.startup)))];
    parts.push(el("div", {class: "grid"},
      plot("start-up by phase (median)", phases.map((phase, i) => ({type: "bar", name: plain(phase.replace(/_s$/, "").replace(/_/g, " ")),
        x: run.groups.map(g => plain(g.label)), y: run.groups.map(g => g.startup[phase]), marker: {color: PHASE_COLORS[i % PHASE_COLORS.length]}})),
        {barmode: "stack", yaxis: {title: {text: "seconds"}}}),
      plot("peak resident memory (median)", [{type: "bar", x: run.groups.map(g => plain(g.label)), y: run.groups.map(g => g.peak_rss_mib),
        marker: {color: run.groups.map(g => color(g.backend))}}], {yaxis: {title: {text: "MiB"}}})));
    const divergent = run.groups.filter(g => g.divergence);
    if (divergent.length) {
      parts.push(plot(`|loss difference| from ${divergent[0].divergence.against} per step (running mean)`,
        divergent.map(g => ({x: g.divergence.steps, y: g.divergence.values, mode: "lines", name: plain(g.label), line: {color: color(g.backend)}})),
        {xaxis: {title: {text: "training step"}}, yaxis: {type: "log", title: {text: "|Δloss|"}}}, {logToggle: "yaxis"}));
    }
    const confused = run.groups.filter(g => g.confusion);
    if (confused.length) {
      parts.push(el("h3", {}, "Confusion matrices (test set; rows true, columns predicted)"), el("div", {class: "grid"},
        confused.map(g => plot(g.label, [{type: "heatmap", z: g.confusion, colorscale: "Blues", reversescale: true, x: [...Array(10).keys()], y: [...Array(10).keys()]}],
          {yaxis: {autorange: "reversed", title: {text: "true"}}, xaxis: {title: {text: "predicted"}}, height: 360}))));
    }
    if (run.digits) parts.push(el("h3", {}, "Test digits"), el("img", {src: run.digits, alt: "test digits and predictions", class: "digits"}));
    return parts;
  }

  function viewCompare(ids) {
    const chosen = ids.length ? ids : DATA.runs.slice(-2).map(r => r.id);
    const runs = DATA.runs.filter(r => chosen.includes(r.id));
    const picker = el("div", {class: "picker"}, DATA.runs.map(r => {
      const box = el("input", {type: "checkbox", value: r.id});
      box.checked = chosen.includes(r.id);
      box.addEventListener("change", () => {
        const picked = [...picker.querySelectorAll("input:checked")].map(i => i.value);
        location.hash = "compare/" + picked.map(encodeURIComponent).join(",");
      });
      return el("label", {}, box, ` ${r.id} (${r.created.slice(0, 16)})`);
    }));
    const parts = [el("h2", {}, "Compare runs"), picker];
    if (!runs.length) return parts.concat(el("p", {}, "Pick runs above."));
    const threshold = Math.max(...runs.map(r => r.threshold));
    parts.push(forest(runs.flatMap(r => r.groups.map(g => ({label: `${r.id} · ${g.label}`, backend: g.backend, ratio: g.ratio}))),
                      threshold, "Speed vs " + DATA.reference + " in each run, 95% CIs"));
    const labels = [...new Set(runs.flatMap(r => r.groups.map(g => g.label)))];
    parts.push(el("h3", {}, "Epoch seconds (median [95% CI])"), table(["row", ...runs.map(r => r.id)],
      labels.map(label => [label, ...runs.map(r => { const g = r.groups.find(x => x.label === label); return g ? interval(g.epoch_s) : "—"; })])));
    const only = labels.filter(label => runs.filter(r => r.groups.some(g => g.label === label)).length === 1);
    parts.push(el("h3", {}, "Rows present in one run only"), only.length ? el("ul", {}, only.map(l => el("li", {}, l))) : el("p", {}, "none"));
    const packages = [...new Set(runs.flatMap(r => Object.keys(r.packages)))].sort();
    parts.push(el("h3", {}, "Stacks (differing versions marked)"), table(["package", ...runs.map(r => r.id)],
      packages.map(name => {
        const versions = runs.map(r => r.packages[name] || "—");
        return {attrs: new Set(versions).size > 1 ? {class: "differs"} : {}, cells: [name, ...versions]};
      })));
    return parts;
  }

  function viewHistory(focus) {
    const state = {x: "date", log: false};
    const parts = [el("h2", {}, "History"), el("p", {class: "muted"},
      "One series per model, backend, device, device count, batch size, precision, training-set size and machine; each point a run's median steady epoch time " +
      "with its 95% CI; ✕ marks a change point (E-divisive with a permutation test, steps beyond the noise threshold).")];
    const series = focus ? DATA.series.filter(s => s.key === focus) : DATA.series;
    if (!series.length) return parts.concat(el("p", {}, "No series."));
    const holder = el("div", {});
    const controls = el("p", {class: "controls"},
      el("label", {}, "x axis ", el("select", {on: {change: e => { state.x = e.target.value; draw(); }}},
        el("option", {value: "date"}, "date"), el("option", {value: "version"}, "framework version"))), " ",
      el("label", {}, el("input", {type: "checkbox", on: {change: e => { state.log = e.target.checked; draw(); }}}), " log scale"));
    let attached = false;  // the first drawing is flushed with the view, once the holder is in the page
    function draw() {
      holder.replaceChildren();
      const xOf = p => state.x === "date" ? p.created : Object.entries(p.versions).map(([k, v]) => `${k} ${v}`).join(", ");
      const traces = series.map(s => ({
        x: s.points.map(xOf), y: s.points.map(p => p.value), mode: "lines+markers", name: plain(s.key),
        line: {color: color(s.backend), width: 1}, marker: {color: color(s.backend), size: 6},
        text: s.points.map(p => plain(`${p.run}: ${fmt(p.value)} s (${p.n} processes)`)), hoverinfo: "text",
        error_y: {type: "data", symmetric: false, array: s.points.map(p => p.high === null ? 0 : p.high - p.value),
                  arrayminus: s.points.map(p => p.low === null ? 0 : p.value - p.low), color: color(s.backend), thickness: 1}}));
      series.forEach(s => s.changes.length && traces.push({x: s.changes.map(c => xOf(s.points[c.index])), y: s.changes.map(c => c.after),
        mode: "markers", name: plain(`${s.key} change points`), marker: {symbol: "x", size: 14, color: color(s.backend)},
        text: s.changes.map(c => plain(`step ${fmt(c.before)} → ${fmt(c.after)} s (${fmt((c.after / c.before - 1) * 100, 1)}%)`)), hoverinfo: "text"}));
      holder.appendChild(plot("steady epoch seconds", traces, {height: 520, xaxis: {type: state.x === "date" ? "date" : "category"},
        yaxis: {type: state.log ? "log" : "linear", title: {text: "epoch s"}}, showlegend: series.length <= 12}));
      if (attached) {
        root.dataset.ready = "";
        flush().then(() => { root.dataset.ready = "history"; });
      }
    }
    parts.push(controls, holder);
    draw();
    attached = true;
    parts.push(el("h3", {}, "Latest point against its level (red: slower by more than the noise threshold, CI clear of it)"), table(["series", "runs", "latest", "vs level"],
      series.map(s => ({attrs: s.latest && s.latest.low !== null && s.latest.low > 1 + s.threshold ? {class: "slower"} : {},
        cells: [link("history/" + encodeURIComponent(s.key), s.key), String(s.points.length), interval(s.points[s.points.length - 1]),
        s.latest ? `${fmt((s.latest.ratio - 1) * 100, 1)}%` + (s.latest.low === null ? " (no CI)" : ` [${fmt((s.latest.low - 1) * 100, 1)}%, ${fmt((s.latest.high - 1) * 100, 1)}%]`) : "—"]}))));
    parts.push(viewChanges(focus));
    return parts;
  }

  function viewChanges(focus) {
    const rows = DATA.changes.filter(c => !focus || c.series === focus);
    return el("section", {id: "regressions"}, el("h3", {}, "Change points (newest first; acknowledged ones greyed)"),
      rows.length ? table(["series", "at run", "date", "before s", "after s", "change", "p"], rows.map(c => ({
        attrs: {class: (c.direction === "slower" ? "slower" : "faster") + (c.acknowledged ? " acknowledged" : "")},
        cells: [link("history/" + encodeURIComponent(c.series), c.series), link(runHash(c.run), c.run), c.created.slice(0, 16),
                fmt(c.before_s), fmt(c.after_s), `${fmt((c.ratio - 1) * 100, 1)}% ${c.direction}`, fmt(c.p_value, 3)]})))
        : el("p", {}, "No change points found."));
  }

  function viewSweeps(id) {
    const sweeps = id ? DATA.sweeps.filter(s => s.id === id) : DATA.sweeps;
    const parts = [el("h2", {}, "Sweeps")];
    if (!sweeps.length) return parts.concat(el("p", {}, "No sweeps in this report."));
    sweeps.forEach(sweep => {
      const runs = DATA.runs.filter(r => r.id.startsWith(sweep.id + "/"));
      const points = runs.flatMap(r => r.groups.map(g => ({g, batch: r.job.batch})));
      const backends = [...new Set(points.map(p => p.g.backend))];
      parts.push(el("h3", {}, `${sweep.id} (${sweep.executor || "?"}, ${sweep.created || ""})`),
        table(["trial", "status", "backend", "batch", "devices"], sweep.trials.map(t => [
          DATA.runs.some(r => r.id === t.run) ? link(runHash(t.run), t.id) : t.id, t.status + (t.error ? `: ${t.error}` : ""), t.backend,
          String(t.batch), String(t.devices)])),
        plot(`${sweep.id}: throughput by batch size`, backends.map(b => {
          const mine = points.filter(p => p.g.backend === b).sort((x, y) => x.batch - y.batch);
          return {x: mine.map(p => p.batch), y: mine.map(p => p.g.samples_per_s), mode: "lines+markers", name: plain(b), line: {color: color(b)}};
        }), {xaxis: {type: "log", title: {text: "batch size"}}, yaxis: {title: {text: "samples/s (median)"}}}, {logToggle: "yaxis"}));
    });
    return parts;
  }

  function viewVerify(id) {
    const verifies = id ? DATA.verifies.filter(v => v.id === id) : DATA.verifies;
    const parts = [el("h2", {}, "Equivalence (mnist-bench verify)")];
    if (!verifies.length) return parts.concat(el("p", {}, "No verify results in this report."));
    verifies.forEach(v => {
      parts.push(el("h3", {}, `${v.id}: ${v.passed ? "passed" : "FAILED"}`), el("p", {class: "muted"}, `${v.created} · ${v.hostname} · ${v.model} · ${v.steps} steps`));
      const checks = [...new Set(Object.values(v.backends).flatMap(b => Object.keys(b.checks)))];
      parts.push(table(["backend", ...checks], Object.entries(v.backends).map(([name, b]) => ({attrs: {class: b.passed ? "" : "slower"},
        cells: [name, ...checks.map(c => b.checks[c] ? `${b.checks[c].value.toExponential(2)} ≤ ${b.checks[c].tolerance.toExponential(1)} ${b.checks[c].passed ? "✓" : "✗"}` : "—")]}))));
      parts.push(plot(`${v.id}: relative loss error vs the float64 reference`, Object.entries(v.backends).map(([name, b]) => ({
        x: b.steps, y: b.loss_rel.map(x => Math.max(x, 1e-12)), mode: "lines", name: plain(name), line: {color: color(name)}})),
        {xaxis: {title: {text: "step"}}, yaxis: {type: "log", title: {text: "|Δloss| / loss"}}}, {logToggle: "yaxis"}));
    });
    return parts;
  }

  function viewSuites() {
    const parts = [el("h2", {}, "pytest-benchmark suites")];
    if (!DATA.suites.length) return parts.concat(el("p", {}, "No suites in this report."));
    DATA.suites.forEach(s => parts.push(plot(`${s.id} (${s.created || ""}, ${s.cpu || ""})`, [{type: "bar", orientation: "h",
      y: s.benchmarks.map(b => plain(b.name)), x: s.benchmarks.map(b => b.mean), error_x: {type: "data", array: s.benchmarks.map(b => b.stddev)}}],
      {xaxis: {type: "log", title: {text: "mean s (± std)"}}, yaxis: {automargin: true}, height: 150 + 22 * s.benchmarks.length}, {logToggle: "xaxis"})));
    return parts;
  }

  // ---- routing: #runs, #run/ID, #compare/ID,ID, #history[/SERIES], #regressions, #sweeps[/ID], #verify[/ID], #suites
  const dec = decodeURIComponent;
  const VIEWS = {runs: viewRuns, run: arg => viewRun(dec(arg || "")),
                 compare: arg => viewCompare(arg ? arg.split(",").filter(Boolean).map(dec) : []),
                 history: arg => viewHistory(arg ? dec(arg) : null), regressions: () => [el("h2", {}, "Regressions"), viewChanges(null)],
                 sweeps: arg => viewSweeps(arg ? dec(arg) : null), verify: arg => viewVerify(arg ? dec(arg) : null), suites: viewSuites};

  function nav() {
    const items = [["runs", "Runs"], ["compare", "Compare"], ["history", "History"], ["regressions", "Regressions"],
                   ["sweeps", "Sweeps"], ["verify", "Verify"], ["suites", "Suites"]];
    document.getElementById("nav").replaceChildren(...items.map(([hash, text]) => link(hash, text)));
  }

  function flush() {
    const jobs = pending;
    pending = [];
    return Promise.all(jobs.map(job => job()));
  }

  function route() {
    root.dataset.ready = "";
    const raw = location.hash.slice(1) || (DATA.runs.length ? "runs" : DATA.verifies.length ? "verify" : "sweeps");
    const cut = raw.indexOf("/");
    const name = cut < 0 ? raw : raw.slice(0, cut);
    const render = VIEWS[name] || viewRuns;
    view.replaceChildren(...render(cut < 0 ? null : raw.slice(cut + 1)));
    flush().then(() => { root.dataset.ready = name in VIEWS ? name : "runs"; },
                 error => { root.dataset.ready = "error"; console.error(error); });
  }

  nav();
  window.addEventListener("hashchange", route);
  route();
})();
