// pushgate's admin console: plain JavaScript, no framework, nothing fetched
// from anywhere but this pushgate. Every request carries the key in the
// IM-API-KEY header (and, for an admin key, the app in IM-APP-ID); no cookie
// is ever set, so no other site can make this page act.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const REFRESH_MS = 5000;
const state = { key: null, admin: false, apps: [], timer: null, sendTimer: null };

const $ = (id) => document.getElementById(id);

// Builds an element; children are nodes or text (never parsed as HTML).
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value !== undefined && value !== null) node.setAttribute(name, value);
  }
  for (const child of children.flat()) {
    if (child !== undefined && child !== null) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
  return node;
}

const time = (ms) => (ms ? new Date(ms).toLocaleTimeString() : "");
const dateTime = (ms) => (ms ? new Date(ms).toLocaleString() : "");

function currentApp() {
  return $("app").value;
}

// Calls pushgate's API; resolves to the envelope's result, rejects with its message.
async function api(method, path, body) {
  const headers = { "IM-API-KEY": state.key };
  if (state.admin && currentApp()) headers["IM-APP-ID"] = currentApp();
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: "omit" });
  let envelope;
  try {
    envelope = await response.json();
  } catch {
    throw new Error(`${response.status}: the answer is not JSON`);
  }
  if (!response.ok || envelope.RC !== 0) {
    const error = envelope.error || {};
    throw new Error(`${error.code || response.status}: ${error.message || envelope.RM}`);
  }
  return envelope.result;
}

function rows(table, items, render, empty) {
  const body = table.tBodies[0];
  body.replaceChildren();
  if (items.length === 0) {
    const columns = table.tHead ? table.tHead.rows[0].cells.length : 1;
    body.append(el("tr", {}, el("td", { colspan: columns, class: "empty" }, empty)));
    return;
  }
  for (const item of items) body.append(el("tr", {}, render(item).map((cell) => (cell instanceof Node && cell.tagName === "TD" ? cell : el("td", {}, cell)))));
}

function table(headings, items, render, empty, id) {
  const node = el("table", { id }, el("thead", {}, el("tr", {}, headings.map((heading) => el("th", {}, heading)))), el("tbody"));
  rows(node, items, render, empty);
  return node;
}

// ---- log in --------------------------------------------------------------

async function logIn(key) {
  state.key = key;
  state.admin = false;
  const session = await api("GET", "/admin/api/session");
  state.admin = session.admin;
  state.apps = session.apps;
  sessionStorage.setItem("pushgate-key", key);
  const select = $("app");
  select.replaceChildren();
  if (state.admin) select.append(el("option", { value: "" }, "All apps"));
  for (const app of session.apps) select.append(el("option", { value: app }, app));
  // An admin sees every app at first; one app is chosen to look up or send.
  if (state.admin && session.apps.length === 1) select.value = session.apps[0];
  $("nav").hidden = false;
  $("reload-box").hidden = !state.admin;
  show(location.hash.slice(1) || "overview");
}

async function reloadCredentials() {
  $("reload-result").textContent = "Reloading…";
  try {
    const { reloaded } = await api("POST", "/admin/api/reload", {});
    $("reload-result").textContent = `Reloaded: ${reloaded.join(", ") || "nothing to reload"}.`;
  } catch (error) {
    $("reload-result").textContent = `Not reloaded, the old credentials stay: ${error.message}`;
  }
}

function logOut() {
  sessionStorage.removeItem("pushgate-key");
  state.key = null;
  clearInterval(state.timer);
  clearInterval(state.sendTimer);
  $("nav").hidden = true;
  $("key").value = "";
  show("login");
}

function show(page) {
  if (!state.key) page = "login";
  if (!["login", "overview", "lookup", "send", "channels"].includes(page)) page = "overview";
  for (const id of ["login", "overview", "lookup", "send", "channels"]) $(id).hidden = id !== page;
  for (const link of document.querySelectorAll("nav a")) link.classList.toggle("current", link.id === `nav-${page}`);
  clearInterval(state.timer);
  if (page === "overview") {
    refreshOverview();
    state.timer = setInterval(refreshOverview, REFRESH_MS);
  }
  if (page === "channels") listChannels();
}

// ---- overview ------------------------------------------------------------

// Draws `series` (values per interval, ending at `times`) over the last
// hour up to `now`, one SVG unit per pixel so the text keeps its size.
function lineChart(node, times, series, height, now) {
  node.replaceChildren();
  const width = Math.max(240, Math.round(node.getBoundingClientRect().width) || 600);
  node.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const left = 44, right = 8, bottom = 18, top = 10, hour = 3600000;
  const max = Math.max(0, ...series.flatMap((line) => line.values.filter((value) => value !== null))) || 1;
  const x = (ms) => left + ((width - left - right) * Math.max(0, ms - (now - hour))) / hour;
  const y = (value) => top + (height - top - bottom) * (1 - value / max);
  node.append(svg("line", { class: "axis", x1: left, y1: height - bottom, x2: width - right, y2: height - bottom }));
  for (const fraction of [0, 0.5, 1]) {
    const label = svg("text", { x: 2, y: y(max * fraction) + 4 });
    label.textContent = Number((max * fraction).toPrecision(3)).toString();
    node.append(label);
  }
  for (const [ms, text, anchor] of [[now - hour, "−60 min", "start"], [now - hour / 2, "−30 min", "middle"], [now, "now", "end"]]) {
    const label = svg("text", { x: x(ms), y: height - 4, "text-anchor": anchor });
    label.textContent = text;
    node.append(label);
  }
  series.forEach((line, index) => {
    const points = line.values.map((value, at) => (value === null ? null : [x(times[at]), y(value)])).filter(Boolean);
    // A single point is drawn as a short stroke ending at it.
    if (points.length === 1) points.unshift([points[0][0] - 4, points[0][1]]);
    const path = svg("polyline", { class: `line c${index % 8}`, points: points.map(([px, py]) => `${px.toFixed(1)},${py.toFixed(1)}`).join(" ") });
    path.dataset.series = line.label;
    node.append(path);
  });
}

async function refreshOverview() {
  try {
    const app = currentApp();
    const overview = await api("GET", `/admin/api/overview${app ? `?app=${encodeURIComponent(app)}` : ""}`);
    const { charts, queue } = overview;
    $("updated").textContent = `updated ${time(overview.nowMS)}, one point per ${overview.stepSeconds} s`;
    const due = queue.nextDueAtMS;
    const overdue = due && due < overview.nowMS ? ` (due ${Math.round((overview.nowMS - due) / 1000)} s ago)` : due ? ` (next due ${time(due)})` : "";
    $("queue").textContent = `${queue.journaled} journaled · ${queue.queued} queued · ${queue.retrying} retrying · ${queue.held} held${overdue}`;
    const { alerts, summaries, merged, cancelled } = overview.coalescing;
    const saved = merged + cancelled;
    const would = saved + alerts + summaries;
    $("coalescing").textContent = would === 0 ? "no chat alerts yet"
      : `${saved} of ${would} alerts saved (${Math.round((100 * saved) / would)}%) · ${summaries} summaries sent`;
    const last = (values) => values.length ? values[values.length - 1] : null;
    const p95 = last(charts.acceptP95MS);
    $("accepts").textContent = `${(last(charts.acceptsPerSecond) || 0).toFixed(2)}/s now · p95 ${p95 === null ? "–" : `${p95} ms`}`;
    const lines = charts.deliveries.map((series) => ({ label: `${series.provider} ${series.result}`, values: series.perSecond }));
    lineChart($("chart-deliveries"), charts.timesMS, lines, 200, overview.nowMS);
    $("legend-deliveries").replaceChildren(...lines.map((line, index) => el("li", {}, el("span", { class: `swatch c${index % 8}` }), line.label)));
    lineChart($("chart-latency"), charts.timesMS, [{ label: "p95", values: charts.acceptP95MS }], 120, overview.nowMS);
    rows($("failures"), charts.failures, (failure) => [failure.provider, failure.result, el("td", { title: failure.explanation || "" }, failure.reason || "–", failure.explanation ? el("div", { class: "hint" }, failure.explanation) : null), failure.count], "No failures in the last hour");
    rows($("paused"), overview.pausedProviders, (pause) => {
      const button = el("button", { type: "button", class: "resume", "data-app": pause.app, "data-provider": pause.provider }, "Resume now");
      button.addEventListener("click", () => resume(pause.app, pause.provider, button));
      return [pause.app, pause.provider, pause.reason, time(pause.untilMS), button];
    }, "None");
    rows($("unreachable"), overview.unreachableProviders, (down) => [down.app, down.provider, down.sends, time(down.sinceMS), down.reason], "None");
    $("overview-error").textContent = "";
  } catch (error) {
    $("overview-error").textContent = error.message;
  }
}

async function resume(app, provider, button) {
  button.disabled = true;
  try {
    const headers = { "IM-API-KEY": state.key, "IM-APP-ID": app };
    const response = await fetch(`/admin/api/providers/${encodeURIComponent(provider)}/resume`, { method: "POST", headers, credentials: "omit" });
    const envelope = await response.json();
    if (envelope.RC !== 0) throw new Error(envelope.error ? envelope.error.message : envelope.RM);
  } catch (error) {
    $("overview-error").textContent = error.message;
  }
  refreshOverview();
}

// ---- lookup --------------------------------------------------------------

function pushLink(pushId) {
  const link = el("a", { class: "push-link", href: `#lookup`, "data-push": pushId }, pushId);
  link.addEventListener("click", (event) => {
    event.preventDefault();
    $("lookup-kind").value = "push";
    $("lookup-id").value = pushId;
    lookUp();
  });
  return link;
}

function pushTable(push, id) {
  return el("div", { id },
    el("p", {}, `Push ${push.pushId}, accepted ${dateTime(push.createdAtMS)}: `,
      Object.entries(push.summary).map(([status, count]) => `${count} ${status}`).join(", ")),
    table(["Client", "Device", "Status", "Reason", "Attempts", "Updated"], push.deliveries, (delivery) => [
      delivery.clientId,
      delivery.type ? `${delivery.type} ${delivery.deviceId}` : "–",
      el("td", { class: `status status-${delivery.status}` }, delivery.status),
      [delivery.reason || delivery.routing || "", delivery.explanation ? el("div", { class: "hint" }, delivery.explanation) : null],
      delivery.attempts,
      time(delivery.updatedAtMS),
    ], "No deliveries", `${id}-deliveries`));
}

function definitionList(entries) {
  return el("dl", {}, entries.flatMap(([term, value]) => [el("dt", {}, term), el("dd", {}, value)]));
}

async function lookUp() {
  const kind = $("lookup-kind").value;
  const id = $("lookup-id").value.trim();
  const out = $("lookup-result");
  $("lookup-error").textContent = "";
  out.replaceChildren();
  if (state.admin && !currentApp()) {
    $("lookup-error").textContent = "Choose an app first.";
    return;
  }
  const path = encodeURIComponent(id);
  try {
    if (kind === "client") {
      const [devices, badge, prefs, recent] = await Promise.all([
        api("GET", `/v1/clients/${path}/devices`),
        api("GET", `/v1/clients/${path}/badge`),
        api("GET", `/v1/clients/${path}/prefs`),
        api("GET", `/admin/api/clients/${path}/recent`),
      ]);
      out.append(
        el("h3", {}, "Devices"),
        table(["Type", "Device", "Token", "Environment", "Locale", "Registered"], devices.devices, (device) => [
          device.type, device.deviceId, device.token, device.environment || "", device.locale || "", dateTime(device.updatedAtMS),
        ], "No device registered", "client-devices"),
        el("h3", {}, "Badge"),
        el("div", { id: "client-badge" }, definitionList([
          ["Total", badge.badge],
          ...Object.entries(badge.rooms).map(([room, count]) => [`room ${room}`, count]),
          ...Object.entries(badge.sources).map(([source, count]) => [`source ${source}`, count]),
        ])),
        el("h3", {}, "Preferences and routing"),
        el("div", { id: "client-prefs" }, definitionList([
          ["Pushes", prefs.pushEnabled === false ? "off" : "on"],
          ["Quiet hours", prefs.quietHours ? `${prefs.quietHours.start}–${prefs.quietHours.end}` : "none"],
          ["Time zone", prefs.timezone || "–"],
          ["Locale", prefs.locale || "–"],
        ])),
        el("h3", {}, "Recent pushes (accepted by this node)"),
        table(["Push", "Kind", "Accepted", "Clients"], recent.pushes, (push) => [pushLink(push.pushId), push.kind, dateTime(push.acceptedAtMS), push.clients], "None lately", "client-recent"),
      );
    } else if (kind === "push") {
      out.append(pushTable(await api("GET", `/v1/pushes/${path}`), "push"));
    } else {
      const stats = await api("GET", `/v1/experiments/${path}/stats`);
      out.append(table(["Variant", "Targeted", "Delivered", "Failed", "Opened", "Open rate", "p-value"], stats.variants, (variant) => [
        variant.name, variant.targeted, variant.delivered, variant.failed, variant.opened,
        variant.openRate === null || variant.openRate === undefined ? "–" : `${(variant.openRate * 100).toFixed(1)} %`,
        variant.pValue === null || variant.pValue === undefined ? "–" : `${variant.pValue.toFixed(4)}${variant.significant ? " (significant)" : ""}`,
      ], "No variants", "experiment-variants"));
    }
  } catch (error) {
    $("lookup-error").textContent = error.message;
  }
}

// ---- test push -----------------------------------------------------------

async function sendTest() {
  const out = $("send-result");
  $("send-error").textContent = "";
  out.replaceChildren();
  clearInterval(state.sendTimer);
  if (state.admin && !currentApp()) {
    $("send-error").textContent = "Choose an app first.";
    return;
  }
  const title = $("send-title").value.trim();
  const body = $("send-body").value.trim();
  const payload = { alert: title ? `${title}: ${body}` : body, body, sound: "default" };
  if (title) payload.title = title;
  try {
    const { pushId } = await api("POST", "/push/push2clients", { clients: [$("send-client").value.trim()], payload });
    const follow = async () => {
      const push = await api("GET", `/v1/pushes/${encodeURIComponent(pushId)}`);
      out.replaceChildren(pushTable(push, "sent"));
      const settled = push.deliveries.length > 0 && push.deliveries.every((delivery) => !["queued", "retrying"].includes(delivery.status));
      if (settled) clearInterval(state.sendTimer);
    };
    await follow();
    state.sendTimer = setInterval(() => follow().catch((error) => { $("send-error").textContent = error.message; }), 1000);
  } catch (error) {
    $("send-error").textContent = error.message;
  }
}

// ---- broadcast channels -----------------------------------------------------

// The app's channels path, with the environment chosen; null (and a message) without one app.
function channelsPath(suffix) {
  const app = currentApp() || (state.apps.length === 1 ? state.apps[0] : "");
  if (!app) {
    $("channels-error").textContent = "Choose an app first.";
    return null;
  }
  const environment = $("channel-environment").value;
  return `/v1/apps/${encodeURIComponent(app)}/channels${suffix}${environment ? `?environment=${environment}` : ""}`;
}

async function listChannels() {
  $("channels-error").textContent = "";
  const path = channelsPath("");
  const out = $("channels-result");
  if (!path) return out.replaceChildren();
  try {
    const { channels } = await api("GET", path);
    const details = await Promise.all(channels.map((id) => api("GET", channelsPath(`/${encodeURIComponent(id)}`))));
    out.replaceChildren(table(["Channel", "Messages stored", "Push type", ""], details, (channel) => {
      const button = el("button", { type: "button", "data-channel": channel.channelId }, "Delete");
      button.addEventListener("click", () => deleteChannel(channel.channelId));
      return [el("code", {}, channel.channelId), channel.messageStoragePolicy === 1 ? "the most recent one" : "none", channel.pushType, button];
    }, "No channel", "channel-list"));
  } catch (error) {
    $("channels-error").textContent = error.message;
  }
}

async function createChannel() {
  $("channels-error").textContent = "";
  const path = channelsPath("");
  if (!path) return;
  try {
    await api("POST", path, { messageStoragePolicy: Number($("channel-policy").value) });
    await listChannels();
  } catch (error) {
    $("channels-error").textContent = error.message;
  }
}

async function deleteChannel(id) {
  if (!confirm(`Delete channel ${id}? Its subscribers get nothing more through it.`)) return;
  try {
    await api("DELETE", channelsPath(`/${encodeURIComponent(id)}`));
    await listChannels();
  } catch (error) {
    $("channels-error").textContent = error.message;
  }
}

// ---- wiring --------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    $("login-error").textContent = "";
    logIn($("key").value.trim()).catch((error) => {
      state.key = null;
      $("login-error").textContent = error.message;
    });
  });
  $("logout").addEventListener("click", logOut);
  $("reload").addEventListener("click", reloadCredentials);
  $("lookup-form").addEventListener("submit", (event) => { event.preventDefault(); lookUp(); });
  $("send-form").addEventListener("submit", (event) => { event.preventDefault(); sendTest(); });
  $("channel-form").addEventListener("submit", (event) => { event.preventDefault(); createChannel(); });
  $("channel-environment").addEventListener("change", listChannels);
  $("app").addEventListener("change", () => show(location.hash.slice(1) || "overview"));
  window.addEventListener("hashchange", () => show(location.hash.slice(1)));
  const saved = sessionStorage.getItem("pushgate-key");
  if (saved) logIn(saved).catch(logOut);
  else show("login");
});
