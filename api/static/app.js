/* yuqing dashboard. Plain JS, no build step, served locally (no CDN; the CSP allows no inline script or style).
 * Every piece of untrusted text is inserted with textContent (the h() helper never sets innerHTML, and links
 * go through safeUrl), so a post containing <script> or <img onerror> shows as text and runs nothing. */
"use strict";

const LEVELS = { 1: "蓝色", 2: "黄色", 3: "橙色", 4: "红色" };
const SENTIMENT_COLOURS = { "负面": "#d7263d", "中性": "#9aa5b1", "正面": "#2e9e5b" };
const SOURCE_NAMES = { weibo: "微博", wechat: "微信", douyin: "抖音", news: "新闻", forum: "论坛", hotline: "12345热线", mailbox: "网民留言" };
// Board columns in workflow order; 评估 shares the 办结 column, 已合并 is not shown.
const BOARD = [["new", "预警"], ["returned", "已退回"], ["acknowledged", "已签收"], ["assessing", "研判中"],
  ["handling", "处置中"], ["responded", "已回应"], ["closed", "已办结"]];
const STATE_NAMES = { new: "预警", acknowledged: "已签收", assessing: "研判中", handling: "处置中", responded: "已回应",
  returned: "已退回", closed: "已办结", evaluated: "已评估", merged: "已合并" };
const OPEN_STATES = new Set(["new", "acknowledged", "assessing", "handling", "responded", "returned"]);
const DEADLINE_NAMES = { sign: "签收", first_response: "首次回应", authoritative_info: "发布权威信息", press_conference: "新闻发布会", close: "办结" };
const ACTION_NAMES = { create: "生成预警", open: "生成预警", update: "更新预警", acknowledge: "签收", assess: "研判", start_handling: "开始处置",
  reject: "退回", reassign: "改派", request_extension: "申请延期", decide_extension: "审批延期", merge: "合并", close: "办结", reopen: "重开",
  respond: "发布回应", draft_response: "起草回应", edit_response: "修改回应", review_response: "审核回应", publish_response: "发布回应",
  approve_response: "审核通过回应", reject_response: "退回回应", escalation: "督办", reminder: "催办",
  level: "级别调整", remind: "催办", overdue: "超时", escalate: "督办", evaluate: "效果评估",
  raise_level: "预警升级", merge_in: "并入工单", notice: "通报", supervise: "督办", publish: "发布回应", approve: "审核通过" };
const ROUTING_STRATEGIES = { major_wide: "重大或全市性事件：主管部门牵头、属地配合", single_district: "属地管理：所在区县政府牵头、主管部门配合",
  multi_district: "多地事件：涉及最多的区县牵头、其他区县和主管部门配合", topic_only: "无明确属地：主管部门牵头", fallback: "无法判定：舆情办牵头" };
const RULE_TYPES = { NegativeHeatRule: "负面热度", SpikeRule: "声量突增", SensitiveTermsRule: "敏感词", WatchlistRule: "关键词方案" };
const EXTENSION_STATES = { pending: "待审批", approved: "已批准", refused: "未批准" };
const RESPONSE_STATES = { draft: "草稿", approved: "已审核", published: "已发布", rejected: "已退回" };
const CHANNELS = { website: "政府网站", weibo: "政务微博", wechat: "政务微信", press_conference: "新闻发布会", hotline_reply: "热线答复" };
const ROLE_NAMES = { admin: "管理员", analyst: "舆情研判", handler: "责任单位", leader: "领导" };
const state = { user: null, csrf: null, charts: [], stream: null, wall: new Map(), levels: new Map(), pending: new Map(), audio: null,
  people: {}, reviewCount: null, wallPage: 0 };
const WALL_PAGE = 12; // cards per wall page: the wall pages instead of growing without end
/** A person's display name (history shows people, not log-in names). */
function person(username) {
  if (!username) return "—";
  if (String(username).startsWith("scheduler")) return "系统（定时任务）";
  if (username === "system") return "系统"; // before /people has answered, too
  return state.people[username] || username;
}

/* ---------- DOM helpers (textContent only) ---------- */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "on") for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
    else if (k === "dataset") { for (const [dk, dv] of Object.entries(v)) if (dv !== null && dv !== undefined) el.dataset[dk] = String(dv); }
    else if (k === "value") el.value = v;
    else if (k === "href") el.setAttribute("href", safeUrl(v));
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}
/** Only same-page hashes and http(s) URLs become links; anything else (javascript:, data:) becomes "#". */
function safeUrl(u) {
  if (typeof u !== "string") return "#";
  if (u.startsWith("#")) return u;
  try { const x = new URL(u, location.href); return ["http:", "https:"].includes(x.protocol) ? x.href : "#"; } catch (_e) { return "#"; }
}
const $ = (id) => document.getElementById(id);
function render(...nodes) {
  disposeCharts();
  $("main").replaceChildren(...nodes.flat().filter((n) => n !== null && n !== undefined && n !== false));
  tick();
}
function toast(text, alarm) {
  if (document.body.dataset.page === "screen") { screenToast(text, alarm); return; }
  const t = $("toast");
  t.onclick = () => t.classList.add("hidden"); // click to dismiss (it may cover a form)
  t.title = "点击关闭";
  t.textContent = text;
  t.classList.remove("hidden");
  t.classList.toggle("alarm", !!alarm);
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => t.classList.add("hidden"), alarm ? 12000 : 5000);
}
function fmtTime(iso) {
  if (!iso) return "—";
  return new Date(iso).toLocaleString("zh-CN", { hour12: false, timeZone: "Asia/Shanghai", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit" });
}
function fmtHour(iso, daily) {
  const opts = daily ? { month: "2-digit", day: "2-digit" } : { month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit" };
  return new Date(iso).toLocaleString("zh-CN", Object.assign({ hour12: false, timeZone: "Asia/Shanghai" }, opts));
}
function levelBadge(level) {
  if (!level) return h("span", { class: "muted" }, "—");
  return h("span", { class: `level level-${level}` }, LEVELS[level] || String(level));
}
function stateBadge(s) { return h("span", { class: `state state-${s}` }, STATE_NAMES[s] || s); }
/** A deadline that counts down by itself (see tick()); red once passed. */
function countdown(iso, done) {
  if (!iso) return h("span", { class: "muted" }, "—");
  if (done) return h("span", { class: "muted" }, "已完成");
  return h("span", { class: "countdown", dataset: { deadline: iso } });
}
function tick() {
  const now = Date.now();
  for (const el of document.querySelectorAll(".countdown")) {
    const ms = new Date(el.dataset.deadline) - now;
    const abs = Math.abs(ms);
    const d = Math.floor(abs / 864e5), hrs = Math.floor((abs % 864e5) / 36e5), mins = Math.floor((abs % 36e5) / 6e4);
    const text = `${d ? `${d}天` : ""}${hrs}小时${mins}分`;
    el.textContent = ms < 0 ? `已超时 ${text}` : `剩余 ${text}`;
    el.classList.toggle("overdue", ms < 0);
    el.classList.toggle("soon", ms >= 0 && ms < 36e5);
  }
}
setInterval(tick, 15000);

/* ---------- API ---------- */
async function api(path, opts = {}) {
  const headers = { Accept: "application/json" };
  const init = { method: opts.method || "GET", headers, credentials: "same-origin" };
  if (opts.body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(opts.body);
  }
  if (init.method !== "GET") headers["X-CSRF-Token"] = state.csrf || readCookie("yuqing_csrf") || "";
  // Reads belong to the page being shown: leaving the page cancels them, so a slow page can never
  // render over the one the user went to next. Writes are never cancelled.
  else if (state.navAbort && !opts.keep) init.signal = state.navAbort.signal;
  const r = await fetch(path, init);
  if (r.status === 401 && !opts.allow401) {
    state.user = null;
    showWho();
    if (!location.hash.startsWith("#/login")) location.hash = `#/login?${qs({ next: location.hash || "#/overview" })}`;
    throw new Error("请先登录");
  }
  const type = r.headers.get("content-type") || "";
  const data = type.includes("json") ? await r.json() : await r.text();
  if (!r.ok) {
    const detail = data && data.detail !== undefined ? data.detail : data;
    const err = new Error(typeof detail === "string" ? detail : (Array.isArray(detail) ? detail.map((d) => d.msg || JSON.stringify(d)).join("；") : JSON.stringify(detail)));
    err.status = r.status;
    throw err;
  }
  return data;
}
function qs(params) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== "" && v !== null && v !== undefined) p.set(k, v);
  return p.toString();
}
function readCookie(name) {
  const m = document.cookie.split("; ").find((c) => c.startsWith(`${name}=`));
  return m ? decodeURIComponent(m.slice(name.length + 1)) : null;
}
function errorText(err) {
  if (err.status === 404) return `不存在或无权查看（${err.message}）`;
  if (err.status === 403) return `无权操作（${err.message}）`;
  if (err.status === 409) return `状态已变化，请刷新（${err.message}）`;
  return err.message;
}

/* ---------- charts ---------- */
const FONT = '"Noto Sans CJK SC", "Source Han Sans SC", "WenQuanYi Micro Hei", "Microsoft YaHei", "PingFang SC", sans-serif';
function chart(el, option) {
  if (!window.echarts) { el.replaceChildren(h("p", { class: "muted" }, "图表组件未加载")); return null; }
  const c = window.echarts.init(el, null, { renderer: "canvas" });
  c.setOption(Object.assign({ animation: false, textStyle: { fontFamily: FONT } }, option));
  state.charts.push(c);
  return c;
}
function disposeCharts() {
  for (const c of state.charts) c.dispose();
  state.charts = [];
}
window.addEventListener("resize", () => state.charts.forEach((c) => c.resize()));
function empty(el, text) { el.classList.add("empty"); el.replaceChildren(h("p", { class: "muted" }, text || "所选时段暂无数据")); }
function pie(el, counts, names, colours) {
  const data = Object.entries(counts || {}).filter(([, v]) => v > 0).sort((a, b) => b[1] - a[1])
    .map(([k, value]) => ({ name: (names && names[k]) || k, value, itemStyle: colours && colours[k] ? { color: colours[k] } : undefined }));
  if (!data.length) return empty(el);
  return chart(el, { tooltip: { trigger: "item", formatter: "{b}：{c}（{d}%）" }, legend: { type: "scroll", orient: "vertical", right: 0, top: "middle", textStyle: { fontSize: 12 } },
    series: [{ type: "pie", radius: ["38%", "68%"], center: ["36%", "50%"], data, label: { show: false } }] });
}
function bars(el, counts, colour) {
  const entries = Object.entries(counts || {}).filter(([, v]) => v > 0).sort((a, b) => b[1] - a[1]).slice(0, 10);
  if (!entries.length) return empty(el);
  return chart(el, { grid: { left: 8, right: 30, top: 6, bottom: 6, containLabel: true }, tooltip: {},
    xAxis: { type: "value", minInterval: 1, splitLine: { show: false }, axisLabel: { show: false } },
    yAxis: { type: "category", inverse: true, data: entries.map((e) => e[0]), axisTick: { show: false }, axisLabel: { fontSize: 12, width: 90, overflow: "truncate" } },
    series: [{ type: "bar", data: entries.map((e) => e[1]), barMaxWidth: 16, itemStyle: { color: colour || "#1f5fa8" }, label: { show: true, position: "right", fontSize: 11 } }] });
}
/** Posts per hour over the last 48 hours (zero-filled), from an event's heat_series (UTC hour ISO -> posts). */
function spark(el, series) {
  const byHour = new Map();
  for (const [k, v] of Object.entries(series || {})) byHour.set(Math.floor(new Date(k).getTime() / 36e5), v);
  const last = Math.floor(Date.now() / 36e5);
  const hours = Array.from({ length: 48 }, (_, i) => last - 47 + i);
  const data = hours.map((hr) => byHour.get(hr) || 0);
  if (!data.some((v) => v > 0)) return empty(el, "近48小时无新增");
  return chart(el, { grid: { left: 1, right: 1, top: 3, bottom: 1 }, xAxis: { type: "category", show: false, data: hours, boundaryGap: false },
    yAxis: { type: "value", show: false, min: 0 }, series: [{ type: "line", symbol: "none", data, lineStyle: { width: 1.5, color: "#d7263d" }, areaStyle: { color: "rgba(215,38,61,.15)" } }] });
}

/* ---------- ticket helpers ---------- */
function stageMet(t, stage) {
  if (stage === "sign") return Boolean(t.signed_at) || !["new", "returned"].includes(t.state);
  if (stage === "first_response" || stage === "authoritative_info") return Boolean(t.responded_at);
  if (stage === "press_conference") return false;
  if (stage === "close") return Boolean(t.closed_at) || !OPEN_STATES.has(t.state);
  return false;
}
/** The next unmet deadline of a ticket (ISO string) and its stage. */
function nextDeadline(t) {
  const open = Object.entries(t.deadlines || {}).filter(([s]) => !stageMet(t, s)).sort((a, b) => new Date(a[1]) - new Date(b[1]));
  return open.length ? { stage: open[0][0], at: open[0][1] } : null;
}
function unmetStages(t) {
  return Object.fromEntries(Object.keys(t.deadlines || {}).filter((k) => !stageMet(t, k)).map((k) => [k, DEADLINE_NAMES[k] || k]));
}
function isOverdue(t) {
  const now = Date.now();
  return OPEN_STATES.has(t.state) && Object.entries(t.deadlines || {}).some(([s, at]) => new Date(at) <= now && !stageMet(t, s));
}
function deadlineLine(t) {
  const next = nextDeadline(t);
  if (!next) return h("div", { class: "muted" }, OPEN_STATES.has(t.state) ? "无待办时限" : STATE_NAMES[t.state]);
  return h("div", { class: "deadline" }, `${DEADLINE_NAMES[next.stage] || next.stage}：`, countdown(next.at));
}
function unitName(t) { return t.lead_unit_name || t.lead_unit; }

/* ---------- alert wall (live) ---------- */
function unitCountsTable(tickets) {
  const byUnit = new Map();
  for (const t of tickets) {
    if (!OPEN_STATES.has(t.state)) continue;
    const u = byUnit.get(t.lead_unit) || { name: unitName(t), open: 0, overdue: 0, top: 0 };
    u.open += 1; u.overdue += isOverdue(t) ? 1 : 0; u.top = Math.max(u.top, t.level);
    byUnit.set(t.lead_unit, u);
  }
  const rows = [...byUnit.entries()].sort((a, b) => b[1].overdue - a[1].overdue || b[1].open - a[1].open);
  return h("table", { class: "compact" }, h("thead", {}, h("tr", {}, h("th", {}, "牵头单位"), h("th", {}, "未办结"), h("th", {}, "超时"), h("th", {}, "最高级别"))),
    h("tbody", { id: "unit-counts" }, rows.length ? rows.map(([id, u]) => h("tr", { dataset: { unit: id } },
      h("td", {}, h("a", { href: `#/tickets?unit=${encodeURIComponent(id)}` }, u.name)), h("td", { class: "open num" }, u.open),
      h("td", { class: `num${u.overdue ? " overdue" : ""}` }, u.overdue), h("td", {}, levelBadge(u.top))))
      : h("tr", {}, h("td", { colspan: 4, class: "muted" }, "暂无未办结工单"))));
}
function wallSort(a, b) { return b.level - a.level || new Date(b.updated_at) - new Date(a.updated_at); }
function alertCard(t, fresh) {
  return h("div", { class: `card level-${t.level}${fresh ? " fresh" : ""}${isOverdue(t) ? " late" : ""}`, dataset: { ticket: t.id, level: t.level },
    on: { click: () => { location.hash = `#/tickets/${encodeURIComponent(t.id)}`; } } },
  h("div", { class: "card-head" }, levelBadge(t.level), stateBadge(t.state), t.escalation ? h("span", { class: "tag" }, `督办${t.escalation}`) : null,
    h("span", { class: "muted right" }, fmtTime(t.created_at))),
  h("h3", {}, t.title || t.event_id),
  h("div", { class: "muted" }, `牵头单位：${unitName(t)}`),
  h("div", { class: "reason" }, t.reason || ""),
  deadlineLine(t));
}
async function pageAlerts() {
  const tickets = await api(`/api/v1/tickets?${qs({ limit: 500, open: "true" })}`);
  state.wall = new Map(tickets.items.map((t) => [t.id, t]));
  for (const t of tickets.items) state.levels.set(t.id, t.level);
  render(h("div", { class: "toolbar" }, h("h1", {}, "实时预警墙"), h("span", { class: "muted" }, "新预警、升级预警实时出现，无需刷新；橙色、红色预警闪烁并提示音"),
    h("span", { id: "wall-total", class: "right" })),
  h("div", { class: "wall-layout" }, h("div", {}, h("div", { class: "wall", id: "wall" }), h("div", { class: "row", id: "wall-pager" })),
    h("aside", { class: "panel" }, h("h2", {}, "各单位未办结 / 超时"), h("div", { id: "wall-units" }))));
  drawWall(null);
}
function drawWall(freshId) {
  const wall = $("wall");
  if (!wall) return;
  const items = [...state.wall.values()].filter((t) => OPEN_STATES.has(t.state)).sort(wallSort);
  // A page of cards, never a wall thousands of pixels long; a fresh or raised ticket brings its page forward.
  const pages = Math.max(1, Math.ceil(items.length / WALL_PAGE));
  if (freshId) { const at = items.findIndex((t) => t.id === freshId); if (at >= 0) state.wallPage = Math.floor(at / WALL_PAGE); }
  state.wallPage = Math.min(state.wallPage, pages - 1);
  const shown = items.slice(state.wallPage * WALL_PAGE, (state.wallPage + 1) * WALL_PAGE);
  wall.replaceChildren(...(items.length ? shown.map((t) => alertCard(t, t.id === freshId)) : [h("p", { class: "muted", id: "wall-empty" }, "暂无未办结预警")]));
  const pager = $("wall-pager");
  if (pager) {
    const go = (d) => { state.wallPage = (state.wallPage + d + pages) % pages; drawWall(null); };
    pager.replaceChildren(...(pages > 1 ? [h("button", { class: "btn secondary", type: "button", dataset: { page: "prev" }, on: { click: () => go(-1) } }, "上一页"),
      h("span", { class: "muted", id: "wall-page" }, `第 ${state.wallPage + 1} / ${pages} 页`),
      h("button", { class: "btn secondary", type: "button", dataset: { page: "next" }, on: { click: () => go(1) } }, "下一页")] : []));
  }
  $("wall-units").replaceChildren(unitCountsTable(items));
  const late = items.filter(isOverdue).length;
  $("wall-total").replaceChildren(`未办结 ${items.length} 件 · 超时 `, h("b", { class: late ? "overdue" : "" }, String(late)), " 件");
  tick();
}
/** One SSE message per matching post: fetch each ticket once per burst (250 ms), then decide new / escalated. */
function onTicketChange(change) {
  if (!change || !change.ticket_id || !state.user) return;
  const prev = state.pending.get(change.ticket_id);
  if (prev) clearTimeout(prev.timer);
  const created = Boolean(change.created) || Boolean(prev && prev.created);
  state.pending.set(change.ticket_id, { created, timer: setTimeout(() => refreshTicket(change.ticket_id, created), 250) });
}
/** The open ticket changed elsewhere: redraw it, unless the user is typing (then offer a refresh instead). */
function ticketChanged() {
  const typing = [...document.querySelectorAll("#main textarea, #main input")].some((el) => el.value && el.type !== "checkbox" && el.closest("form:not(.hidden), .draft, details[open]"))
    || [...document.querySelectorAll("#main form.inline-form")].some((f) => !f.classList.contains("hidden"));
  if (!typing) { route(); return; }
  if ($("ticket-changed")) return;
  $("main").prepend(h("div", { class: "panel warn", id: "ticket-changed" }, "此工单刚被更新。", h("button", { class: "btn secondary", type: "button", on: { click: () => route() } }, "刷新查看")));
}
async function refreshTicket(id, created) {
  state.pending.delete(id);
  let t;
  try { t = await api(`/api/v1/tickets/${encodeURIComponent(id)}`); } catch (_e) { return; } // not ours to see (404)
  const before = state.levels.get(id);
  const escalated = !created && before !== undefined && t.level > before;
  state.levels.set(id, t.level);
  state.wall.set(id, t);
  if (created || escalated) {
    toast(`${created ? "新预警" : "预警升级"}：${LEVELS[t.level]}预警 · ${t.title || t.event_id} · ${unitName(t)}`, t.level >= 3);
    if (t.level >= 3) alarm();
  }
  if ($("wall")) drawWall(created || escalated ? id : null);
  else if (document.body.dataset.page === "tickets" && !$("ticket-state")) route(); // the board, not a ticket being edited
  else if ($("ticket-state") && $("main").dataset.ticket === id && t.version !== Number($("main").dataset.version)) ticketChanged();
  else if (document.body.dataset.page === "todo") route();
  else if (document.body.dataset.page === "screen") { drawScreenWall(); clearTimeout(state.screenRefresh); state.screenRefresh = setTimeout(() => refreshScreen().catch(() => {}), 1500); }
  clearTimeout(state.todoTimer); // a burst of changes asks for the to-do list once
  state.todoTimer = setTimeout(refreshTodoBadge, 1000);
}
/** The wall also re-reads the list every minute: closed tickets leave, deadlines pass, nothing is missed. */
async function refreshWall() {
  if (!$("wall") || document.hidden) return;
  try {
    const tickets = await api(`/api/v1/tickets?${qs({ limit: 500, open: "true" })}`);
    state.wall = new Map(tickets.items.map((t) => [t.id, t]));
    for (const t of tickets.items) state.levels.set(t.id, t.level);
    drawWall(null);
  } catch (_e) { /* the next minute tries again */ }
}
setInterval(refreshWall, 60000);
/** The cue for 橙/红: the screen edge flashes and, once the user has clicked anywhere (browsers' rule), a tone. */
function alarm() {
  document.body.classList.remove("alarm");
  void document.body.offsetWidth; // restart the animation
  document.body.classList.add("alarm");
  setTimeout(() => document.body.classList.remove("alarm"), 6000);
  const ctx = state.audio;
  if (!ctx || ctx.state !== "running") return;
  for (const [i, f] of [[0, 880], [1, 660], [2, 880]]) {
    const o = ctx.createOscillator(); const g = ctx.createGain();
    o.connect(g); g.connect(ctx.destination); o.frequency.value = f; g.gain.value = 0.08;
    const t0 = ctx.currentTime + i * 0.3;
    o.start(t0); o.stop(t0 + 0.25);
  }
}
document.addEventListener("click", () => {
  if (state.audio) return;
  const AC = window.AudioContext || window.webkitAudioContext;
  if (AC) state.audio = new AC();
}, { once: true });
function connectStream() {
  if (state.stream) return;
  const es = new EventSource("/api/v1/stream/tickets");
  let dropped = false;
  es.addEventListener("ticket", (ev) => { try { onTicketChange(JSON.parse(ev.data)); } catch (_e) { /* a malformed message is skipped */ } });
  es.onerror = () => { dropped = true; $("live").classList.add("off"); };
  es.onopen = () => {
    $("live").classList.remove("off");
    if (dropped) refreshWall(); // changes may have been missed while disconnected
    dropped = false;
  };
  state.stream = es;
}

/* ---------- overview ---------- */
const RANGES = { today: "今天", "24h": "近24小时", "7d": "近7天", custom: "自定义" };
function rangeBounds(range, from, to) {
  const now = new Date();
  if (range === "today") {
    // Today in China Standard Time, whatever the browser's zone.
    const cst = new Date(now.getTime() + 8 * 36e5);
    const start = Date.UTC(cst.getUTCFullYear(), cst.getUTCMonth(), cst.getUTCDate()) - 8 * 36e5;
    return [new Date(start), now];
  }
  if (range === "7d") return [new Date(now - 7 * 864e5), now];
  if (range === "custom" && from && to) return [new Date(from), new Date(to)];
  return [new Date(now - 864e5), now];
}
function kpi(id, label, value, cls) {
  return h("div", { class: `panel kpi ${cls || ""}`, id }, h("div", { class: "value" }, String(value)), h("div", { class: "label" }, label));
}
async function pageOverview(params) {
  const range = RANGES[params.get("range")] ? params.get("range") : "24h";
  const [from, to] = rangeBounds(range, params.get("from"), params.get("to"));
  if (!(from < to)) throw new Error("时间范围无效：开始时间须早于结束时间");
  const span = { from: from.toISOString(), to: to.toISOString() };
  const [ov, events, tickets, keywords] = await Promise.all([
    api(`/api/v1/stats/overview?${qs(span)}`),
    api(`/api/v1/events?${qs({ limit: 10, samples: 0, since: span.from })}`),
    api(`/api/v1/tickets?${qs({ limit: 500, open: "true" })}`).catch(() => ({ items: [] })),
    api(`/api/v1/stats/keywords?${qs({ ...span, sentiment: "负面", top: 15 })}`).catch(() => ({ items: [] })),
  ]);
  const picker = h("div", { class: "segmented", role: "group", "aria-label": "时间范围" },
    ...Object.entries(RANGES).map(([k, v]) => h("a", { class: k === range ? "active" : "", href: k === "custom" ? `#/overview?${qs({ range: "custom", from: params.get("from") || toLocalInput(from), to: params.get("to") || toLocalInput(to) })}` : `#/overview?range=${k}` }, v)));
  const fromIn = h("input", { type: "datetime-local", value: params.get("from") || toLocalInput(from), "aria-label": "开始时间" });
  const toIn = h("input", { type: "datetime-local", value: params.get("to") || toLocalInput(to), "aria-label": "结束时间" });
  const custom = range === "custom" ? h("span", { class: "custom" }, fromIn, "至", toIn,
    h("button", { class: "btn secondary", type: "button", on: { click: () => { location.hash = `#/overview?${qs({ range: "custom", from: fromIn.value, to: toIn.value })}`; } } }, "应用")) : null;
  const neg = ov.by_sentiment["负面"] || 0;
  const late = tickets.items.filter(isOverdue).length;
  const trend = h("div", { class: "chart", id: "chart-trend" });
  const charts = { topics: h("div", { class: "chart small", id: "chart-topics" }), sources: h("div", { class: "chart small", id: "chart-sources" }),
    places: h("div", { class: "chart small", id: "chart-places" }), words: h("div", { class: "chart small", id: "chart-keywords" }) };
  const hot = h("tbody", { id: "hot-events" });
  const sparks = [];
  const ticketLevel = new Map(tickets.items.map((t) => [t.event_id, t.level])); // events.level may lag the ticket
  for (const e of events.items) {
    const cell = h("div", { class: "spark" });
    sparks.push([cell, e.heat_series]);
    hot.append(h("tr", { class: "clickable", dataset: { event: e.id }, on: { click: () => { location.hash = `#/events/${encodeURIComponent(e.id)}`; } } },
      h("td", { class: "title" }, e.title), h("td", { class: "num" }, e.heat.toFixed(1)), h("td", { class: "num" }, e.size),
      h("td", { class: "num" }, `${e.negative_share_pct}%`), h("td", {}, levelBadge(ticketLevel.get(e.id) || e.level)), h("td", {}, cell)));
  }
  if (!events.items.length) hot.append(h("tr", {}, h("td", { colspan: 6, class: "muted" }, "所选时段暂无热点事件")));
  render(
    h("div", { class: "toolbar" }, h("h1", {}, "舆情总览"), picker, custom, h("span", { class: "muted right" }, `${fmtTime(from)} — ${fmtTime(to)}`)),
    h("div", { class: "grid cols-5" },
      kpi("kpi-total", "信息总量", ov.total), kpi("kpi-negative", "负面信息", neg, neg ? "bad" : ""),
      kpi("kpi-negative-share", "负面占比", ov.total ? `${(100 * neg / ov.total).toFixed(1)}%` : "—"),
      kpi("kpi-open", "未办结工单", tickets.items.length), kpi("kpi-overdue", "超时工单", late, late ? "bad" : "")),
    h("div", { class: "grid cols-3" },
      h("div", { class: "panel" }, h("h2", {}, "信息量走势（按情感）"), trend),
      h("div", { class: "panel" }, h("h2", {}, "各单位工单（未办结 / 超时）"), h("div", { class: "scroll" }, unitCountsTable(tickets.items)))),
    h("div", { class: "grid cols-4" },
      h("div", { class: "panel" }, h("h2", {}, "话题分布"), charts.topics),
      h("div", { class: "panel" }, h("h2", {}, "来源分布"), charts.sources),
      h("div", { class: "panel" }, h("h2", {}, "属地分布（前10）"), charts.places),
      h("div", { class: "panel" }, h("h2", {}, "负面高频词"), charts.words)),
    h("div", { class: "panel" }, h("h2", {}, "热点事件（按热度）"),
      h("table", {}, h("thead", {}, h("tr", {}, ...["事件", "热度", "信息量", "负面占比", "预警级别", "近48小时走势"].map((t) => h("th", {}, t)))), hot)),
  );
  const daily = ov.interval === "day";
  if (ov.total) {
    const series = filledSeries(ov, from, to);
    chart(trend, { tooltip: { trigger: "axis" }, legend: { top: 0, right: 0 }, grid: { left: 8, right: 40, top: 30, bottom: 8, containLabel: true },
      xAxis: { type: "category", boundaryGap: false, data: series.map((b) => fmtHour(b.start, daily)) }, yAxis: { type: "value", minInterval: 1 },
      series: ["负面", "中性", "正面"].map((s) => ({ name: s, type: "line", stack: "all", areaStyle: { opacity: 0.35 }, symbol: "none",
        itemStyle: { color: SENTIMENT_COLOURS[s] }, lineStyle: { width: 1.5 }, data: series.map((b) => b.counts[s] || 0) })) });
  } else empty(trend);
  pie(charts.topics, ov.by_topic);
  pie(charts.sources, ov.by_source, SOURCE_NAMES);
  bars(charts.places, ov.by_district);
  bars(charts.words, Object.fromEntries(keywords.items.map((k) => [k.word, k.count])), "#d7263d");
  for (const [cell, series] of sparks) spark(cell, series);
}
/** Buckets from ``from`` to ``to`` (hour, or China-day), zero-filled, so the axis always spans the chosen range. */
function filledSeries(ov, from, to) {
  const daily = ov.interval === "day";
  const width = daily ? 864e5 : 36e5, shift = daily ? 8 * 36e5 : 0; // daily buckets start at 00:00 China time
  const byStart = new Map(ov.series.map((b) => [new Date(b.start).getTime(), b.counts]));
  const first = Math.floor((from.getTime() + shift) / width) * width - shift;
  const out = [];
  for (let t = first; t < to.getTime() && out.length < 2000; t += width) out.push({ start: new Date(t).toISOString(), counts: byStart.get(t) || {} });
  for (const [t, counts] of byStart) if (t < first || t >= to.getTime()) out.push({ start: new Date(t).toISOString(), counts }); // never drop data
  return out.sort((a, b) => new Date(a.start) - new Date(b.start));
}
function toLocalInput(d) {
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

/* ---------- events ---------- */
async function pageEvents(params) {
  const offset = Number(params.get("offset") || 0);
  const events = await api(`/api/v1/events?${qs({ limit: 50, offset, samples: 0 })}`);
  const body = h("tbody");
  for (const e of events.items) {
    body.append(h("tr", { class: "clickable", dataset: { event: e.id }, on: { click: () => { location.hash = `#/events/${encodeURIComponent(e.id)}`; } } },
      h("td", { class: "title" }, e.title), h("td", { class: "num" }, e.heat.toFixed(1)), h("td", { class: "num" }, e.size), h("td", { class: "num" }, e.unique_authors),
      h("td", { class: "num" }, `${e.negative_share_pct}%`), h("td", {}, e.topic || "—"), h("td", {}, (e.districts || []).join("、") || "—"),
      h("td", {}, fmtTime(e.last_seen)), h("td", {}, levelBadge(e.level)), h("td", {}, e.ticket_id ? h("a", { href: `#/tickets/${encodeURIComponent(e.ticket_id)}`, on: { click: (ev) => ev.stopPropagation() } }, "工单") : "—")));
  }
  if (!events.items.length) body.append(h("tr", {}, h("td", { colspan: 10, class: "muted" }, "暂无事件")));
  render(h("div", { class: "toolbar" }, h("h1", {}, "热点事件"), h("span", { class: "muted" }, `共 ${events.total} 个，按热度排序`), pager("#/events", params, offset, 50, events.total)),
    h("div", { class: "panel" }, h("table", {},
      h("thead", {}, h("tr", {}, ...["事件", "热度", "信息量", "作者数", "负面占比", "话题", "属地", "最近", "级别", "工单"].map((t) => h("th", {}, t)))), body)));
}
function pager(base, params, offset, size, total) {
  const at = (o) => `${base}?${qs({ ...Object.fromEntries(params), offset: o })}`;
  return h("span", { class: "pager right" }, offset > 0 ? h("a", { href: at(Math.max(0, offset - size)) }, "上一页") : null,
    total > size ? h("span", { class: "muted" }, `第 ${Math.floor(offset / size) + 1} / ${Math.ceil(total / size)} 页`) : null,
    offset + size < total ? h("a", { href: at(offset + size) }, "下一页") : null);
}
function countNames(posts, pick) {
  const counts = {};
  for (const p of posts) for (const n of new Set(pick(p) || [])) counts[n] = (counts[n] || 0) + 1;
  return Object.entries(counts).sort((a, b) => b[1] - a[1]).slice(0, 12);
}
async function pageEvent(id) {
  const e = await api(`/api/v1/events/${encodeURIComponent(id)}`);
  const first = new Date(e.first_seen), last = new Date(e.last_seen);
  const [timeline, ticket, members] = await Promise.all([
    api(`/api/v1/stats/overview?${qs({ event_id: id, from: new Date(first - 36e5).toISOString(), to: new Date(last.getTime() + 36e5).toISOString() })}`),
    e.ticket_id ? api(`/api/v1/tickets/${encodeURIComponent(e.ticket_id)}`).catch(() => null) : Promise.resolve(null),
    api(`/api/v1/posts?${qs({ event_id: id, limit: 200 })}`).catch(() => ({ total: 0, items: [] })),
  ]);
  const tl = h("div", { class: "chart", id: "chart-event" });
  const src = h("div", { class: "chart small", id: "chart-event-sources" });
  const orgs = countNames(members.items, (p) => p.entities.orgs), places = countNames(members.items, (p) => p.entities.places);
  const people = countNames(members.items, (p) => p.entities.people);
  const chips = (list) => (list.length ? list.map(([n, c]) => h("span", { class: "chip" }, n, h("small", {}, ` ${c}`))) : h("span", { class: "muted" }, "—"));
  const distinctTexts = new Set(members.items.map((p) => (p.text || "").replace(/^转发[:：]/, "").trim())).size;
  const duplicates = members.items.length ? members.items.length - distinctTexts : 0;
  render(
    h("div", { class: "toolbar" }, h("h1", {}, e.title), levelBadge((ticket && ticket.level) || e.level), e.burst ? h("span", { class: "tag alarm-tag" }, "声量突增") : null,
      h("span", { class: "muted right" }, `${fmtTime(e.first_seen)} 首现 · ${fmtTime(e.last_seen)} 最近`)),
    h("div", { class: "grid cols-5" }, kpi("kpi-heat", "热度", e.heat.toFixed(1)), kpi("kpi-size", "信息量（聚合）", e.size),
      kpi("kpi-dups", "其中重复/转发", duplicates), kpi("kpi-authors", "独立作者", e.unique_authors), kpi("kpi-neg", "负面占比", `${e.negative_share_pct}%`, e.negative_share_pct >= 50 ? "bad" : "")),
    h("div", { class: "grid cols-3" },
      h("div", { class: "panel" }, h("h2", {}, "时间线：信息量与负面占比"), tl),
      h("div", { class: "panel" }, h("h2", {}, "传播来源"), src)),
    h("div", { class: "grid cols-3" },
      h("div", { class: "panel" }, h("h2", {}, `代表性信息（共 ${members.total} 条${e.representatives.some((p) => p.masked) ? "，已脱敏" : ""}）`), h("div", { id: "event-posts", class: "posts" }, e.representatives.length ? e.representatives.map(postView) : h("p", { class: "muted" }, "暂无"))),
      h("div", {},
        h("div", { class: "panel", id: "event-ticket" }, h("h2", {}, "预警工单"), ticket ? ticketSummary(ticket) : h("p", { class: "muted" }, e.ticket_id ? "工单不可见" : "尚未生成工单")),
        h("div", { class: "panel" }, h("h2", {}, "实体与地点"),
          h("dl", { class: "kv" }, h("dt", {}, "话题"), h("dd", {}, e.topic || "—"), h("dt", {}, "属地"), h("dd", {}, (e.districts || []).join("、") || "—"),
            h("dt", {}, "地点"), h("dd", {}, chips(places.length ? places : (e.places || []).map((p) => [p, ""]))), h("dt", {}, "机构"), h("dd", {}, chips(orgs)),
            h("dt", {}, "人物"), h("dd", {}, chips(people)))))),
  );
  const daily = timeline.interval === "day";
  const buckets = filledSeries(timeline, new Date(first - 36e5), new Date(last.getTime() + 36e5));
  const totals = buckets.map((b) => Object.values(b.counts).reduce((a, c) => a + c, 0));
  if (timeline.total) {
    chart(tl, { tooltip: { trigger: "axis" }, legend: { top: 0, left: "center" }, grid: { left: 8, right: 8, top: 44, bottom: 8, containLabel: true },
      xAxis: { type: "category", data: buckets.map((b) => fmtHour(b.start, daily)) },
      yAxis: [{ type: "value", name: "条", minInterval: 1 }, { type: "value", name: "负面%", min: 0, max: 100, splitLine: { show: false } }],
      series: [{ name: "信息量", type: "bar", barMaxWidth: 28, itemStyle: { color: "#1f5fa8" }, data: totals },
        { name: "负面占比", type: "line", yAxisIndex: 1, itemStyle: { color: "#d7263d" },
          data: buckets.map((b, i) => (totals[i] ? Math.round(100 * (b.counts["负面"] || 0) / totals[i]) : null)), connectNulls: true }] });
  } else empty(tl);
  pie(src, e.sources, SOURCE_NAMES);
}
function postView(p) {
  return h("div", { class: "post", dataset: { post: p.id } },
    h("div", { class: "meta" }, `${SOURCE_NAMES[p.source] || p.source} · ${fmtTime(p.published_at)} · ${p.author || "匿名"} · `,
      h("span", { class: `senti senti-${p.sentiment.label}` }, p.sentiment.label), p.topic && p.topic.l1 ? ` · ${p.topic.l1}` : "",
      p.url && safeUrl(p.url) !== "#" ? [" · ", h("a", { href: p.url, target: "_blank", rel: "noopener noreferrer" }, "原文")] : null),
    p.title ? h("div", { class: "post-title" }, p.title) : null, h("div", { class: "post-text" }, p.text));
}
function ticketSummary(t) {
  return h("div", {}, h("p", { class: "row" }, levelBadge(t.level), stateBadge(t.state), h("a", { href: `#/tickets/${encodeURIComponent(t.id)}` }, `查看工单 ${t.id}`)),
    h("dl", { class: "kv" }, h("dt", {}, "牵头单位"), h("dd", {}, unitName(t)), h("dt", {}, "预警原因"), h("dd", {}, t.reason || "—"),
      h("dt", {}, "当前时限"), h("dd", {}, deadlineLine(t))),
    h("h3", {}, "处理记录"), historyList(t));
}
function historyList(t) {
  return h("ol", { class: "history" }, ...(t.history || []).map((a) => h("li", {}, h("span", { class: "muted" }, fmtTime(a.at)), ` ${person(a.actor)} `,
    h("b", {}, ACTION_NAMES[a.action] || "其他操作"), a.to_state && a.to_state !== a.from_state ? ` → ${STATE_NAMES[a.to_state] || a.to_state}` : "",
    historyDetail(a.detail || {}))));
}
function unitLabel(id) { return (state.units && state.units[id]) || (state.unitNames || {})[id] || id; }
/** The part of an audit row's detail a person needs, in words (never raw keys or JSON). */
function historyDetail(d) {
  const parts = [];
  if (d.level_from && d.level_to && d.level_from !== d.level_to) parts.push(`${LEVELS[d.level_from] || d.level_from}→${LEVELS[d.level_to] || d.level_to}`);
  if (d.routing && d.routing.summary) parts.push(d.routing.summary);
  if (d.lead_unit && d.from) parts.push(`牵头单位改为 ${unitLabel(d.lead_unit)}`);
  if (d.tasks && typeof d.tasks === "object") for (const [u, task] of Object.entries(d.tasks)) parts.push(`交办 ${unitLabel(u)}：${task}`);
  if (d.late) parts.push("逾期签收");
  if (d.hours) parts.push(`延长 ${d.hours} 小时`);
  if (d.approve === true) parts.push("同意"); else if (d.approve === false) parts.push("不同意");
  if (d.outcome) parts.push({ calmed: "平息", ongoing: "持续", escalated: "升级" }[d.outcome] || d.outcome);
  for (const k of ["reason", "note", "summary", "facts"]) if (typeof d[k] === "string" && d[k]) parts.push(d[k]);
  return parts.length ? `（${parts.join("；")}）` : "";
}

/* ---------- search ---------- */
async function pageSearch(params) {
  const get = (k) => params.get(k) || "";
  const form = h("form", { class: "toolbar filters", on: { submit: (ev) => { ev.preventDefault();
    const f = Object.fromEntries(new FormData(ev.target).entries());
    for (const k of ["from", "to"]) if (f[k]) f[k] = new Date(f[k]).toISOString();
    location.hash = `#/search?${qs(f)}`; } } },
  h("input", { name: "q", value: get("q"), placeholder: "关键词", "aria-label": "关键词", maxlength: 200 }),
  select("source", get("source"), { "": "全部来源", ...SOURCE_NAMES }, "来源"),
  select("sentiment", get("sentiment"), { "": "全部情感", "负面": "负面", "中性": "中性", "正面": "正面" }, "情感"),
  h("input", { name: "topic", value: get("topic"), placeholder: "话题（一级）", "aria-label": "话题", size: 10 }),
  h("input", { name: "district", value: get("district"), placeholder: "属地，如 A3区", "aria-label": "属地", size: 10 }),
  h("input", { name: "from", type: "datetime-local", value: get("from") ? toLocalInput(new Date(get("from"))) : "", "aria-label": "开始时间" }),
  h("input", { name: "to", type: "datetime-local", value: get("to") ? toLocalInput(new Date(get("to"))) : "", "aria-label": "结束时间" }),
  h("button", { class: "btn", type: "submit" }, "检索"));
  const offset = Number(get("offset") || 0);
  const res = await api(`/api/v1/posts?${qs({ q: get("q"), source: get("source"), sentiment: get("sentiment"), topic: get("topic"), district: get("district"),
    from: get("from"), to: get("to"), limit: 20, offset })}`);
  render(h("h1", {}, "信息检索"), form,
    h("div", { class: "panel" }, h("div", { class: "toolbar" }, h("span", { class: "muted" }, `共 ${res.total} 条，按发布时间倒序`), pager("#/search", params, offset, 20, res.total)),
      h("div", { id: "search-results", class: "posts" }, res.items.length ? res.items.map(postView) : h("p", { class: "muted" }, "没有符合条件的信息"))));
}
function select(name, value, options, label) {
  return h("select", { name, "aria-label": label || name }, ...Object.entries(options).map(([k, v]) => h("option", { value: k, selected: String(value ?? "") === String(k) }, v)));
}

/* ---------- tickets ---------- */
async function pageTickets(params) {
  const filters = { level: params.get("level"), unit: params.get("unit"), q: params.get("q") };
  const [res, units] = await Promise.all([api(`/api/v1/tickets?${qs({ limit: 500, ...filters })}`), unitOptions()]);
  const form = h("form", { class: "toolbar filters", on: { submit: (ev) => { ev.preventDefault(); location.hash = `#/tickets?${qs(Object.fromEntries(new FormData(ev.target).entries()))}`; } } },
    select("level", filters.level, { "": "全部级别", 4: "红色", 3: "橙色", 2: "黄色", 1: "蓝色" }, "级别"),
    units ? select("unit", filters.unit, { "": "全部单位", ...units }, "单位") : h("input", { name: "unit", value: filters.unit || "", placeholder: "单位编号", "aria-label": "单位" }),
    h("input", { name: "q", value: filters.q || "", placeholder: "标题/原因关键词", "aria-label": "关键词", maxlength: 100 }),
    h("label", { class: "check" }, h("input", { type: "checkbox", name: "late", value: "1", checked: params.get("late") === "1" }), "只看超时"),
    h("button", { class: "btn", type: "submit" }, "筛选"));
  let items = res.items;
  if (params.get("late") === "1") items = items.filter(isOverdue);
  const cols = BOARD.map(([key, name]) => {
    const inCol = items.filter((t) => t.state === key || (key === "closed" && t.state === "evaluated")).sort(wallSort);
    return h("div", { class: "column", dataset: { state: key } }, h("h3", {}, `${name}（${inCol.length}）`), ...inCol.map(ticketCard));
  });
  render(h("div", { class: "toolbar" }, h("h1", {}, "预警工单"), h("span", { class: "muted" }, `共 ${res.total} 件${res.total > res.items.length ? `（显示最新 ${res.items.length} 件）` : ""}`)),
    form, h("div", { class: "board" }, ...cols));
}
function ticketCard(t) {
  return h("div", { class: `card level-${t.level}${isOverdue(t) ? " late" : ""}`, dataset: { ticket: t.id, level: t.level },
    on: { click: () => { location.hash = `#/tickets/${encodeURIComponent(t.id)}`; } } },
  h("div", { class: "card-head" }, levelBadge(t.level), isOverdue(t) ? h("span", { class: "tag late-tag" }, "超时") : null),
  h("h3", {}, t.title || t.event_id), h("div", { class: "muted" }, unitName(t)), OPEN_STATES.has(t.state) ? deadlineLine(t) : null);
}
async function unitOptions() {
  if (state.units) return state.units;
  if (!["admin", "analyst", "leader"].includes(state.user.role)) return state.unitNames || null; // names from /people
  try {
    const res = await api("/api/v1/admin/units");
    state.units = Object.fromEntries(res.items.map((u) => [u.id, u.name]));
  } catch (_e) { state.units = null; }
  return state.units;
}

async function pageTicket(id) {
  // History shows people's names: wait for /people (asked once per login) before drawing it.
  const [t] = await Promise.all([api(`/api/v1/tickets/${encodeURIComponent(id)}`), unitOptions(), loadPeople()]);
  state.levels.set(t.id, t.level);
  const deadlines = h("table", { class: "compact" }, h("tbody", {}, ...Object.entries(t.deadlines || {}).sort((a, b) => new Date(a[1]) - new Date(b[1])).map(([k, v]) =>
    h("tr", {}, h("td", {}, DEADLINE_NAMES[k] || k), h("td", {}, fmtTime(v)), h("td", {}, countdown(v, stageMet(t, k)))))));
  const ext = (t.extra || {}).extension;
  $("main").dataset.ticket = t.id;
  $("main").dataset.version = String(t.version);
  render(
    h("div", { class: "toolbar" }, h("h1", {}, t.title || t.event_id), levelBadge(t.level), h("span", { class: `state state-${t.state}`, id: "ticket-state" }, STATE_NAMES[t.state] || t.state),
      isOverdue(t) ? h("span", { class: "tag late-tag" }, "超时") : null, h("span", { class: "muted right" }, `工单 ${t.id} · 生成于 ${fmtTime(t.created_at)}`)),
    h("div", { class: "grid cols-2" },
      h("div", {},
        h("div", { class: "panel" }, h("h2", {}, "工单信息"),
          h("dl", { class: "kv" }, h("dt", {}, "预警原因"), h("dd", {}, t.reason || "—"), h("dt", {}, "触发规则"), h("dd", {}, t.rule || "—"),
            h("dt", {}, "牵头单位"), h("dd", {}, unitName(t)), h("dt", {}, "配合单位"), h("dd", {}, cooperatingNames(t).join("、") || "—"),
            h("dt", {}, "事件"), h("dd", {}, h("a", { id: "ticket-event", href: `#/events/${encodeURIComponent(t.event_id)}` }, "查看事件详情")),
            ext ? [h("dt", {}, "延期申请"), h("dd", { id: "ticket-extension" }, `${DEADLINE_NAMES[ext.stage] || ext.stage || ""} 至 ${fmtTime(ext.until)}（${EXTENSION_STATES[ext.state] || ext.state || ""}）${ext.reason ? `：${ext.reason}` : ""}`)] : null)),
        h("div", { class: "panel" }, h("h2", {}, "办理时限"), deadlines),
        h("div", { class: "panel" }, h("h2", {}, "派单依据"), routingView(t.routing))),
      h("div", {},
        h("div", { class: "panel" }, h("h2", {}, "操作"), ticketActions(t)),
        h("div", { class: "panel" }, h("h2", {}, "回应口径"), responsesView(t)),
        h("div", { class: "panel" }, h("h2", {}, "处理记录"), h("div", { id: "ticket-history" }, historyList(t))))),
  );
}
function routingView(routing) {
  if (!routing || !Object.keys(routing).length) return h("p", { class: "muted" }, "—");
  const list = (v) => (Array.isArray(v) && v.length ? v.join("、") : null);
  const rows = [
    ["派单方式", ROUTING_STRATEGIES[routing.strategy] || null],
    ["预警级别", routing.level_zh || null],
    ["话题", routing.topic || null],
    ["主管部门", routing.department ? unitLabel(routing.department) : null],
    ["涉及属地", list(routing.district_names) || (routing.city_wide ? "全市" : null)],
    ["牵头单位", routing.lead_unit_name || (routing.lead_unit ? unitLabel(routing.lead_unit) : null)],
    ["配合单位", list(routing.cooperating_unit_names)],
    ["未识别的属地", list(routing.unrecognised_districts)],
  ].filter(([, v]) => v);
  return h("div", {}, routing.summary ? h("p", {}, routing.summary) : null,
    rows.length ? h("dl", { class: "kv", id: "routing" }, ...rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])) : null);
}
function cooperatingNames(t) {
  const ids = t.cooperating_units || [];
  const names = (t.routing || {}).cooperating_unit_names;
  if (Array.isArray(names) && names.length === ids.length) return names;
  return ids.map((id) => unitLabel(id));
}
async function post(t, path, body, done) {
  try {
    await api(`/api/v1/tickets/${encodeURIComponent(t.id)}/${path}`, { method: "POST", body: body || {} });
    toast(done);
    await route();
  } catch (err) { toast(`操作失败：${errorText(err)}`); }
}
/** A button that opens a small inline form (no prompt()/confirm(): they block wall screens). With no fields the
 * form only asks for confirmation; every field has a visible label. */
function actionButton(t, label, action, fields, build, question) {
  const btn = h("button", { class: "btn", type: "button", dataset: { action } }, label);
  if (!fields) { btn.addEventListener("click", () => post(t, action, {}, `已${label}`)); return btn; }
  const inputs = fields.map(([name, kind, text, options]) => {
    const optional = options && options.optional;
    const input = kind === "select" ? select(name, options.default, options.values, text)
      : kind === "textarea" ? h("textarea", { name, "aria-label": text, required: !optional, maxlength: 4000 })
        : h("input", { name, type: kind, "aria-label": text, required: !optional, step: kind === "number" ? "any" : null });
    return h("label", { class: "field" }, h("span", {}, text), input);
  });
  const form = h("form", { class: "inline-form hidden", dataset: { form: action }, on: { submit: (ev) => { ev.preventDefault();
    const values = Object.fromEntries(new FormData(ev.target).entries());
    post(t, action, build ? build(values) : {}, `已${label}`); } } },
  question ? h("p", { class: "question" }, question) : null, ...inputs,
  h("div", { class: "row" }, h("button", { class: "btn", type: "submit" }, `确认${label}`),
    h("button", { class: "btn secondary", type: "button", dataset: { cancel: action }, on: { click: () => form.classList.add("hidden") } }, "取消")));
  btn.addEventListener("click", () => { form.classList.toggle("hidden"); const f = form.querySelector("input,textarea,select,button[type=submit]"); if (f) f.focus(); });
  return [btn, form];
}
function ticketActions(t) {
  const allowed = new Set(t.allowed_actions || []);
  const box = h("div", { class: "actions" });
  const levels = { values: { 1: "蓝色", 2: "黄色", 3: "橙色", 4: "红色" }, default: String(t.level) };
  const spec = [
    ["签收", "acknowledge", [], null, "确认由本单位签收此预警？签收后开始计算研判、回应时限。"],
    ["研判", "assess", [["level", "select", "确认级别", levels], ["facts", "textarea", "核实情况"], ["risk", "text", "风险研判"]],
      (v) => ({ level: Number(v.level), facts: v.facts, risk: v.risk })],
    ["开始处置", "start_handling", (t.cooperating_units || []).map((u) => [`task:${u}`, "textarea", `交办 ${unitLabel(u)} 的任务（可不填）`, { optional: true }]),
      (v) => ({ tasks: Object.fromEntries(Object.entries(v).filter(([k, x]) => k.startsWith("task:") && x.trim()).map(([k, x]) => [k.slice(5), x.trim()])) }),
      "确认开始处置？可同时把任务交办给配合单位，对方会收到通知。"],
    ["退回", "reject", [["reason", "text", "退回原因（非本单位职责的说明）"]], (v) => ({ reason: v.reason })],
    ["改派", "reassign", [state.units ? ["lead_unit", "select", "新的牵头单位", { values: state.units, default: t.lead_unit }] : ["lead_unit", "text", "新的牵头单位编号"]],
      (v) => ({ lead_unit: v.lead_unit.trim() })],
    ["申请延期", "request_extension", [["stage", "select", "延期的时限", { values: unmetStages(t), default: (nextDeadline(t) || {}).stage }],
      ["hours", "number", "延长小时数"], ["reason", "text", "延期原因"]],
    (v) => ({ stage: v.stage, hours: Number(v.hours), reason: v.reason })],
    ["合并", "merge", [["into", "text", "并入工单编号"]], (v) => ({ into: v.into.trim() })],
    ["办结", "close", [["summary", "textarea", "办结情况说明"]], (v) => ({ summary: v.summary })],
    ["重开", "reopen", [["reason", "text", "重开原因"]], (v) => ({ reason: v.reason })],
    ["效果评估", "evaluate", [], null, "确认对本工单进行效果评估？"],
  ];
  for (const [label, action, fields, build, question] of spec) if (allowed.has(action)) box.append(...[actionButton(t, label, action, fields, build, question)].flat());
  if (allowed.has("decide_extension")) {
    const note = h("input", { placeholder: "审批意见", "aria-label": "审批意见" });
    box.append(h("div", { class: "inline-form" }, "延期申请：", note,
      h("button", { class: "btn", type: "button", dataset: { action: "approve_extension" }, on: { click: () => post(t, "decide_extension", { approve: true, note: note.value }, "已批准延期") } }, "批准"),
      h("button", { class: "btn secondary", type: "button", dataset: { action: "deny_extension" }, on: { click: () => post(t, "decide_extension", { approve: false, note: note.value }, "已驳回延期") } }, "不批准")));
  }
  if (!box.childNodes.length) box.append(h("span", { class: "muted" }, "当前角色在此状态下无可用操作"));
  return box;
}
function responsesView(t) {
  const wrap = h("div", {});
  for (const r of t.responses || []) {
    const acts = new Set(r.allowed_actions || []);
    const note = h("input", { placeholder: "审核意见（可选）", "aria-label": "审核意见", class: acts.has("approve") ? "" : "hidden" });
    const buttons = h("div", { class: "row" },
      acts.has("approve") ? [note, h("button", { class: "btn", type: "button", dataset: { action: "approve" }, on: { click: () => post(t, `responses/${encodeURIComponent(r.id)}/approve`, { note: note.value }, "已审核通过") } }, "审核通过"),
        h("button", { class: "btn secondary", type: "button", dataset: { action: "reject_response" }, on: { click: () => post(t, `responses/${encodeURIComponent(r.id)}/reject`, { note: note.value }, "已退回修改") } }, "退回修改")] : null,
      acts.has("publish") ? h("button", { class: "btn publish", type: "button", dataset: { action: "publish" }, on: { click: () => post(t, `responses/${encodeURIComponent(r.id)}/publish`, {}, "回应已发布") } }, "发布") : null);
    let editor = null;
    if (acts.has("edit")) {
      const text = h("textarea", { "aria-label": "修改回应", maxlength: 4000 }, r.text);
      editor = h("details", {}, h("summary", {}, "修改"), text, h("button", { class: "btn secondary", type: "button", dataset: { action: "edit" },
        on: { click: () => post(t, `responses/${encodeURIComponent(r.id)}/edit`, { text: text.value }, "已修改，需重新审核") } }, "保存修改"));
    }
    wrap.append(h("div", { class: "response", dataset: { response: r.id, state: r.state } },
      h("div", { class: "meta" }, h("span", { class: `rstate rstate-${r.state}` }, RESPONSE_STATES[r.state] || r.state), ` ${CHANNELS[r.channel] || r.channel} · ${r.drafted_by} 起草于 ${fmtTime(r.drafted_at)}`,
        r.published_at ? ` · ${r.published_by} 发布于 ${fmtTime(r.published_at)}` : ""),
      h("div", { class: "post-text" }, r.text),
      h("div", { class: "approvers muted" }, `已审核：${(r.approvers || []).join("、") || "无"}（需 2 名不同审核人）`), buttons, editor));
  }
  if (!(t.responses || []).length) wrap.append(h("p", { class: "muted" }, "尚无回应"));
  if ((t.allowed_actions || []).includes("draft_response")) {
    const text = h("textarea", { id: "response-text", "aria-label": "回应口径", placeholder: "回应口径：已掌握的事实、采取的措施、下一步安排", maxlength: 4000 });
    const channel = select("channel", "website", CHANNELS, "发布渠道");
    wrap.append(h("div", { class: "draft" }, text, h("div", { class: "row" }, channel, h("button", { class: "btn", type: "button", dataset: { action: "draft_response" }, on: { click: () => {
      if (!text.value.trim()) { toast("请填写回应口径"); return; }
      post(t, "responses", { text: text.value, channel: channel.value }, "回应已起草，等待审核");
    } } }, "起草回应"))));
  }
  return wrap;
}

/* ---------- watch-lists ---------- */
async function pageWatchlists() {
  const lists = await api("/api/v1/watchlists");
  const canEdit = ["admin", "analyst"].includes(state.user.role);
  const name = h("input", { placeholder: "方案名称", "aria-label": "方案名称", maxlength: 64 });
  const expr = h("textarea", { placeholder: "(A3区 | A4区) & (爆炸 | 起火) & !演习", "aria-label": "表达式", maxlength: 2000, class: "expr" });
  const level = select("level", "2", LEVELS, "级别");
  const enabled = h("input", { type: "checkbox", checked: true, "aria-label": "启用" });
  const preview = h("div", { id: "watch-preview" });
  const body = h("tbody");
  for (const w of lists.items) {
    body.append(h("tr", { class: canEdit ? "clickable" : "", dataset: { watchlist: w.name }, on: { click: () => {
      if (!canEdit) return;
      name.value = w.name; expr.value = w.expression; level.value = String(w.level); enabled.checked = w.enabled; name.focus();
    } } }, h("td", {}, w.name), h("td", {}, h("code", {}, w.expression)), h("td", {}, levelBadge(w.level)), h("td", {}, w.enabled ? "启用" : h("span", { class: "muted" }, "停用")),
    h("td", { class: "muted" }, `${w.updated_by} ${fmtTime(w.updated_at)}`)));
  }
  if (!lists.items.length) body.append(h("tr", {}, h("td", { colspan: 5, class: "muted" }, "尚无方案")));
  const doPreview = async () => {
    preview.replaceChildren(h("p", { class: "muted" }, "正在检索近7天信息……"));
    try {
      const res = await api("/api/v1/watchlists/preview", { method: "POST", body: { expression: expr.value, days: 7 } });
      preview.replaceChildren(h("p", {}, `近7天扫描 ${res.scanned} 条，命中 ${res.total} 条${res.total > res.items.length ? `，显示前 ${res.items.length} 条` : ""}`), ...res.items.map(postView));
    } catch (err) { preview.replaceChildren(h("p", { class: "error" }, errorText(err))); }
  };
  const save = async () => {
    try {
      await api("/api/v1/watchlists", { method: "POST", body: { name: name.value.trim(), expression: expr.value, level: Number(level.value), enabled: enabled.checked } });
      toast("方案已保存，新信息将按此方案预警"); route();
    } catch (err) { toast(`保存失败：${errorText(err)}`); }
  };
  render(h("h1", {}, "关键词方案"),
    h("div", { class: "panel" }, h("table", {}, h("thead", {}, h("tr", {}, ...["名称", "表达式", "级别", "状态", "最近修改"].map((c) => h("th", {}, c)))), body),
      canEdit ? h("p", { class: "muted" }, "点击一行载入下方编辑") : null),
    canEdit ? h("div", { class: "panel" }, h("h2", {}, "新建 / 修改：地域词 与(&) 事件词，非(!) 排除词，或(|)"),
      h("div", { class: "editor" }, name, expr, h("div", { class: "row" }, "级别", level, h("label", { class: "check" }, enabled, "启用"),
        h("button", { class: "btn secondary", type: "button", on: { click: doPreview } }, "预览近7天命中"), h("button", { class: "btn", type: "button", on: { click: save } }, "保存"))), preview) : null);
}

/* ---------- admin ---------- */
const CHANNEL_NAMES = { wecom: "企业微信机器人", email: "电子邮件", webhook: "系统对接（Webhook）" };
async function pageAdmin(params) {
  const isAdmin = state.user.role === "admin";
  const since = new Date(Date.now() - 30 * 864e5).toISOString(), until = new Date().toISOString();
  const [health, units, targets, users, rules, dead, report] = await Promise.all([
    api("/api/v1/dashboard/notify-health").catch((e) => ({ error: e })),
    api("/api/v1/admin/units").catch((e) => ({ error: e })), api("/api/v1/admin/targets").catch((e) => ({ error: e })),
    api("/api/v1/dashboard/users").catch((e) => ({ error: e })), api("/api/v1/dashboard/rules").catch((e) => ({ error: e })),
    api("/api/v1/dead-letters?limit=20").catch((e) => ({ error: e })),
    api(`/api/v1/reports/units?${qs({ from: since, to: until })}`).catch((e) => ({ error: e }))]);
  if (units.items) state.units = Object.fromEntries(units.items.map((u) => [u.id, u.name]));
  const table = (res, heads, row, id) => (res.error ? h("p", { class: res.error.status ? "error" : "muted" }, res.error.status ? errorText(res.error) : res.error.message)
    : h("table", { class: "compact", id }, h("thead", {}, h("tr", {}, ...heads.map((c) => h("th", {}, c)))), h("tbody", {}, ...res.items.map(row))));
  const broken = targets.items ? targets.items.filter((t) => t.broken) : [];
  if (targets.items && !targets.items.length) targets.error = { message: "尚无发送记录（首次发送后显示各机器人、邮箱的状态）" };
  const warnings = health.warnings || [];
  // Units and targets by their Chinese names; an id only where no name is known.
  const targetName = (t) => (t.target === "office" ? "舆情办" : unitLabel(t.target));
  render(h("h1", {}, "系统管理"),
    warnings.length ? h("div", { class: "panel alarm-panel", id: "notify-warnings", role: "alert" }, h("b", {}, "预警通知可能无法送达："),
      h("ul", {}, ...warnings.map((w) => h("li", {}, w)))) : null,
    broken.length ? h("div", { class: "panel warn", id: "broken-targets" }, h("b", {}, `有 ${broken.length} 个通知渠道故障，预警可能无法送达：`),
      broken.map((t) => h("div", {}, `${CHANNEL_NAMES[t.channel] || t.channel} ${targetName(t)}：${t.reason}（自 ${fmtTime(t.since)}）`))) : null,
    h("div", { class: "grid cols-2" },
      h("div", { class: "panel" }, h("h2", {}, "通知渠道"),
        health.channels ? h("table", { class: "compact", id: "channels" }, h("tbody", {}, ...health.channels.map((c) => h("tr", { dataset: { channel: c.channel } },
          h("td", {}, CHANNEL_NAMES[c.channel] || c.channel), h("td", { class: c.enabled ? "ok" : "overdue" }, c.enabled ? "已启用" : "未启用"), h("td", { class: "muted" }, c.detail))))) : null,
        health.channels ? h("p", { class: "muted", id: "outbox" }, `待发送 ${health.pending} 条${health.stuck ? `（其中 ${health.stuck} 条积压超过10分钟）` : ""} · 已放弃 ${health.dead} 条`) : null,
        table(targets, ["渠道", "对象", "状态", "自"], (t) => h("tr", { dataset: { target: t.target } },
          h("td", {}, CHANNEL_NAMES[t.channel] || t.channel), h("td", {}, targetName(t)), h("td", { class: t.broken ? "overdue" : "ok" }, t.broken ? `故障：${t.reason}` : "正常"), h("td", {}, fmtTime(t.since))))),
      h("div", { class: "panel" }, h("h2", {}, "预警规则"), table(rules, ["名称", "类型", "参数"], (r) => h("tr", { dataset: { rule: r.name } },
        h("td", { class: "nowrap" }, r.name), h("td", {}, RULE_TYPES[r.type] || "其他规则"), h("td", { class: "muted small" }, ruleParams(r.config)))))),
    h("div", { class: "panel", id: "accountability" }, h("div", { class: "toolbar" }, h("h2", {}, "责任单位问责统计（近30天）"),
      h("span", { class: "right" }, h("a", { class: "btn secondary", id: "report-csv", href: `/api/v1/reports/units?${qs({ from: since, to: until, format: "csv" })}`, download: "" }, "下载 CSV"), " ",
        h("a", { class: "btn secondary", id: "report-xlsx", href: `/api/v1/reports/units?${qs({ from: since, to: until, format: "xlsx" })}`, download: "" }, "下载 Excel"))),
    report.error ? h("p", { class: "error" }, errorText(report.error)) : h("div", { class: "scroll-x" }, h("table", { class: "compact" },
      h("thead", {}, h("tr", {}, ...Object.entries(report.columns).filter(([k]) => k !== "unit").map(([, v]) => h("th", {}, v)))),
      h("tbody", {}, ...(report.items.length ? report.items.map((r) => h("tr", { dataset: { unit: r.unit } }, ...Object.keys(report.columns).filter((k) => k !== "unit").map((k) => h("td", { class: typeof r[k] === "number" ? "num" : "" }, r[k] === null || r[k] === undefined ? "—" : String(r[k])))))
        : [h("tr", {}, h("td", { class: "muted", colspan: 20 }, "所选时段没有工单"))]))))),
    h("div", { class: "grid cols-2" },
      h("div", { class: "panel" }, h("h2", {}, "用户"), table(users, ["用户名", "姓名", "角色", "单位", "状态", ""], (u) => h("tr", { dataset: { user: u.username } },
        h("td", {}, u.username), h("td", {}, u.display_name), h("td", {}, ROLE_NAMES[u.role] || u.role), h("td", {}, u.unit_name || u.unit_id || "—"),
        h("td", { class: u.active && !u.locked ? "" : "overdue" }, !u.active ? "停用" : u.locked ? "已锁定" : "正常"),
        h("td", {}, isAdmin && u.username !== state.user.username ? h("button", { class: "btn secondary small-btn", type: "button", dataset: { toggle: u.username },
          on: { click: () => setActive(u.username, !u.active) } }, u.active ? "停用" : "启用") : null)), "user-table"),
      isAdmin ? userForm(units.items || []) : null),
      h("div", { class: "panel" }, h("h2", {}, "责任单位"), table(units, ["名称", "上级单位", "编号"], (u) => h("tr", { dataset: { unitRow: u.id } }, h("td", {}, u.name), h("td", {}, u.supervisor ? unitLabel(u.supervisor) : "—"), h("td", { class: "muted small" }, u.id))))),
    h("div", { class: "panel", id: "dead-letters" }, h("h2", {}, `死信（校验失败的数据，共 ${dead.total ?? "—"} 条，显示最新 20 条）`),
      table(dead, ["时间", "环节", "来源", "原因", "原始内容（前200字节）"], (d) => h("tr", { dataset: { deadLetter: d.id } }, h("td", { class: "nowrap" }, fmtTime(d.received_at)),
        h("td", {}, d.stage), h("td", {}, SOURCE_NAMES[d.source] || d.source), h("td", {}, d.reason), h("td", {}, h("code", {}, d.raw_preview.slice(0, 200)))))));
}
function ruleParams(config) {
  const names = { thresholds: "阈值", levels: "级别", min_posts: "最少信息数", min_authors: "最少作者数", window_minutes: "时间窗（分钟）", terms: "词表", level: "级别", min_negative_share: "最低负面占比" };
  return Object.entries(config || {}).map(([k, v]) => `${names[k] || k}=${typeof v === "object" ? JSON.stringify(v) : v}`).join("；");
}
function userForm(units) {
  const f = (name, label, input) => h("label", { class: "field" }, h("span", {}, label), input);
  const msg = h("p", { id: "user-form-msg", class: "muted" });
  const form = h("form", { class: "editor", id: "user-form", on: { submit: async (ev) => {
    ev.preventDefault();
    const v = Object.fromEntries(new FormData(ev.target).entries());
    try {
      await api("/api/v1/dashboard/users", { method: "POST", body: { username: v.username.trim(), display_name: v.display_name.trim(), role: v.role, unit_id: v.unit_id || null, password: v.password } });
      toast(`已创建用户 ${v.username}`); route();
    } catch (err) { msg.className = "error"; msg.textContent = `创建失败：${errorText(err)}`; }
  } } },
  h("h3", {}, "新建用户"),
  f("username", "用户名", h("input", { name: "username", required: true, maxlength: 64, pattern: "[A-Za-z0-9_.@\\-]+", autocomplete: "off" })),
  f("display_name", "姓名", h("input", { name: "display_name", maxlength: 64 })),
  f("role", "角色", select("role", "handler", ROLE_NAMES, "角色")),
  f("unit_id", "所属单位（责任单位必填）", select("unit_id", "", { "": "无", ...Object.fromEntries(units.map((u) => [u.id, u.name])) }, "所属单位")),
  f("password", "初始密码（至少10位）", h("input", { name: "password", type: "password", required: true, minlength: 10, autocomplete: "new-password" })),
  h("div", { class: "row" }, h("button", { class: "btn", type: "submit" }, "创建")), msg);
  return form;
}
async function setActive(username, active) {
  try {
    await api(`/api/v1/dashboard/users/${encodeURIComponent(username)}/active`, { method: "POST", body: { active } });
    toast(active ? `已启用 ${username}` : `已停用 ${username}，其登录和令牌立即失效`); route();
  } catch (err) { toast(`操作失败：${errorText(err)}`); }
}

/* ---------- wall screen (大屏): 1920×1080, no scrolling, refreshes itself ---------- */
const SVG_NS = "http://www.w3.org/2000/svg";
function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}
function chinaDayStart(offsetDays) {
  const cst = new Date(Date.now() + 8 * 36e5);
  return new Date(Date.UTC(cst.getUTCFullYear(), cst.getUTCMonth(), cst.getUTCDate()) - 8 * 36e5 + offsetDays * 864e5);
}
function delta(now, before) {
  if (!before) return h("span", { class: "delta muted" }, now ? "昨日同期无数据" : "与昨日同期持平");
  const pct = Math.round((100 * (now - before)) / before);
  return h("span", { class: `delta ${pct > 0 ? "up" : pct < 0 ? "down" : ""}` }, `较昨日同期 ${pct > 0 ? "↑" : pct < 0 ? "↓" : ""}${Math.abs(pct)}%`);
}
/** The district map: local GeoJSON-like polygons (no tiles, no CDN), shaded by today's posts per district. */
async function districtMap(el, byDistrict) {
  if (!state.geo) state.geo = await fetch("/static/a-city-districts.json", { credentials: "same-origin" }).then((r) => r.json());
  const max = Math.max(1, ...Object.values(byDistrict || {}));
  const map = svg("svg", { viewBox: "0 -20 600 480", class: "district-map", role: "img", "aria-label": "A市各区县今日信息量" });
  for (const f of state.geo.features) {
    const name = f.properties.name, n = (byDistrict || {})[name] || 0;
    const ring = f.geometry.coordinates[0];
    const alpha = n ? 0.15 + 0.85 * (n / max) : 0.04;
    const cx = ring.slice(0, -1).reduce((a, p) => a + p[0], 0) / (ring.length - 1), cy = ring.slice(0, -1).reduce((a, p) => a + p[1], 0) / (ring.length - 1);
    map.append(svg("g", { class: "district", "data-district": name },
      svg("polygon", { points: ring.map((p) => p.join(",")).join(" "), fill: `rgba(215,38,61,${alpha.toFixed(2)})`, stroke: "#9fb4cc", "stroke-width": 2 }),
      svg("text", { x: cx, y: cy - 4, "text-anchor": "middle", class: "d-name" }, name),
      svg("text", { x: cx, y: cy + 22, "text-anchor": "middle", class: "d-count" }, `${n} 条`)));
  }
  el.replaceChildren(map, h("div", { class: "muted small" }, "示意图，非精确边界"));
}
/** A word cloud without a plugin: words sized by count (set through CSSOM, which the CSP allows), biggest in the middle. */
function wordCloud(el, items) {
  if (!items.length) { empty(el, "今日暂无高频词"); return; }
  const max = items[0].count, min = items[items.length - 1].count;
  const arranged = [];
  items.forEach((w, i) => {
    const span = h("span", { class: `word c${i % 6}`, dataset: { word: w.word }, title: `${w.word}：${w.count}` }, w.word);
    span.style.fontSize = `${14 + Math.round(30 * (max === min ? 1 : (w.count - min) / (max - min)))}px`;
    if (i % 2) arranged.push(span); else arranged.unshift(span);
  });
  el.replaceChildren(h("div", { class: "cloud" }, ...arranged));
}
function screenToast(text, alarm) {
  state.screenQueue = state.screenQueue || [];
  state.screenQueue.push({ text, alarm });
  if (state.screenTimer) return;
  // Grouped and quiet: one small note every few seconds for everything that arrived meanwhile.
  state.screenTimer = setTimeout(() => {
    const queued = state.screenQueue; state.screenQueue = []; state.screenTimer = null;
    const t = $("toast");
    t.className = `toast quiet${queued.some((q) => q.alarm) ? " serious" : ""}`;
    t.replaceChildren(h("b", {}, queued.length > 1 ? `${queued.length} 条预警动态` : "预警动态"),
      ...queued.slice(0, 3).map((q) => h("div", { class: "toast-line" }, q.text)), queued.length > 3 ? h("div", { class: "muted" }, `另有 ${queued.length - 3} 条`) : null);
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => t.classList.add("hidden"), 8000);
  }, 2500);
}
async function pageScreen() {
  document.body.classList.add("screen-mode");
  render(h("div", { class: "screen" },
    h("header", { class: "screen-head" }, h("h1", {}, "A市舆情态势"), h("span", { id: "screen-clock", class: "clock" }),
      h("span", { class: "muted", id: "screen-updated" }), h("a", { href: "#/overview", class: "exit" }, "退出大屏")),
    h("div", { class: "screen-kpis", id: "screen-kpis" }),
    h("div", { class: "screen-main" },
      h("section", { class: "screen-panel" }, h("h2", {}, "各区县今日信息量"), h("div", { id: "screen-map", class: "map-box" })),
      h("section", { class: "screen-panel" }, h("h2", {}, "今日与昨日信息量（按小时）"), h("div", { id: "screen-trend", class: "chart" }),
        h("h2", {}, "今日热词"), h("div", { id: "screen-cloud", class: "cloud-box" })),
      h("section", { class: "screen-panel" }, h("h2", {}, "实时预警", h("span", { id: "screen-wall-page", class: "muted small" })), h("div", { id: "screen-wall", class: "screen-wall" }))),
    h("div", { class: "screen-bottom" },
      h("section", { class: "screen-panel" }, h("h2", {}, "今日热点事件"), h("table", { class: "compact" }, h("tbody", { id: "screen-events" }))),
      h("section", { class: "screen-panel" }, h("h2", {}, "各单位未办结 / 超时"), h("div", { id: "screen-units", class: "fit" })))));
  await refreshScreen();
}
async function refreshScreen() {
  if (document.body.dataset.page !== "screen" || !$("screen-kpis")) return;
  const today = chinaDayStart(0), now = new Date();
  const yStart = chinaDayStart(-1), ySame = new Date(now - 864e5);
  const [ov, yov, events, tickets, words] = await Promise.all([
    api(`/api/v1/stats/overview?${qs({ from: today.toISOString(), to: now.toISOString() })}`),
    api(`/api/v1/stats/overview?${qs({ from: yStart.toISOString(), to: ySame.toISOString() })}`),
    api(`/api/v1/events?${qs({ limit: 6, samples: 0, since: today.toISOString() })}`),
    api(`/api/v1/tickets?${qs({ limit: 500, open: "true" })}`),
    api(`/api/v1/stats/keywords?${qs({ from: today.toISOString(), to: now.toISOString(), top: 40 })}`).catch(() => ({ items: [] })),
  ]);
  if (!$("screen-kpis")) return; // left the page meanwhile
  const neg = ov.by_sentiment["负面"] || 0, yneg = yov.by_sentiment["负面"] || 0;
  const late = tickets.items.filter(isOverdue).length, serious = tickets.items.filter((t) => t.level >= 3).length;
  const big = (id, label, value, extra, cls) => h("div", { class: `screen-kpi ${cls || ""}`, id }, h("div", { class: "value" }, String(value)), h("div", { class: "label" }, label), extra || null);
  $("screen-kpis").replaceChildren(
    big("screen-total", "今日信息量", ov.total, delta(ov.total, yov.total)),
    big("screen-negative", "今日负面信息", neg, delta(neg, yneg), neg ? "bad" : ""),
    big("screen-share", "负面占比", ov.total ? `${(100 * neg / ov.total).toFixed(1)}%` : "—", h("span", { class: "delta muted" }, `昨日同期 ${yov.total ? (100 * yneg / yov.total).toFixed(1) : "—"}%`)),
    big("screen-open", "未办结工单", tickets.items.length),
    big("screen-serious", "橙色及以上预警", serious, null, serious ? "bad" : ""),
    big("screen-late", "超时工单", late, null, late ? "bad" : ""));
  await districtMap($("screen-map"), ov.by_district);
  // Today vs yesterday by hour of the day (China time).
  const hourOf = (iso) => new Date(new Date(iso).getTime() + 8 * 36e5).getUTCHours();
  const perHour = (o) => { const a = Array(24).fill(0); for (const b of o.series) a[hourOf(b.start)] += Object.values(b.counts).reduce((x, y) => x + y, 0); return a; };
  const nowHour = hourOf(now.toISOString());
  const todayLine = perHour(ov).map((v, i) => (i <= nowHour ? v : null));
  disposeCharts();
  chart($("screen-trend"), { tooltip: { trigger: "axis" }, legend: { top: 0, right: 0, textStyle: { color: "#cfe0f5" } }, grid: { left: 8, right: 16, top: 30, bottom: 4, containLabel: true },
    xAxis: { type: "category", data: Array.from({ length: 24 }, (_, i) => `${i}时`), axisLabel: { color: "#9fb4cc" } }, yAxis: { type: "value", minInterval: 1, axisLabel: { color: "#9fb4cc" }, splitLine: { lineStyle: { color: "#24476e" } } },
    series: [{ name: "今日", type: "line", data: todayLine, itemStyle: { color: "#ff6b6b" }, symbol: "none", lineStyle: { width: 3 } },
      { name: "昨日", type: "line", data: perHour(yov), itemStyle: { color: "#7fa7d9" }, symbol: "none", lineStyle: { type: "dashed" } }] });
  wordCloud($("screen-cloud"), words.items || []);
  $("screen-events").replaceChildren(...(events.items.length ? events.items.map((e) => h("tr", { dataset: { event: e.id } }, h("td", {}, levelBadge(e.level)), h("td", { class: "title" }, e.title),
    h("td", { class: "num" }, `${e.size} 条`), h("td", { class: "num" }, `负面 ${e.negative_share_pct}%`))) : [h("tr", {}, h("td", { class: "muted" }, "今日暂无热点事件"))]));
  $("screen-units").replaceChildren(unitCountsTable(tickets.items.slice(0, 200)));
  state.wall = new Map(tickets.items.map((t) => [t.id, t]));
  for (const t of tickets.items) state.levels.set(t.id, t.level);
  drawScreenWall();
  $("screen-updated").textContent = `数据更新于 ${fmtTime(now)}`;
  screenClock();
  tick();
}
/** Five cards at a time; the pages turn by themselves so the wall never scrolls. */
function drawScreenWall() {
  const wall = $("screen-wall");
  if (!wall) return;
  const items = [...state.wall.values()].filter((t) => OPEN_STATES.has(t.state)).sort(wallSort);
  const per = 5, pages = Math.max(1, Math.ceil(items.length / per));
  state.screenPage = (state.screenPage || 0) % pages;
  wall.replaceChildren(...(items.length ? items.slice(state.screenPage * per, state.screenPage * per + per).map((t) => alertCard(t, false)) : [h("p", { class: "muted" }, "暂无未办结预警")]));
  $("screen-wall-page").textContent = pages > 1 ? ` 第 ${state.screenPage + 1}/${pages} 页 · 共 ${items.length} 件` : "";
}
function screenClock() {
  const c = $("screen-clock");
  if (c) c.textContent = new Date().toLocaleString("zh-CN", { hour12: false, timeZone: "Asia/Shanghai", month: "long", day: "numeric", weekday: "long", hour: "2-digit", minute: "2-digit" });
}
setInterval(() => {
  if (document.body.dataset.page !== "screen") return;
  state.screenPage = (state.screenPage || 0) + 1;
  drawScreenWall();
  screenClock();
}, 15000);
setInterval(() => { if (document.body.dataset.page === "screen" && !document.hidden) refreshScreen().catch(() => {}); }, 30000);

/* ---------- my to-do list (handlers and approvers) ---------- */
function todoRow(item) {
  const t = item.ticket;
  return h("tr", { class: `clickable${item.overdue ? " late-row" : ""}`, dataset: { ticket: t.id, relation: item.relation },
    on: { click: () => { location.hash = `#/tickets/${encodeURIComponent(t.id)}`; } } },
  h("td", {}, levelBadge(t.level)), h("td", { class: "title" }, t.title || t.event_id,
    item.relation === "cooperating" ? h("span", { class: "tag coop-tag" }, "协办") : null),
  h("td", {}, stateBadge(t.state)),
  h("td", {}, item.next_stage ? [`${DEADLINE_NAMES[item.next_stage] || "时限"}：`, countdown(item.next_deadline)] : h("span", { class: "muted" }, "—")),
  h("td", { class: "task" }, item.relation === "cooperating" ? (item.task || h("span", { class: "muted" }, "牵头单位尚未交办具体任务")) : unitName(t)));
}
async function pageTodo() {
  const todo = await api("/api/v1/dashboard/todo");
  const u = state.user;
  const head = (last) => h("thead", {}, h("tr", {}, ...["级别", "工单", "状态", "下一时限", last].map((c) => h("th", {}, c))));
  const sections = [];
  if (u.unit_id) {
    sections.push(h("div", { class: "panel" }, h("h2", {}, `本单位牵头（${todo.lead.length}）· 按时限先后`),
      h("table", { class: "todo" }, head("牵头单位"), h("tbody", { id: "todo-lead" }, todo.lead.length ? todo.lead.map(todoRow)
        : h("tr", {}, h("td", { colspan: 5, class: "muted" }, "暂无待办工单"))))));
    sections.push(h("div", { class: "panel" }, h("h2", {}, `协办（${todo.cooperating.length}）`),
      h("table", { class: "todo" }, head("交办给本单位的任务"), h("tbody", { id: "todo-coop" }, todo.cooperating.length ? todo.cooperating.map(todoRow)
        : h("tr", {}, h("td", { colspan: 5, class: "muted" }, "暂无协办工单"))))));
  }
  if (["admin", "analyst", "leader"].includes(u.role)) {
    sections.push(h("div", { class: "panel" }, h("h2", {}, `待我审核的回应（${todo.review.length}）`),
      h("div", { id: "todo-review" }, todo.review.length ? todo.review.map((r) => h("div", { class: "review", dataset: { ticket: r.ticket_id, response: r.response_id } },
        h("div", { class: "row" }, levelBadge(r.level), h("a", { href: `#/tickets/${encodeURIComponent(r.ticket_id)}` }, r.ticket_title),
          h("span", { class: "muted" }, `${person(r.drafted_by)} 起草于 ${fmtTime(r.drafted_at)} · 已审核 ${r.approvals} 人`)),
        h("div", { class: "post-text" }, r.text_preview)))
        : h("p", { class: "muted" }, "没有等待您审核的回应"))));
  }
  if (!sections.length) sections.push(h("div", { class: "panel" }, h("p", { class: "muted" }, "您的角色没有待办事项")));
  setTodoBadge(todo.review.length + todo.lead.filter((x) => x.overdue || x.ticket.state === "new").length);
  render(h("div", { class: "toolbar" }, h("h1", {}, "我的待办"), h("span", { class: "muted" }, "随工单变化自动更新")), ...sections);
}
function setTodoBadge(n) {
  const b = $("todo-badge");
  if (!b) return;
  b.textContent = n ? String(n) : "";
  b.classList.toggle("hidden", !n);
}
/** The to-do badge, and a notice when a new draft waits for this approver's review. */
async function refreshTodoBadge() {
  if (!state.user) return;
  try {
    const todo = await fetch("/api/v1/dashboard/todo", { credentials: "same-origin", headers: { Accept: "application/json" } }).then((r) => (r.ok ? r.json() : null));
    if (!todo) return;
    const review = todo.review.length;
    if (state.reviewCount !== null && review > state.reviewCount) toast(`有新的回应待您审核（共 ${review} 条），请到“我的待办”处理`);
    state.reviewCount = review;
    setTodoBadge(review + todo.lead.filter((x) => x.overdue || x.ticket.state === "new").length);
  } catch (_e) { /* the next change or minute tries again */ }
}
setInterval(() => { if (!document.hidden) refreshTodoBadge(); }, 60000);

/* ---------- login and routing ---------- */
/** Where to go after logging in: the page a link asked for (same-site hashes only), else the overview. */
function loginTarget() {
  const next = new URLSearchParams(location.hash.split("?").slice(1).join("?")).get("next") || "";
  return next.startsWith("#/") && !next.startsWith("#/login") ? next : "#/overview";
}
function pageLogin() {
  const user = h("input", { name: "username", id: "username", autocomplete: "username", required: true });
  const pass = h("input", { name: "password", id: "password", type: "password", autocomplete: "current-password", required: true });
  const err = h("p", { class: "error", id: "login-error" });
  const form = h("form", { class: "panel login", on: { submit: async (ev) => {
    ev.preventDefault();
    try {
      const me = await api("/api/v1/auth/login", { method: "POST", body: { username: user.value, password: pass.value }, allow401: true });
      state.user = me.user; state.csrf = me.csrf_token;
      showWho();
      location.hash = loginTarget();
    } catch (e) { err.textContent = `登录失败：${e.message}`; }
  } } }, h("h1", {}, "登录"), h("label", { for: "username" }, "用户名"), user, h("label", { for: "password" }, "密码"), pass,
  h("p", {}, h("button", { class: "btn", type: "submit" }, "登录")), err,
  loginTarget() !== "#/overview" ? h("p", { class: "muted", id: "login-next" }, "登录后将打开您访问的页面") : null);
  render(form);
  user.focus();
}
/** Display names of people and units, once per login (history and the top bar show names, not ids). */
function loadPeople() {
  if (!state.peopleLoaded) state.peopleLoaded = fetchPeople();
  return state.peopleLoaded;
}
async function fetchPeople() {
  try {
    const res = await api("/api/v1/dashboard/people", { keep: true }); // not tied to the page being shown
    state.people = res.names; state.unitNames = res.units;
    const u = state.user;
    if (u && u.unit_id) $("who").textContent = `${u.display_name || u.username}（${ROLE_NAMES[u.role] || u.role} · ${res.units[u.unit_id] || u.unit_id}）`;
  } catch (_e) { state.peopleLoaded = null; }
  refreshTodoBadge();
}
async function loadMe() {
  state.user = null;
  if (readCookie("yuqing_csrf")) { // no session cookie, no point asking (and no 401 in the console)
    try {
      const me = await api("/api/v1/auth/me", { allow401: true });
      state.user = me.user; state.csrf = me.csrf_token || readCookie("yuqing_csrf");
    } catch (_e) { state.user = null; }
  }
  showWho();
}
function showWho() {
  const u = state.user;
  // The live stream needs a login (it only carries tickets this user may see): open it after login, close on logout.
  if (u) connectStream();
  else if (state.stream) { state.stream.close(); state.stream = null; }
  $("who").textContent = u ? `${u.display_name || u.username}（${ROLE_NAMES[u.role] || u.role}${u.unit_id ? ` · ${(state.unitNames || {})[u.unit_id] || u.unit_id}` : ""}）` : "";
  if (u) loadPeople();
  $("logout").classList.toggle("hidden", !u);
  for (const a of document.querySelectorAll("nav a[data-roles]")) a.classList.toggle("hidden", !u || !a.dataset.roles.split(",").includes(u.role));
}

async function route() {
  const hash = location.hash || "#/overview";
  const [path, query] = hash.slice(1).split("?");
  const params = new URLSearchParams(query || "");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const name = parts[0] || "overview";
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.route === name);
  // Not logged in: remember where the link pointed (a robot's 查看工单) and come back there after login.
  if (!state.user && name !== "login") { location.hash = `#/login?${qs({ next: hash })}`; return; }
  document.body.dataset.page = name;
  if (name !== "screen") document.body.classList.remove("screen-mode");
  if (state.navAbort) state.navAbort.abort();
  const nav = new AbortController();
  state.navAbort = nav;
  try {
    if (name === "login") pageLogin();
    else if (name === "overview") await pageOverview(params);
    else if (name === "alerts") await pageAlerts();
    else if (name === "events" && parts[1]) await pageEvent(parts[1]);
    else if (name === "events") await pageEvents(params);
    else if (name === "tickets" && parts[1]) await pageTicket(parts[1]);
    else if (name === "tickets") await pageTickets(params);
    else if (name === "search") await pageSearch(params);
    else if (name === "watchlists") await pageWatchlists();
    else if (name === "admin") await pageAdmin();
    else if (name === "todo") await pageTodo();
    else if (name === "screen") await pageScreen();
    else render(h("p", { class: "error" }, "页面不存在"));
  } catch (err) {
    if (nav.signal.aborted || (err && err.name === "AbortError")) return; // the user has moved on
    render(h("div", { class: "panel" }, h("p", { class: "error" }, `加载失败：${errorText(err)}`), h("p", {}, h("a", { href: "#/overview" }, "返回总览"))));
  }
}

document.addEventListener("DOMContentLoaded", async () => {
  $("logout").addEventListener("click", async () => {
    await api("/api/v1/auth/logout", { method: "POST", body: {} }).catch(() => {});
    state.user = null; state.csrf = null; state.peopleLoaded = null; showWho(); location.hash = "#/login";
  });
  await loadMe();
  window.addEventListener("hashchange", route);
  route();
});
