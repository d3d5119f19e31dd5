/* yuqing dashboard. Plain JS, no build step, served locally (no CDN).
 * Every piece of untrusted text is inserted with textContent (the h() helper never sets innerHTML),
 * so a post containing <script> or <img onerror> shows as text and runs nothing. */
"use strict";

const LEVELS = { 1: "蓝色", 2: "黄色", 3: "橙色", 4: "红色" };
const LEVEL_COLOURS = { 1: "#2f7ed8", 2: "#e0b100", 3: "#f07c1b", 4: "#d7263d" };
const STATES = [
  ["new", "预警"], ["acknowledged", "签收"], ["assessing", "研判"], ["handling", "处置"],
  ["responded", "回应"], ["closed", "办结"], ["evaluated", "评估"],
];
const STATE_NAMES = Object.fromEntries([...STATES, ["merged", "已合并"]]);
const SENTIMENT_COLOURS = { "负面": "#d7263d", "中性": "#9aa5b1", "正面": "#2e9e5b" };
const state = { user: null, csrf: null, charts: [], stream: null, wall: [] };

/* ---------- DOM helpers (textContent only) ---------- */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "on") for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}
const $main = () => document.getElementById("main");
function render(...nodes) {
  disposeCharts();
  const main = $main();
  main.replaceChildren(...nodes);
}
function toast(text, flash) {
  const t = document.getElementById("toast");
  t.textContent = text;
  t.classList.remove("hidden");
  t.classList.toggle("flash", !!flash);
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => t.classList.add("hidden"), 6000);
}
function fmtTime(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return d.toLocaleString("zh-CN", { hour12: false, timeZone: "Asia/Shanghai" });
}
function levelBadge(level) {
  if (!level) return h("span", { class: "muted" }, "—");
  return h("span", { class: `level level-${level}` }, LEVELS[level] || String(level));
}
function countdown(iso) {
  if (!iso) return h("span", { class: "muted" }, "—");
  const ms = new Date(iso) - Date.now();
  const abs = Math.abs(ms);
  const hrs = Math.floor(abs / 3600000), mins = Math.floor((abs % 3600000) / 60000);
  const text = `${hrs}小时${mins}分`;
  return ms < 0 ? h("span", { class: "overdue" }, `已超时 ${text}`) : h("span", {}, `剩余 ${text}`);
}

/* ---------- API ---------- */
async function api(path, opts = {}) {
  const headers = Object.assign({ Accept: "application/json" }, opts.headers || {});
  const init = { method: opts.method || "GET", headers, credentials: "same-origin" };
  if (opts.body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(opts.body);
  }
  if (init.method !== "GET" && state.csrf) headers["X-CSRF-Token"] = state.csrf;
  const r = await fetch(path, init);
  if (r.status === 401 && !opts.allow401) {
    state.user = null;
    location.hash = "#/login";
    throw new Error("请先登录");
  }
  const type = r.headers.get("content-type") || "";
  const data = type.includes("json") ? await r.json() : await r.text();
  if (!r.ok) {
    const detail = data && data.detail ? data.detail : data;
    throw new Error(typeof detail === "string" ? detail : JSON.stringify(detail));
  }
  return data;
}
function qs(params) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== "" && v !== null && v !== undefined) p.set(k, v);
  return p.toString();
}

/* ---------- charts ---------- */
function chart(el, option) {
  if (!window.echarts) return null;
  const c = window.echarts.init(el, null, { renderer: "canvas" });
  c.setOption(Object.assign({ animation: false, textStyle: { fontFamily: getComputedStyle(document.body).fontFamily } }, option));
  state.charts.push(c);
  return c;
}
function disposeCharts() {
  for (const c of state.charts) c.dispose();
  state.charts = [];
}
window.addEventListener("resize", () => state.charts.forEach((c) => c.resize()));
function pie(el, counts, colours) {
  const data = Object.entries(counts).map(([name, value]) => ({ name, value, itemStyle: colours && colours[name] ? { color: colours[name] } : undefined }));
  return chart(el, { tooltip: { trigger: "item" }, legend: { bottom: 0, type: "scroll" },
    series: [{ type: "pie", radius: ["35%", "65%"], data, label: { formatter: "{b} {d}%" } }] });
}
function bars(el, counts, colour) {
  const entries = Object.entries(counts).sort((a, b) => b[1] - a[1]).slice(0, 12);
  return chart(el, { grid: { left: 90, right: 20, top: 10, bottom: 20 }, tooltip: {},
    xAxis: { type: "value" }, yAxis: { type: "category", inverse: true, data: entries.map((e) => e[0]) },
    series: [{ type: "bar", data: entries.map((e) => e[1]), itemStyle: { color: colour || "#1f5fa8" } }] });
}

/* ---------- pages ---------- */
const RANGES = { today: "今天", "24h": "24小时", "7d": "7天", custom: "自定义" };
function rangeBounds(range, from, to) {
  const now = new Date();
  if (range === "today") { const d = new Date(now); d.setHours(0, 0, 0, 0); return [d, now]; }
  if (range === "7d") return [new Date(now - 7 * 864e5), now];
  if (range === "custom" && from && to) return [new Date(from), new Date(to)];
  return [new Date(now - 864e5), now];
}

async function pageOverview(params) {
  const range = params.get("range") || "24h";
  const [from, to] = rangeBounds(range, params.get("from"), params.get("to"));
  const picker = h("select", { "aria-label": "时间范围", on: { change: (e) => { location.hash = `#/overview?range=${e.target.value}`; } } },
    ...Object.entries(RANGES).map(([k, v]) => h("option", { value: k, selected: k === range }, v)));
  const fromIn = h("input", { type: "datetime-local", value: params.get("from") || "" });
  const toIn = h("input", { type: "datetime-local", value: params.get("to") || "" });
  const apply = h("button", { class: "btn secondary", type: "button", on: { click: () => {
    location.hash = `#/overview?${qs({ range: "custom", from: fromIn.value, to: toIn.value })}`; } } }, "应用");
  const custom = h("span", { class: range === "custom" ? "" : "hidden" }, fromIn, " 至 ", toIn, " ", apply);
  const [ov, events, summary, keywords] = await Promise.all([
    api(`/api/v1/stats/overview?${qs({ from: from.toISOString(), to: to.toISOString() })}`),
    api(`/api/v1/events?${qs({ limit: 10, samples: 0 })}`),
    api("/api/v1/tickets/summary", { allow401: true }).catch(() => null),
    api(`/api/v1/stats/keywords?${qs({ from: from.toISOString(), to: to.toISOString(), sentiment: "负面" })}`).catch(() => null),
  ]);
  const neg = ov.by_sentiment["负面"] || 0;
  const kpis = h("div", { class: "grid cols-4" },
    kpi("信息总量", ov.total), kpi("负面信息", neg), kpi("负面占比", ov.total ? `${(100 * neg / ov.total).toFixed(1)}%` : "—"),
    kpi("未办结工单", summary ? summary.open : "—"));
  const trend = h("div", { class: "chart", id: "chart-trend" });
  const topics = h("div", { class: "chart small", id: "chart-topics" });
  const sources = h("div", { class: "chart small", id: "chart-sources" });
  const places = h("div", { class: "chart small", id: "chart-places" });
  const words = h("div", { class: "chart small", id: "chart-keywords" });
  const hot = h("tbody");
  const sparkCells = [];
  for (const e of events.items) {
    const cell = h("div", { class: "spark" });
    sparkCells.push([cell, e.heat_series]);
    hot.append(h("tr", { class: "clickable", on: { click: () => { location.hash = `#/events/${e.id}`; } } },
      h("td", {}, e.title), h("td", {}, e.heat.toFixed(1)), h("td", {}, e.size), h("td", {}, `${e.negative_share_pct}%`),
      h("td", {}, levelBadge(e.level)), h("td", {}, cell)));
  }
  const unitsTable = h("tbody");
  if (summary && summary.by_unit) {
    for (const u of summary.by_unit) unitsTable.append(h("tr", {}, h("td", {}, u.unit_name || u.unit), h("td", {}, u.open), h("td", { class: u.overdue ? "overdue" : "" }, u.overdue)));
  }
  render(
    h("div", { class: "toolbar" }, h("h1", {}, "舆情总览"), picker, custom),
    kpis,
    h("div", { class: "grid cols-3", style: null },
      h("div", { class: "panel" }, h("h2", {}, "信息量走势（按情感）"), trend),
      h("div", { class: "panel" }, h("h2", {}, "各单位工单（未办结 / 超时）"),
        h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "单位"), h("th", {}, "未办结"), h("th", {}, "超时"))), unitsTable))),
    h("div", { class: "grid cols-4" },
      h("div", { class: "panel" }, h("h2", {}, "话题分布"), topics),
      h("div", { class: "panel" }, h("h2", {}, "来源分布"), sources),
      h("div", { class: "panel" }, h("h2", {}, "属地分布"), places),
      h("div", { class: "panel" }, h("h2", {}, "负面高频词"), words)),
    h("div", { class: "panel" }, h("h2", {}, "热点事件（按热度）"),
      h("table", {}, h("thead", {}, h("tr", {}, ...["事件", "热度", "信息量", "负面占比", "预警级别", "走势"].map((t) => h("th", {}, t)))), hot)),
  );
  const times = ov.series.map((b) => fmtTime(b.start));
  chart(trend, { tooltip: { trigger: "axis" }, legend: { top: 0 }, grid: { left: 40, right: 20, top: 30, bottom: 40 },
    xAxis: { type: "category", data: times }, yAxis: { type: "value" },
    series: ["负面", "中性", "正面"].map((s) => ({ name: s, type: "line", stack: "all", areaStyle: {}, symbol: "none",
      itemStyle: { color: SENTIMENT_COLOURS[s] }, data: ov.series.map((b) => b.counts[s] || 0) })) });
  pie(topics, ov.by_topic);
  pie(sources, ov.by_source);
  bars(places, ov.by_district || {});
  bars(words, keywords ? Object.fromEntries(keywords.items.map((k) => [k.word, k.count])) : {}, "#d7263d");
  for (const [cell, series] of sparkCells) {
    const keys = Object.keys(series || {}).sort();
    chart(cell, { grid: { left: 0, right: 0, top: 2, bottom: 2 }, xAxis: { type: "category", show: false, data: keys },
      yAxis: { type: "value", show: false }, series: [{ type: "line", symbol: "none", data: keys.map((k) => series[k]), lineStyle: { width: 1.5 } }] });
  }
}
function kpi(label, value) {
  return h("div", { class: "panel kpi" }, h("div", { class: "value" }, String(value)), h("div", { class: "label" }, label));
}

async function pageAlerts() {
  const [tickets, summary] = await Promise.all([
    api(`/api/v1/tickets?${qs({ limit: 60, open: "true" })}`),
    api("/api/v1/tickets/summary").catch(() => null),
  ]);
  state.wall = tickets.items || [];
  const wall = h("div", { class: "wall", id: "wall" }, ...state.wall.map((t) => alertCard(t, false)));
  const counts = h("div", { class: "toolbar" }, h("h1", {}, "实时预警墙"),
    h("span", { class: "muted" }, "新预警与升级预警实时出现（无需刷新）"),
    summary ? h("span", {}, `未办结 ${summary.open} · 超时 `, h("b", { class: "overdue" }, String(summary.overdue))) : null);
  render(counts, wall);
}
function alertCard(t, fresh) {
  return h("div", { class: `card level-${t.level}${fresh ? " fresh" : ""}`, dataset: { ticket: t.id },
    on: { click: () => { location.hash = `#/tickets/${t.id}`; } } },
    h("div", {}, levelBadge(t.level), " ", h("span", { class: "state" }, STATE_NAMES[t.state] || t.state)),
    h("h3", {}, t.title || t.event_id),
    h("div", { class: "muted" }, `牵头单位：${t.lead_unit_name || t.lead_unit}`),
    h("div", {}, t.reason || ""),
    h("div", {}, "回应时限：", countdown(firstDeadline(t))));
}
function firstDeadline(t) {
  const d = t.deadlines || {};
  return d.response || d.first_response || d.authoritative_info || d.sign || Object.values(d)[0];
}
function onTicketChange(change) {
  if (change.created || change.escalated || change.level_changed) {
    const level = change.level || 1;
    toast(`${change.created ? "新预警" : "预警升级"}：${LEVELS[level]}预警 ${change.title || change.event_id}`, level >= 3);
    if (level >= 3) beep();
  }
  const wall = document.getElementById("wall");
  if (wall) {
    api(`/api/v1/tickets/${encodeURIComponent(change.ticket_id)}`).then((t) => {
      const old = wall.querySelector(`[data-ticket="${CSS.escape(t.id)}"]`);
      const card = alertCard(t, true);
      if (old) old.replaceWith(card); else wall.prepend(card);
    }).catch(() => {});
  }
}
function beep() {
  try {
    const ctx = new (window.AudioContext || window.webkitAudioContext)();
    const o = ctx.createOscillator(); const g = ctx.createGain();
    o.connect(g); g.connect(ctx.destination); o.frequency.value = 880; g.gain.value = 0.08;
    o.start(); o.stop(ctx.currentTime + 0.4);
  } catch (_e) { /* audio blocked until the user interacts: the visual cue remains */ }
}
function connectStream() {
  if (state.stream) return;
  const es = new EventSource("/api/v1/stream/tickets");
  es.addEventListener("ticket", (ev) => { try { onTicketChange(JSON.parse(ev.data)); } catch (_e) { /* ignore */ } });
  es.onerror = () => { /* EventSource reconnects by itself */ };
  state.stream = es;
}

async function pageEvents() {
  const events = await api(`/api/v1/events?${qs({ limit: 50, samples: 1 })}`);
  const body = h("tbody");
  for (const e of events.items) {
    body.append(h("tr", { class: "clickable", on: { click: () => { location.hash = `#/events/${e.id}`; } } },
      h("td", {}, e.title), h("td", {}, e.heat.toFixed(1)), h("td", {}, e.size), h("td", {}, e.unique_authors),
      h("td", {}, `${e.negative_share_pct}%`), h("td", {}, e.topic || "—"), h("td", {}, (e.districts || []).join("、") || "—"),
      h("td", {}, fmtTime(e.last_seen)), h("td", {}, levelBadge(e.level))));
  }
  render(h("h1", {}, "热点事件"), h("div", { class: "panel" }, h("table", {},
    h("thead", {}, h("tr", {}, ...["事件", "热度", "信息量", "作者数", "负面占比", "话题", "属地", "最近", "级别"].map((t) => h("th", {}, t)))), body)));
}

async function pageEvent(id) {
  const e = await api(`/api/v1/events/${encodeURIComponent(id)}`);
  const [timeline, ticket] = await Promise.all([
    api(`/api/v1/stats/overview?${qs({ event_id: id, from: new Date(new Date(e.first_seen) - 3600e3).toISOString(), to: new Date(new Date(e.last_seen).getTime() + 3600e3).toISOString() })}`),
    e.ticket_id ? api(`/api/v1/tickets/${encodeURIComponent(e.ticket_id)}`).catch(() => null) : Promise.resolve(null),
  ]);
  const tl = h("div", { class: "chart", id: "chart-event" });
  const src = h("div", { class: "chart small" });
  const posts = h("div", {}, ...e.representatives.map(postView));
  render(
    h("div", { class: "toolbar" }, h("h1", {}, e.title), levelBadge(e.level)),
    h("div", { class: "grid cols-4" }, kpi("热度", e.heat.toFixed(1)), kpi("信息量（含重复转发）", e.size), kpi("独立作者", e.unique_authors), kpi("负面占比", `${e.negative_share_pct}%`)),
    h("div", { class: "grid cols-3" },
      h("div", { class: "panel" }, h("h2", {}, "时间线：信息量与负面占比"), tl),
      h("div", { class: "panel" }, h("h2", {}, "来源分布"), src,
        h("dl", { class: "kv" }, h("dt", {}, "话题"), h("dd", {}, e.topic || "—"), h("dt", {}, "地点"), h("dd", {}, (e.places || []).join("、") || "—"),
          h("dt", {}, "属地"), h("dd", {}, (e.districts || []).join("、") || "—"), h("dt", {}, "首次出现"), h("dd", {}, fmtTime(e.first_seen)),
          h("dt", {}, "最近"), h("dd", {}, fmtTime(e.last_seen))))),
    h("div", { class: "grid cols-2" },
      h("div", { class: "panel" }, h("h2", {}, "代表性信息"), posts),
      h("div", { class: "panel" }, h("h2", {}, "预警工单"), ticket ? ticketSummary(ticket) : h("p", { class: "muted" }, "尚未生成工单"))),
  );
  const times = timeline.series.map((b) => fmtTime(b.start));
  chart(tl, { tooltip: { trigger: "axis" }, legend: { top: 0 }, grid: { left: 40, right: 50, top: 30, bottom: 40 },
    xAxis: { type: "category", data: times }, yAxis: [{ type: "value", name: "条" }, { type: "value", name: "负面%", max: 100 }],
    series: [{ name: "信息量", type: "bar", data: timeline.series.map((b) => Object.values(b.counts).reduce((a, c) => a + c, 0)) },
      { name: "负面占比", type: "line", yAxisIndex: 1, itemStyle: { color: "#d7263d" },
        data: timeline.series.map((b) => { const t = Object.values(b.counts).reduce((a, c) => a + c, 0); return t ? Math.round(100 * (b.counts["负面"] || 0) / t) : 0; }) }] });
  pie(src, e.sources || {});
}
function postView(p) {
  return h("div", { class: "post" },
    h("div", { class: "meta" }, `${p.source} · ${fmtTime(p.published_at)} · ${p.author || "匿名"} · ${p.sentiment.label}`,
      p.url ? [" · ", h("a", { href: safeUrl(p.url), target: "_blank", rel: "noopener noreferrer" }, "原文")] : null),
    p.title ? h("b", {}, p.title) : null, p.title ? h("br") : null, p.text);
}
function safeUrl(u) {
  try { const x = new URL(u, location.href); return ["http:", "https:"].includes(x.protocol) ? x.href : "#"; } catch (_e) { return "#"; }
}
function ticketSummary(t) {
  return h("div", {}, h("p", {}, levelBadge(t.level), " ", h("span", { class: "state" }, STATE_NAMES[t.state] || t.state), " ",
    h("a", { href: `#/tickets/${t.id}` }, "查看工单")),
  h("dl", { class: "kv" }, h("dt", {}, "牵头单位"), h("dd", {}, t.lead_unit_name || t.lead_unit), h("dt", {}, "时限"), h("dd", {}, countdown(firstDeadline(t)))));
}

async function pageSearch(params) {
  const q = params.get("q") || "";
  const form = h("form", { class: "toolbar", on: { submit: (ev) => { ev.preventDefault(); const f = new FormData(ev.target);
    location.hash = `#/search?${qs(Object.fromEntries(f.entries()))}`; } } },
  h("input", { name: "q", value: q, placeholder: "关键词", "aria-label": "关键词" }),
  select("source", params.get("source"), { "": "全部来源", weibo: "微博", wechat: "微信", douyin: "抖音", news: "新闻", forum: "论坛", hotline: "12345热线", mailbox: "网民留言" }),
  select("sentiment", params.get("sentiment"), { "": "全部情感", "负面": "负面", "中性": "中性", "正面": "正面" }),
  h("input", { name: "district", value: params.get("district") || "", placeholder: "属地，如 A3区" }),
  h("button", { class: "btn", type: "submit" }, "检索"));
  const offset = Number(params.get("offset") || 0);
  const res = await api(`/api/v1/posts?${qs({ q, source: params.get("source"), sentiment: params.get("sentiment"), district: params.get("district"), limit: 20, offset })}`);
  const pager = h("div", { class: "toolbar" }, h("span", { class: "muted" }, `共 ${res.total} 条`),
    offset > 0 ? h("a", { href: `#/search?${qs({ ...Object.fromEntries(params), offset: Math.max(0, offset - 20) })}` }, "上一页") : null,
    offset + 20 < res.total ? h("a", { href: `#/search?${qs({ ...Object.fromEntries(params), offset: offset + 20 })}` }, "下一页") : null);
  render(h("h1", {}, "信息检索"), form, h("div", { class: "panel" }, pager, ...res.items.map(postView)));
}
function select(name, value, options) {
  return h("select", { name, "aria-label": name }, ...Object.entries(options).map(([k, v]) => h("option", { value: k, selected: (value || "") === k }, v)));
}

/* ---------- tickets ---------- */
async function pageTickets(params) {
  const res = await api(`/api/v1/tickets?${qs({ limit: 200, level: params.get("level"), unit: params.get("unit") })}`);
  const cols = STATES.map(([key, name]) => {
    const items = res.items.filter((t) => t.state === key);
    return h("div", { class: "column", dataset: { state: key } }, h("h3", {}, `${name}（${items.length}）`), ...items.map((t) => ticketCard(t)));
  });
  render(h("div", { class: "toolbar" }, h("h1", {}, "预警工单"),
    h("span", { class: "muted" }, `共 ${res.total} 件`)), h("div", { class: "board" }, ...cols));
}
function ticketCard(t) {
  return h("div", { class: `card level-${t.level}`, dataset: { ticket: t.id }, on: { click: () => { location.hash = `#/tickets/${t.id}`; } } },
    levelBadge(t.level), h("h3", {}, t.title || t.event_id), h("div", { class: "muted" }, t.lead_unit_name || t.lead_unit),
    h("div", {}, countdown(firstDeadline(t))));
}

async function pageTicket(id) {
  const t = await api(`/api/v1/tickets/${encodeURIComponent(id)}`);
  const deadlines = h("dl", { class: "kv" }, ...Object.entries(t.deadlines || {}).flatMap(([k, v]) => [h("dt", {}, DEADLINE_NAMES[k] || k), h("dd", {}, fmtTime(v), " ", countdown(v))]));
  const history = h("ol", { class: "history" }, ...(t.history || []).map((a) => h("li", {}, `${fmtTime(a.at)} ${a.actor} ${ACTION_NAMES[a.action] || a.action}`,
    a.to_state ? ` → ${STATE_NAMES[a.to_state] || a.to_state}` : "", a.detail && a.detail.reason ? `（${a.detail.reason}）` : "")));
  const routing = t.routing ? h("pre", { class: "muted" }, JSON.stringify(t.routing, null, 2)) : null;
  render(
    h("div", { class: "toolbar" }, h("h1", {}, t.title || t.event_id), levelBadge(t.level), h("span", { class: "state", id: "ticket-state" }, STATE_NAMES[t.state] || t.state)),
    h("div", { class: "grid cols-2" },
      h("div", { class: "panel" }, h("h2", {}, "工单信息"),
        h("dl", { class: "kv" }, h("dt", {}, "预警原因"), h("dd", {}, t.reason || "—"), h("dt", {}, "牵头单位"), h("dd", {}, t.lead_unit_name || t.lead_unit),
          h("dt", {}, "配合单位"), h("dd", {}, (t.cooperating_units || []).join("、") || "—"), h("dt", {}, "事件"), h("dd", {}, h("a", { href: `#/events/${t.event_id}` }, "查看事件"))),
        h("h2", {}, "时限"), deadlines, h("h2", {}, "派单依据"), routing),
      h("div", { class: "panel" }, h("h2", {}, "操作"), ticketActions(t), h("h2", {}, "回应"), responsesView(t), h("h2", {}, "处理记录"), history)),
  );
}
const DEADLINE_NAMES = { sign: "签收", first_response: "首次回应", response: "回应", authoritative_info: "发布权威信息", press_conference: "新闻发布会", close: "办结" };
const ACTION_NAMES = { create: "生成预警", open: "生成预警", acknowledge: "签收", assess: "研判", start_handling: "开始处置", reject: "退回", reassign: "改派",
  request_extension: "申请延期", decide_extension: "审批延期", merge: "合并", close: "办结", reopen: "重开", respond: "发布回应", publish: "发布回应", level: "级别调整",
  remind: "催办", overdue: "超时", escalate: "督办", evaluate: "效果评估" };

function ticketActions(t) {
  const box = h("div", { class: "toolbar" });
  const act = (label, action, body) => h("button", { class: "btn", type: "button", dataset: { action }, on: { click: async () => {
    try {
      const payload = typeof body === "function" ? body() : body;
      if (payload === null) return;
      await api(`/api/v1/tickets/${encodeURIComponent(t.id)}/${action}`, { method: "POST", body: payload || {} });
      toast(`已${label}`);
      route();
    } catch (err) { toast(`操作失败：${err.message}`); }
  } } }, label);
  const allowed = new Set(t.allowed_actions || []);
  const reasonPrompt = (q) => () => { const r = prompt(q); return r ? { reason: r } : null; };
  const spec = [
    ["签收", "acknowledge", {}], ["研判", "assess", () => ({ level: t.level, facts: "已核实", risk: "中" })], ["开始处置", "start_handling", {}],
    ["退回", "reject", reasonPrompt("退回原因")], ["申请延期", "request_extension", () => { const r = prompt("延期原因"); return r ? { stage: "response", hours: 24, reason: r } : null; }],
    ["办结", "close", () => ({ summary: prompt("办结说明") || "已办结" })], ["重开", "reopen", reasonPrompt("重开原因")],
  ];
  for (const [label, action, body] of spec) if (allowed.has(action)) box.append(act(label, action, body));
  if (!box.childNodes.length) box.append(h("span", { class: "muted" }, "当前角色在此状态下无可用操作"));
  return box;
}
function responsesView(t) {
  const wrap = h("div", {});
  for (const r of t.responses || []) {
    const actions = h("span", {});
    if ((r.allowed_actions || []).includes("approve")) actions.append(h("button", { class: "btn secondary", type: "button", dataset: { action: "approve" }, on: { click: () => responseAction(t, r, "approve") } }, "审核通过"));
    if ((r.allowed_actions || []).includes("publish")) actions.append(h("button", { class: "btn", type: "button", dataset: { action: "publish" }, on: { click: () => responseAction(t, r, "publish") } }, "发布"));
    wrap.append(h("div", { class: "post" }, h("div", { class: "meta" }, `${r.channel} · ${r.state} · 起草 ${r.drafted_by} · 审核 ${(r.approvals || []).length} 人`), r.text, h("div", {}, actions)));
  }
  if ((t.allowed_actions || []).includes("draft_response")) {
    const text = h("textarea", { "aria-label": "回应口径", placeholder: "回应口径" });
    const channel = select("channel", "website", { website: "政府网站", weibo: "政务微博", press_conference: "新闻发布会", hotline_reply: "热线答复" });
    wrap.append(text, h("div", { class: "toolbar" }, channel, h("button", { class: "btn", type: "button", dataset: { action: "draft_response" }, on: { click: async () => {
      try {
        await api(`/api/v1/tickets/${encodeURIComponent(t.id)}/responses`, { method: "POST", body: { text: text.value, channel: channel.value } });
        toast("回应已起草，等待审核"); route();
      } catch (err) { toast(`操作失败：${err.message}`); }
    } } }, "起草回应")));
  }
  return wrap;
}
async function responseAction(t, r, action) {
  try {
    await api(`/api/v1/tickets/${encodeURIComponent(t.id)}/responses/${encodeURIComponent(r.id)}/${action}`, { method: "POST", body: {} });
    toast(action === "publish" ? "回应已发布" : "已审核"); route();
  } catch (err) { toast(`操作失败：${err.message}`); }
}

/* ---------- watch-lists and admin ---------- */
async function pageWatchlists() {
  const lists = await api("/api/v1/watchlists");
  const body = h("tbody");
  for (const w of lists.items) body.append(h("tr", {}, h("td", {}, w.name), h("td", {}, h("code", {}, w.expression)), h("td", {}, levelBadge(w.level)), h("td", {}, w.enabled ? "启用" : "停用")));
  const name = h("input", { placeholder: "方案名称", "aria-label": "方案名称" });
  const expr = h("input", { placeholder: "(A3区 | A4区) & (爆炸 | 起火) & !演习", size: 50, "aria-label": "表达式" });
  const level = select("level", "2", { 1: "蓝色", 2: "黄色", 3: "橙色", 4: "红色" });
  const preview = h("div", {});
  const doPreview = async () => {
    try {
      const res = await api("/api/v1/watchlists/preview", { method: "POST", body: { expression: expr.value } });
      preview.replaceChildren(h("p", {}, `近7天命中 ${res.total} 条`), ...res.items.map(postView));
    } catch (err) { preview.replaceChildren(h("p", { class: "error" }, err.message)); }
  };
  const save = async () => {
    try { await api("/api/v1/watchlists", { method: "POST", body: { name: name.value, expression: expr.value, level: Number(level.value) } }); toast("已保存"); route(); }
    catch (err) { toast(`保存失败：${err.message}`); }
  };
  render(h("h1", {}, "关键词方案"), h("div", { class: "panel" }, h("table", {}, h("thead", {}, h("tr", {}, ...["名称", "表达式", "级别", "状态"].map((t) => h("th", {}, t)))), body)),
    h("div", { class: "panel" }, h("h2", {}, "新建 / 修改（地域词 AND 事件词 NOT 排除词）"), h("div", { class: "toolbar" }, name, expr, level,
      h("button", { class: "btn secondary", type: "button", on: { click: doPreview } }, "预览近7天命中"), h("button", { class: "btn", type: "button", on: { click: save } }, "保存")), preview));
}

async function pageAdmin() {
  const [units, targets] = await Promise.all([api("/api/v1/admin/units").catch(() => ({ items: [] })), api("/api/v1/admin/targets").catch(() => ({ items: [] }))]);
  const ub = h("tbody", {}, ...units.items.map((u) => h("tr", {}, h("td", {}, u.id), h("td", {}, u.name), h("td", {}, u.supervisor || "—"))));
  const tb = h("tbody", {}, ...targets.items.map((t) => h("tr", {}, h("td", {}, t.channel), h("td", {}, t.target), h("td", { class: t.broken ? "overdue" : "" }, t.broken ? `故障：${t.reason}` : "正常"), h("td", {}, fmtTime(t.since)))));
  render(h("h1", {}, "系统管理"),
    h("div", { class: "grid cols-2" },
      h("div", { class: "panel" }, h("h2", {}, "责任单位"), h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "编号"), h("th", {}, "名称"), h("th", {}, "上级"))), ub)),
      h("div", { class: "panel" }, h("h2", {}, "通知渠道（机器人）"), h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "渠道"), h("th", {}, "对象"), h("th", {}, "状态"), h("th", {}, "自"))), tb))));
}

/* ---------- login and routing ---------- */
function pageLogin() {
  const user = h("input", { name: "username", id: "username", autocomplete: "username", required: true });
  const pass = h("input", { name: "password", id: "password", type: "password", autocomplete: "current-password", required: true });
  const err = h("p", { class: "error", id: "login-error" });
  const form = h("form", { class: "panel login", on: { submit: async (ev) => {
    ev.preventDefault();
    try {
      await api("/api/v1/auth/login", { method: "POST", body: { username: user.value, password: pass.value }, allow401: true });
      await loadMe();
      location.hash = "#/overview";
    } catch (e) { err.textContent = `登录失败：${e.message}`; }
  } } }, h("h1", {}, "登录"), h("label", { for: "username" }, "用户名"), user, h("label", { for: "password" }, "密码"), pass,
  h("p", {}, h("button", { class: "btn", type: "submit" }, "登录")), err);
  render(form);
}
async function loadMe() {
  try {
    const me = await api("/api/v1/auth/me", { allow401: true });
    state.user = me.user || me;
    state.csrf = me.csrf_token || readCookie("yuqing_csrf");
  } catch (_e) { state.user = null; }
  document.getElementById("who").textContent = state.user ? `${state.user.display_name || state.user.username}（${ROLE_NAMES[state.user.role] || state.user.role}）` : "";
  document.getElementById("logout").classList.toggle("hidden", !state.user);
}
const ROLE_NAMES = { admin: "管理员", analyst: "研判员", handler: "承办人", leader: "领导" };
function readCookie(name) {
  const m = document.cookie.split("; ").find((c) => c.startsWith(`${name}=`));
  return m ? decodeURIComponent(m.slice(name.length + 1)) : null;
}

async function route() {
  const hash = location.hash || "#/overview";
  const [path, query] = hash.slice(1).split("?");
  const params = new URLSearchParams(query || "");
  const parts = path.split("/").filter(Boolean);
  const name = parts[0] || "overview";
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.route === name);
  if (!state.user && name !== "login") { location.hash = "#/login"; return; }
  try {
    if (name === "login") pageLogin();
    else if (name === "overview") await pageOverview(params);
    else if (name === "alerts") await pageAlerts();
    else if (name === "events" && parts[1]) await pageEvent(parts[1]);
    else if (name === "events") await pageEvents();
    else if (name === "tickets" && parts[1]) await pageTicket(parts[1]);
    else if (name === "tickets") await pageTickets(params);
    else if (name === "search") await pageSearch(params);
    else if (name === "watchlists") await pageWatchlists();
    else if (name === "admin") await pageAdmin();
    else render(h("p", {}, "页面不存在"));
  } catch (err) {
    render(h("div", { class: "panel" }, h("p", { class: "error" }, `加载失败：${err.message}`)));
  }
}

document.addEventListener("DOMContentLoaded", async () => {
  document.getElementById("logout").addEventListener("click", async () => {
    await api("/api/v1/auth/logout", { method: "POST", body: {} }).catch(() => {});
    state.user = null; location.hash = "#/login"; loadMe();
  });
  await loadMe();
  connectStream();
  window.addEventListener("hashchange", route);
  route();
});
