// The Director of Product's dashboard: a client of this server's semantic-layer GraphQL API.
// Every number comes from createQuery + query polling (jsonResult), mostly from saved queries;
// no SQL, no third-party code. Charts are SVG drawn here.
"use strict";

(() => {
  const TOKEN_KEY = "greenery.apiToken";
  const SVG_NS = "http://www.w3.org/2000/svg";
  const STEPS = [
    { metric: "sessions_with_page_view", label: "Page view", css: "view", color: "#a5d6a7", text: "value-dark" },
    { metric: "sessions_with_add_to_cart", label: "Add to cart", css: "cart", color: "#5fae63", text: "value-in" },
    { metric: "sessions_with_checkout", label: "Checkout", css: "checkout", color: "#2e7d32", text: "value-in" },
  ];
  const TRANSITIONS = [
    { rate: "view_to_cart_rate", lost: "sessions_lost_before_add_to_cart", drop: "view_to_cart_drop_off_rate" },
    { rate: "cart_to_checkout_rate", lost: "sessions_lost_before_checkout", drop: "cart_to_checkout_drop_off_rate" },
  ];
  const AMBER = "#e08a00";
  const RED = "#c62828";
  const count = new Intl.NumberFormat("en-US");
  const percent = new Intl.NumberFormat("en-US", { style: "percent", minimumFractionDigits: 1, maximumFractionDigits: 1 });
  const shortDate = new Intl.DateTimeFormat("en-US", { month: "short", day: "numeric", timeZone: "UTC" });

  class AuthRequired extends Error {}

  // ---- the API ------------------------------------------------------------------------------

  function takeTokenFromUrl() {
    // ?token=… (or #token=…, which never reaches any server log) is read once, kept for this tab, removed from the URL.
    const url = new URL(window.location.href);
    const hash = new URLSearchParams(url.hash.replace(/^#/, ""));
    const token = url.searchParams.get("token") || hash.get("token");
    if (!token) return;
    sessionStorage.setItem(TOKEN_KEY, token);
    url.searchParams.delete("token");
    hash.delete("token");
    url.hash = hash.toString();
    window.history.replaceState(null, "", url.pathname + url.search + url.hash);
  }

  function authHeaders() {
    const token = sessionStorage.getItem(TOKEN_KEY);
    return token ? { authorization: `Bearer ${token}` } : {};
  }

  async function graphql(query, variables) {
    const headers = { "content-type": "application/json", ...authHeaders() };
    const response = await fetch("/api/graphql", {
      method: "POST", headers, body: JSON.stringify({ query, variables }), credentials: "omit",
    });
    if (response.status === 401) throw new AuthRequired("the server needs an API token");
    const body = await response.json();
    if (body.errors && body.errors.length) throw new Error(body.errors[0].message);
    return body.data;
  }

  const CREATE = `mutation($savedQuery: String, $metrics: [MetricInput!], $groupBy: [GroupByInput!],
      $orderBy: [OrderByInput!], $limit: Int) {
    createQuery(environmentId: 1, savedQuery: $savedQuery, metrics: $metrics, groupBy: $groupBy,
      orderBy: $orderBy, limit: $limit) { queryId } }`;
  const POLL = `query($id: String!, $page: Int) {
    query(environmentId: 1, queryId: $id, pageNum: $page) { status error totalPages jsonResult(orient: RECORDS) } }`;

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  function decodePage(base64) {
    const binary = atob(base64);
    const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
    return JSON.parse(new TextDecoder("utf-8").decode(bytes));
  }

  // One query: created, polled until done (with back-off), every page read.
  async function runQuery(args) {
    const { createQuery } = await graphql(CREATE, args);
    const id = createQuery.queryId;
    let page;
    for (let attempt = 0, delay = 50; ; attempt += 1, delay = Math.min(delay * 2, 1000)) {
      page = (await graphql(POLL, { id, page: 1 })).query;
      if (page.status === "SUCCESSFUL") break;
      if (page.status === "FAILED") throw new Error(page.error || "the query failed");
      if (attempt > 300) throw new Error("the query did not finish in time");
      await sleep(delay);
    }
    const rows = decodePage(page.jsonResult);
    for (let n = 2; n <= page.totalPages; n += 1) {
      rows.push(...decodePage((await graphql(POLL, { id, page: n })).query.jsonResult));
    }
    return rows;
  }

  const saved = (name) => runQuery({ savedQuery: name });

  // ---- DOM and SVG helpers --------------------------------------------------------------------

  function el(tag, attrs = {}, children = []) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (key === "text") node.textContent = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) node.append(child);
    return node;
  }

  function svg(tag, attrs = {}, children = []) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (key === "text") node.textContent = value;
      else node.setAttribute(key, String(value));
    }
    for (const child of children) node.append(child);
    return node;
  }

  const tip = (text) => svg("title", { text });
  const num = (value) => (value === null || value === undefined ? null : Number(value));
  const fmtCount = (value) => (value === null ? "–" : count.format(value));
  const fmtRate = (value) => (value === null || Number.isNaN(value) ? "–" : percent.format(value));
  const day = (iso) => new Date(`${String(iso).slice(0, 10)}T00:00:00Z`);

  function chartFrame(container, height, label) {
    const width = Math.max(320, Math.round(container.clientWidth || 560));
    const frame = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": label });
    container.replaceChildren(frame);
    return { frame, width };
  }

  function legend(items) {
    return el("div", { class: "legend" }, items.map(([css, text]) => el("span", { class: css, text })));
  }

  // ---- the charts -------------------------------------------------------------------------------

  function renderKpis(overall) {
    for (const node of document.querySelectorAll("[data-metric]")) {
      const value = num(overall[node.dataset.metric]);
      node.textContent = node.dataset.metric.endsWith("_rate") ? fmtRate(value) : fmtCount(value);
    }
    const notes = {
      view_to_cart_rate: `${fmtRate(num(overall.view_to_cart_rate))} of viewing sessions`,
      cart_to_checkout_rate: `${fmtRate(num(overall.cart_to_checkout_rate))} of sessions with a cart`,
      lost: `${fmtCount(num(overall.sessions_lost_before_add_to_cart) + num(overall.sessions_lost_before_checkout))} sessions lost on the way`,
    };
    for (const node of document.querySelectorAll("[data-note]")) node.textContent = notes[node.dataset.note];
  }

  function renderFunnel(container, overall) {
    const rowHeight = 46;
    const gap = 40;
    const height = STEPS.length * rowHeight + (STEPS.length - 1) * gap + 8;
    const { frame, width } = chartFrame(container, height, "Funnel: sessions at each step");
    const labelWidth = 130;
    const noteWidth = Math.min(290, width * 0.33);
    const barSpace = width - labelWidth - noteWidth - 20;
    const center = labelWidth + barSpace / 2;
    const top = num(overall[STEPS[0].metric]) || 1;
    const bars = STEPS.map((step, i) => {
      const value = num(overall[step.metric]) || 0;
      const w = Math.max(4, (value / top) * barSpace);
      return { step, value, w, y: i * (rowHeight + gap) };
    });
    bars.forEach((bar, i) => {
      if (i > 0) {
        const prev = bars[i - 1];
        const y0 = prev.y + rowHeight;
        const y1 = bar.y;
        const t = TRANSITIONS[i - 1];
        frame.append(svg("polygon", {
          points: `${center - prev.w / 2},${y0} ${center + prev.w / 2},${y0} ${center + bar.w / 2},${y1} ${center - bar.w / 2},${y1}`,
          fill: "#edf5ec",
        }));
        const mid = (y0 + y1) / 2;
        frame.append(svg("text", { x: center, y: mid + 5, "text-anchor": "middle", class: "title", "font-size": 14,
          text: `${fmtRate(num(overall[t.rate]))} continue` }));
        const noteX = width - noteWidth + 10;
        frame.append(svg("text", { x: noteX, y: mid - 2, class: "drop", "font-size": 14, "font-weight": 600,
          text: `−${fmtCount(num(overall[t.lost]))} sessions` }));
        frame.append(svg("text", { x: noteX, y: mid + 16, class: "muted", "font-size": 12.5,
          text: `${fmtRate(num(overall[t.drop]))} drop-off` }));
      }
      frame.append(svg("text", { x: 0, y: bar.y + rowHeight / 2 + 5, class: "title", "font-size": 14.5, text: bar.step.label }));
      frame.append(svg("rect", { x: center - bar.w / 2, y: bar.y, width: bar.w, height: rowHeight, rx: 8, fill: bar.step.color },
        [tip(`${bar.step.label}: ${fmtCount(bar.value)} sessions`)]));
      frame.append(svg("text", { x: center, y: bar.y + rowHeight / 2 + 7, "text-anchor": "middle", "font-size": 20,
        class: bar.step.text, "data-step": bar.step.metric, text: fmtCount(bar.value) }));
    });
    const noteX = width - noteWidth + 10;
    const last = bars[bars.length - 1];
    frame.append(svg("text", { x: noteX, y: last.y + rowHeight / 2 - 2, "font-size": 14, "font-weight": 650, fill: "#1b5e20",
      text: `${fmtRate(num(overall.view_to_checkout_rate))} of viewers check out` }));
    frame.append(svg("text", { x: noteX, y: last.y + rowHeight / 2 + 16, class: "muted", "font-size": 12.5,
      text: `${fmtRate(num(overall.view_to_checkout_drop_off_rate))} of viewers lost overall` }));
  }

  function renderTrend(container, rows, grain) {
    const column = `metric_time__${grain}`;
    const periods = rows
      .filter((r) => r.sessions_with_page_view !== null)
      .map((r) => ({ ...r, when: day(r[column]) }))
      .sort((a, b) => a.when - b.when);
    if (!periods.length) {
      container.replaceChildren(el("p", { class: "loading", text: "No sessions in this period." }));
      return;
    }
    const height = 250;
    const holder = el("div");
    container.replaceChildren(legend([["view", "Page view"], ["cart", "Add to cart"], ["checkout", "Checkout"], ["rate", "View → checkout"]]), holder);
    const { frame, width } = chartFrame(holder, height, `Funnel by ${grain}`);
    const left = 44;
    const right = 46;
    const top = 12;
    const bottom = 34;
    const plotW = width - left - right;
    const plotH = height - top - bottom;
    const max = Math.max(...periods.map((p) => num(p.sessions_with_page_view))) || 1;
    const scaleMax = niceCeiling(max);
    const y = (v) => top + plotH - (v / scaleMax) * plotH;
    for (let i = 0; i <= 4; i += 1) {
      const v = (scaleMax / 4) * i;
      frame.append(svg("line", { x1: left, x2: width - right, y1: y(v), y2: y(v), class: "axis" }));
      frame.append(svg("text", { x: left - 6, y: y(v) + 4, "text-anchor": "end", "font-size": 11, class: "muted", text: count.format(v) }));
      frame.append(svg("text", { x: width - right + 6, y: y(v) + 4, "font-size": 11, class: "muted", text: `${25 * i}%` }));
    }
    const slot = plotW / periods.length;
    const barW = Math.min(34, (slot * 0.7) / STEPS.length);
    const points = [];
    periods.forEach((p, i) => {
      const x0 = left + slot * i + (slot - barW * STEPS.length) / 2;
      STEPS.forEach((step, s) => {
        const v = num(p[step.metric]) || 0;
        frame.append(svg("rect", { x: x0 + s * barW, y: y(v), width: barW - 2, height: top + plotH - y(v), rx: 3, fill: step.color },
          [tip(`${step.label}: ${fmtCount(v)}`)]));
      });
      const label = grain === "week" ? `Week of ${shortDate.format(p.when)}` : shortDate.format(p.when);
      frame.append(svg("text", { x: left + slot * (i + 0.5), y: height - 12, "text-anchor": "middle", "font-size": 12, text: label }));
      const rate = num(p.view_to_checkout_rate);
      if (rate !== null) points.push([left + slot * (i + 0.5), top + plotH - rate * plotH, rate]);
    });
    if (points.length > 1) {
      frame.append(svg("polyline", { points: points.map(([px, py]) => `${px},${py}`).join(" "), fill: "none", stroke: AMBER, "stroke-width": 2.5 }));
    }
    for (const [px, py, rate] of points) {
      frame.append(svg("circle", { cx: px, cy: py, r: 4.5, fill: "#fff", stroke: AMBER, "stroke-width": 2.5 }, [tip(`View → checkout ${fmtRate(rate)}`)]));
      frame.append(svg("text", { x: px, y: py - 9, "text-anchor": "middle", "font-size": 11.5, fill: AMBER, "font-weight": 650,
        stroke: "#fff", "stroke-width": 3, "paint-order": "stroke", text: fmtRate(rate) })); // a halo over the bars
    }
    const head = el("tr", {}, ["Period", "Page view", "Add to cart", "Checkout", "Overall"].map(
      (text, i) => el("th", { class: i ? "num" : "", text }),
    ));
    const body = periods.map((p) => el("tr", {}, [
      el("td", { text: grain === "week" ? `Week of ${shortDate.format(p.when)}` : shortDate.format(p.when) }),
      ...STEPS.map((step) => el("td", { class: "num", text: fmtCount(num(p[step.metric])) })),
      el("td", { class: "num", text: fmtRate(num(p.view_to_checkout_rate)) }),
    ]));
    container.append(el("table", { class: "data trend-table" }, [el("thead", {}, [head]), el("tbody", {}, body)]));
  }

  function niceCeiling(value) {
    const magnitude = 10 ** Math.floor(Math.log10(value));
    for (const step of [1, 2, 2.5, 5, 10]) if (step * magnitude >= value) return step * magnitude;
    return 10 * magnitude;
  }

  function rateBar(value) {
    const width = `${Math.max(0, Math.min(1, value || 0)) * 100}%`;
    const fill = el("span");
    fill.style.width = width; // CSSOM, allowed by the page's content security policy
    return el("div", { class: "inline-bar", title: fmtRate(value) }, [fill]);
  }

  function renderSegments(container, rows) {
    const order = { new: 0, returning: 1 };
    const sorted = [...rows].sort((a, b) => (order[a.session__visitor_type] ?? 9) - (order[b.session__visitor_type] ?? 9)
      || num(b.sessions_with_page_view) - num(a.sessions_with_page_view));
    const head = el("tr", {}, [
      el("th", { text: "Visitor · buyer" }), el("th", { class: "num", text: "Sessions" }),
      el("th", { class: "num", text: "To cart" }), el("th", { class: "num", text: "To checkout" }),
      el("th", { class: "num", text: "Overall" }), el("th", { class: "bar-cell", text: "" }),
    ]);
    const body = sorted.map((r) => el("tr", {}, [
      el("td", { text: `${capitalize(r.session__visitor_type)} · ${String(r.user__buyer_segment).replace(/ buyer$/, "")}` }),
      el("td", { class: "num", text: fmtCount(num(r.sessions_with_page_view)) }),
      el("td", { class: "num", text: fmtRate(num(r.view_to_cart_rate)) }),
      el("td", { class: "num", text: fmtRate(num(r.cart_to_checkout_rate)) }),
      el("td", { class: "num", text: fmtRate(num(r.view_to_checkout_rate)) }),
      el("td", { class: "bar-cell" }, [rateBar(num(r.view_to_checkout_rate))]),
    ]));
    container.replaceChildren(el("table", { class: "data" }, [el("thead", {}, [head]), el("tbody", {}, body)]));
  }

  function renderStates(container, rows) {
    const head = el("tr", {}, [
      el("th", { text: "Top states" }), el("th", { class: "num", text: "Sessions" }),
      el("th", { class: "num", text: "Checkouts" }), el("th", { class: "num", text: "Overall" }),
      el("th", { class: "bar-cell", text: "" }),
    ]);
    const body = rows.map((r) => el("tr", {}, [
      el("td", { text: r.user__state ?? "(unknown)" }),
      el("td", { class: "num", text: fmtCount(num(r.sessions_with_page_view)) }),
      el("td", { class: "num", text: fmtCount(num(r.sessions_with_checkout)) }),
      el("td", { class: "num", text: fmtRate(num(r.view_to_checkout_rate)) }),
      el("td", { class: "bar-cell" }, [rateBar(num(r.view_to_checkout_rate))]),
    ]));
    container.replaceChildren(el("table", { class: "data" }, [el("thead", {}, [head]), el("tbody", {}, body)]));
  }

  function renderProducts(container, rows) {
    const ranked = rows
      .filter((r) => num(r.product_sessions_viewed) > 0)
      .sort((a, b) => num(b.product_view_to_purchase_rate) - num(a.product_view_to_purchase_rate)
        || num(b.product_sessions_viewed) - num(a.product_sessions_viewed));
    const rowH = 24;
    const height = ranked.length * rowH + 26;
    const holder = el("div");
    container.replaceChildren(legend([["checkout", "View → purchase"], ["view", "View → add to cart"]]), holder);
    const { frame, width } = chartFrame(holder, height, "Products ranked by view-to-purchase conversion");
    const rank = 28;
    const nameW = Math.min(230, width * 0.28);
    const noteW = 200;
    const barX = rank + nameW;
    const barW = width - barX - noteW;
    const highest = Math.max(...ranked.map((r) => Math.max(num(r.product_view_to_cart_rate) || 0, num(r.product_view_to_purchase_rate) || 0)));
    const scale = Math.min(1, Math.max(0.2, Math.ceil(highest * 5) / 5)); // a multiple of 20%
    for (let i = 0; i <= 4; i += 1) {
      const x = barX + (barW * i) / 4;
      frame.append(svg("line", { x1: x, x2: x, y1: 0, y2: ranked.length * rowH, class: "axis" }));
      frame.append(svg("text", { x, y: ranked.length * rowH + 16, "text-anchor": "middle", "font-size": 11, class: "muted", text: fmtRate((scale * i) / 4).replace(".0%", "%") }));
    }
    ranked.forEach((r, i) => {
      const yy = i * rowH;
      const buy = num(r.product_view_to_purchase_rate) || 0;
      const cart = num(r.product_view_to_cart_rate) || 0;
      const detail = `${fmtCount(num(r.product_sessions_purchased))} of ${fmtCount(num(r.product_sessions_viewed))} viewing sessions bought`;
      frame.append(svg("text", { x: rank - 8, y: yy + 16, "text-anchor": "end", "font-size": 11.5, class: "muted", text: String(i + 1) }));
      frame.append(svg("text", { x: rank, y: yy + 16, "font-size": 13, text: r.product__product_name }, [tip(r.product__price_band || "")]));
      frame.append(svg("rect", { x: barX, y: yy + 5, width: Math.max(1, (cart / scale) * barW), height: 14, rx: 3, fill: "#d7ecd6" },
        [tip(`View → add to cart ${fmtRate(cart)}`)]));
      frame.append(svg("rect", { x: barX, y: yy + 7, width: Math.max(1, (buy / scale) * barW), height: 10, rx: 3, fill: "#2e7d32" },
        [tip(`${r.product__product_name}: ${fmtRate(buy)} (${detail})`)]));
      frame.append(svg("text", { x: barX + barW + 10, y: yy + 16, "font-size": 12.5, "font-weight": 650, fill: "#1b5e20", text: fmtRate(buy) }));
      frame.append(svg("text", { x: barX + barW + 62, y: yy + 16, "font-size": 11.5, class: "muted",
        text: `${fmtCount(num(r.product_sessions_purchased))}/${fmtCount(num(r.product_sessions_viewed))} sessions` }));
    });
  }

  function renderInventory(container, summary, onHand, changes) {
    const weeks = [...new Set(onHand.map((r) => String(r.metric_time__week).slice(0, 10)))].sort();
    const cells = new Map(onHand.map((r) => [`${r.product__product_name}|${String(r.metric_time__week).slice(0, 10)}`, r]));
    const moved = new Map();
    for (const r of changes) {
      moved.set(r.product__product_name, (moved.get(r.product__product_name) || 0) + (num(r.units_moved) || 0));
    }
    const stockouts = new Map();
    for (const r of onHand) {
      if (num(r.out_of_stock_products) > 0) {
        const list = stockouts.get(r.product__product_name) || [];
        list.push(String(r.metric_time__week).slice(0, 10));
        stockouts.set(r.product__product_name, list);
      }
    }
    const latest = (name) => num(cells.get(`${name}|${weeks[weeks.length - 1]}`)?.inventory_on_hand) ?? Infinity;
    const products = [...new Set(onHand.map((r) => r.product__product_name))]
      .sort((a, b) => (stockouts.get(b)?.length || 0) - (stockouts.get(a)?.length || 0)
        || latest(a) - latest(b) || a.localeCompare(b)); // stockouts first, then the least stock left
    const max = Math.max(1, ...onHand.map((r) => num(r.inventory_on_hand) || 0));
    const weekLabel = (w) => `Week of ${shortDate.format(day(w))}`;

    if (stockouts.size) {
      const names = [...stockouts.entries()].map(([name, list]) => `${name} (${list.map((w) => shortDate.format(day(w))).join(", ")})`);
      summary.replaceChildren(el("strong", { text: `${stockouts.size} of ${products.length} products ran out of stock` }),
        `: ${names.join(" · ")}.`);
    } else {
      summary.textContent = `No product ran out of stock in these ${weeks.length} weeks.`;
    }

    const head = el("tr", {}, [
      el("th", { class: "product", text: "Product" }),
      ...weeks.map((w) => el("th", { text: weekLabel(w) })),
      el("th", { class: "num", text: `Units moved (${weeks.length} wks)` }),
    ]);
    const body = products.map((name) => el("tr", {}, [
      el("td", { class: "product", text: name }),
      ...weeks.map((w) => {
        const r = cells.get(`${name}|${w}`);
        if (!r || r.inventory_on_hand === null) return el("td", { class: "none", text: "·" });
        const units = num(r.inventory_on_hand);
        const out = num(r.out_of_stock_products) > 0;
        const level = out ? "out" : `level-${Math.min(4, Math.floor((units / max) * 5))}`;
        return el("td", { class: level, title: `${name}, ${weekLabel(w)}: ${fmtCount(units)} units${out ? " — out of stock" : ""}`,
          text: out ? "0 · out" : fmtCount(units) });
      }),
      el("td", { class: "moved", text: moved.has(name) ? fmtCount(moved.get(name)) : "–" }),
    ]));
    container.replaceChildren(
      legend([["stockout", "Out of stock that week"]]),
      el("table", { class: "heatmap" }, [el("thead", {}, [head]), el("tbody", {}, body)]),
    );
  }

  function renderQuality(container, summary, rows) {
    const found = (r) => num(r.data_quality_anomalies) || 0;
    const sorted = [...rows].sort((a, b) => found(b) - found(a) || a.anomaly__anomaly_kind.localeCompare(b.anomaly__anomaly_kind));
    const total = sorted.reduce((sum, r) => sum + found(r), 0);
    const kinds = sorted.filter((r) => found(r) > 0).length;
    if (total) {
      summary.replaceChildren(el("strong", { text: `${fmtCount(total)} anomalies of ${kinds} kinds` }),
        " found in the raw data; each is handled by the policy below.");
    } else {
      summary.textContent = `No anomaly found in the raw data (${sorted.length} kinds checked).`;
    }
    const head = el("tr", {}, ["Anomaly", "In table", "Found", "Policy"].map((text, i) => el("th", { class: i === 2 ? "num" : "", text })));
    const body = sorted.map((r) => el("tr", { "data-anomaly": r.anomaly__anomaly_kind }, [
      el("td", { text: capitalize(r.anomaly__anomaly_kind.replaceAll("_", " ")) }),
      el("td", { text: r.anomaly__source_table }),
      el("td", { class: found(r) ? "num flagged" : "num", text: fmtCount(found(r)) }),
      el("td", { text: r.anomaly__anomaly_policy }),
    ]));
    container.replaceChildren(el("table", { class: "data quality" }, [el("thead", {}, [head]), el("tbody", {}, body)]));
  }

  const capitalize = (text) => (text ? text[0].toUpperCase() + text.slice(1) : "");

  // ---- loading it all ---------------------------------------------------------------------------

  const state = { grain: "day", trend: {} };

  function showProblem(message) {
    const node = document.getElementById("problem");
    node.textContent = message;
    node.hidden = !message;
  }

  function showLogin(message) {
    document.body.dataset.state = "login";
    document.getElementById("login").hidden = false;
    const error = document.getElementById("login-error");
    error.textContent = message || "";
    error.hidden = !message;
    document.getElementById("token").focus();
  }

  async function section(id, load, render) {
    const container = document.getElementById(id);
    if (!container.firstChild) container.replaceChildren(el("p", { class: "loading", text: "Loading…" }));
    try {
      render(container, await load());
    } catch (error) {
      if (error instanceof AuthRequired) throw error;
      container.replaceChildren(el("p", { class: "failed", text: `Could not load: ${error.message}` }));
      throw error;
    }
  }

  async function loadVersion() {
    try {
      // /healthz names the published version only to a caller with the token
      const health = await (await fetch("/healthz", { headers: authHeaders(), credentials: "omit" })).json();
      document.getElementById("version").textContent = `published ${health.published_version}`;
    } catch {
      document.getElementById("version").textContent = "server unreachable";
    }
  }

  async function renderTrendFor(grain) {
    state.grain = grain;
    const url = new URL(window.location.href);
    url.searchParams.set("grain", grain); // a link to this view keeps the grain
    window.history.replaceState(null, "", url.pathname + url.search + url.hash);
    for (const button of document.querySelectorAll("[data-grain]")) button.setAttribute("aria-pressed", String(button.dataset.grain === grain));
    await section("trend", async () => {
      state.trend[grain] ||= await saved(grain === "day" ? "funnel_by_day" : "funnel_by_week");
      return state.trend[grain];
    }, (container, rows) => renderTrend(container, rows, grain));
  }

  async function loadAll() {
    document.body.dataset.state = "loading";
    document.getElementById("login").hidden = true;
    showProblem("");
    state.trend = {};
    loadVersion();
    const results = await Promise.allSettled([
      section("funnel", () => saved("funnel_overall"), (container, rows) => {
        renderKpis(rows[0] || {});
        renderFunnel(container, rows[0] || {});
      }),
      renderTrendFor(state.grain),
      section("segments", () => saved("funnel_by_user_segment"), renderSegments),
      section("states", () => runQuery({
        metrics: [{ name: "sessions_with_page_view" }, { name: "sessions_with_checkout" }, { name: "view_to_checkout_rate" }],
        groupBy: [{ name: "user__state" }],
        orderBy: [{ metric: { name: "sessions_with_page_view" }, descending: true }],
        limit: 8,
      }), renderStates),
      section("products", () => saved("funnel_by_product"), renderProducts),
      section("inventory", () => Promise.all([
        saved("inventory_on_hand_by_product_by_week"), saved("inventory_changes_by_product_by_week"),
      ]), (container, [onHand, changes]) => renderInventory(container, document.getElementById("stockout-summary"), onHand, changes)),
      section("quality", () => saved("data_quality_anomalies"),
        (container, rows) => renderQuality(container, document.getElementById("quality-summary"), rows)),
    ]);
    const failures = results.filter((r) => r.status === "rejected").map((r) => r.reason);
    if (failures.some((e) => e instanceof AuthRequired)) {
      const hadToken = Boolean(sessionStorage.getItem(TOKEN_KEY));
      sessionStorage.removeItem(TOKEN_KEY);
      showLogin(hadToken ? "That token was not accepted." : "");
      return;
    }
    if (failures.length) {
      showProblem(`Some charts could not be loaded: ${failures[0].message}`);
      document.body.dataset.state = "error";
      return;
    }
    document.body.dataset.state = "ready";
  }

  function start() {
    takeTokenFromUrl();
    const grain = new URLSearchParams(window.location.search).get("grain");
    if (grain === "day" || grain === "week") state.grain = grain;
    document.getElementById("refresh").addEventListener("click", () => loadAll());
    for (const button of document.querySelectorAll("[data-grain]")) {
      button.addEventListener("click", () => renderTrendFor(button.dataset.grain).catch((e) => showProblem(e.message)));
    }
    document.getElementById("login-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const token = document.getElementById("token").value.trim();
      if (token) sessionStorage.setItem(TOKEN_KEY, token);
      document.getElementById("token").value = "";
      loadAll();
    });
    loadAll();
  }

  start();
})();
