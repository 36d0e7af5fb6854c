// The operations dashboard: each role sees its parts, every figure comes from the GraphQL API.
import { gql, showError, wireLogin } from "./api.js";
import { lineChart } from "./chart.js";
import { onChange } from "./live.js";

const $ = (sel) => document.querySelector(sel);
const MINUTES = 60;
const state = { roles: [], journal: { after: null }, selected: null, live: null };

function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text ?? "";
  if (cls) td.className = cls;
  row.append(td);
  return td;
}

function fmtTime(iso) {
  return iso ? new Date(iso).toLocaleString() : "";
}

// ---- login -------------------------------------------------------------------------------------

async function login() {
  const data = await gql("{ me { id roles facility } }");
  state.roles = data.me.roles;
  $("#whoami").textContent = `${data.me.id} · ${data.me.roles.join(", ")}`;
  $("#login").hidden = true;
  $("#main").hidden = false;
  $("#logout").hidden = false;
  let parts = 0;
  for (const part of document.querySelectorAll("[data-role]")) {
    part.hidden = !state.roles.includes(part.dataset.role);
    if (!part.hidden) parts += 1;
  }
  $("#no-parts").hidden = parts > 0;
  await refresh();
  state.live = onChange(refresh);
  setInterval(() => { $("#live").textContent = state.live.mode.value; }, 1000);
  $("#live").textContent = state.live.mode.value;
}


// ---- refresh: what each role sees ----------------------------------------------------------------

async function refresh() {
  const jobs = [];
  if (state.roles.includes("integration_admin")) {
    jobs.push(refreshChannels(), refreshChart(), refreshErrors(), refreshJournal());
    if (state.selected) jobs.push(openMessage(state.selected, { keepRaw: true }));
  }
  if (state.roles.includes("coordinator")) jobs.push(refreshBoard());
  if (state.roles.includes("security_officer")) jobs.push(refreshAudit());
  await Promise.allSettled(jobs);
}

async function refreshChannels() {
  const { channels } = await gql(
    "{ channels { name direction state received errors queued lastError lastMessageAt } }");
  const body = $("#channels tbody");
  body.replaceChildren();
  const select = $("#journal-filter select[name=channel]");
  const known = new Set([...select.options].map((o) => o.value));
  for (const c of channels) {
    const row = document.createElement("tr");
    row.dataset.channel = c.name;
    cell(row, c.name);
    cell(row, c.direction);
    cell(row, c.state, `state ${c.state}`);
    cell(row, String(c.received), "num received");
    cell(row, String(c.errors), c.errors ? "num err errors" : "num errors");
    cell(row, String(c.queued), "num");
    cell(row, fmtTime(c.lastMessageAt));
    cell(row, c.lastError, "clip");
    body.append(row);
    if (!known.has(c.name)) select.append(new Option(c.name, c.name));
  }
}

async function refreshChart() {
  const { messageRate } = await gql(
    "query($m: Int!) { messageRate(minutes: $m) { minute channel received errors } }", { m: MINUTES });
  const now = new Date();
  now.setSeconds(0, 0);
  const start = now.getTime() - (MINUTES - 1) * 60000;
  const labels = [];
  for (let i = 0; i < MINUTES; i += 1) {
    labels.push(new Date(start + i * 60000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }));
  }
  const byChannel = new Map();
  let received = 0;
  let errors = 0;
  for (const p of messageRate) {
    const i = Math.round((new Date(p.minute).getTime() - start) / 60000);
    if (i < 0 || i >= MINUTES) continue;
    if (!byChannel.has(p.channel)) byChannel.set(p.channel, new Array(MINUTES).fill(0));
    byChannel.get(p.channel)[i] += p.received;
    received += p.received;
    errors += p.errors;
  }
  const series = [...byChannel].map(([name, values]) => ({ name, values }));
  if (!series.length) series.push({ name: "no messages", values: new Array(MINUTES).fill(0) });
  lineChart($("#chart"), series, labels);
  $("#count-received").textContent = String(received);
  $("#count-errors").textContent = String(errors);
}

const MESSAGE_FIELDS = "id channel status type controlId sender peer receivedAt processedAt error";

async function refreshErrors() {
  const { messages } = await gql(
    `{ messages(status: ERROR, first: 5) { edges { node { ${MESSAGE_FIELDS} } } } }`);
  const list = $("#last-errors");
  list.replaceChildren();
  for (const { node } of messages.edges) {
    const item = document.createElement("li");
    const link = document.createElement("a");
    link.href = "#";
    link.textContent = `${fmtTime(node.receivedAt)} ${node.channel} ${node.type ?? ""} ${node.controlId ?? ""}`;
    link.addEventListener("click", (e) => { e.preventDefault(); openMessage(node.id); });
    item.append(link, document.createTextNode(` — ${node.error ?? ""}`));
    list.append(item);
  }
  if (!messages.edges.length) list.append(Object.assign(document.createElement("li"), { textContent: "none" }));
}

function journalFilter() {
  const form = new FormData($("#journal-filter"));
  return { channel: form.get("channel") || null, status: form.get("status") || null };
}

async function refreshJournal({ append = false } = {}) {
  const { channel, status } = journalFilter();
  const after = append ? state.journal.after : null;
  const { messages } = await gql(
    `query($channel: String, $status: MessageStatus, $after: String) {
       messages(channel: $channel, status: $status, first: 25, after: $after) {
         totalCount pageInfo { hasNextPage endCursor } edges { node { ${MESSAGE_FIELDS} } } } }`,
    { channel, status, after });
  const body = $("#journal tbody");
  if (!append) body.replaceChildren();
  for (const { node } of messages.edges) {
    const row = document.createElement("tr");
    row.dataset.id = node.id;
    row.dataset.status = node.status;
    row.tabIndex = 0;
    cell(row, fmtTime(node.receivedAt));
    cell(row, node.channel);
    cell(row, node.type);
    cell(row, node.controlId, "control-id");
    cell(row, node.sender);
    cell(row, node.status, `status ${node.status}`);
    cell(row, node.error, "clip");
    row.addEventListener("click", () => openMessage(node.id));
    row.addEventListener("keydown", (e) => { if (e.key === "Enter") openMessage(node.id); });
    body.append(row);
  }
  state.journal.after = messages.pageInfo.endCursor;
  $("#journal-more").hidden = !messages.pageInfo.hasNextPage;
}

$("#journal-filter").addEventListener("change", () => refreshJournal());
$("#journal-more").addEventListener("click", () => refreshJournal({ append: true }));

// ---- one message ---------------------------------------------------------------------------------

async function findMessage(id) {
  const { message } = await gql(
    `query($id: ID!) { message(id: $id) { ${MESSAGE_FIELDS} ack effects { type id } } }`, { id });
  return message;
}

async function openMessage(id, { keepRaw = false } = {}) {
  const m = await findMessage(id);
  if (!m) return;
  if (state.selected !== id || !keepRaw) {
    $("#message-raw").hidden = true;
    $("#message-raw").textContent = "";
    $("#reprocess-result").textContent = "";
  }
  state.selected = id;
  $("#message").hidden = false;
  $("#message").dataset.status = m.status;
  $("#message-id").textContent = m.id;
  const fields = $("#message-fields");
  fields.replaceChildren();
  for (const [label, value] of [["channel", m.channel], ["status", m.status], ["type", m.type],
    ["control id", m.controlId], ["sender", m.sender], ["peer", m.peer], ["received", fmtTime(m.receivedAt)],
    ["processed", fmtTime(m.processedAt)], ["error", m.error]]) {
    const dt = document.createElement("dt");
    dt.textContent = label;
    const dd = document.createElement("dd");
    dd.textContent = value ?? "";
    dd.dataset.field = label.replace(" ", "-");
    fields.append(dt, dd);
  }
  $("#message-ack").textContent = (m.ack ?? "(none)").replaceAll("\r", "\n");
  const effects = $("#message-effects");
  effects.replaceChildren(...m.effects.map((e) => Object.assign(document.createElement("li"),
    { textContent: `${e.type} ${e.id}` })));
  if (!m.effects.length) effects.append(Object.assign(document.createElement("li"), { textContent: "none" }));
  $("#reprocess").hidden = m.status !== "ERROR";
}

$("#show-raw").addEventListener("click", async () => {
  const pre = $("#message-raw");
  try {
    // asked for on demand only: each read of the raw content is written to the audit trail
    const { message } = await gql("query($id: ID!) { message(id: $id) { raw } }", { id: state.selected });
    pre.textContent = message.raw.replaceAll("\r", "\n");
    pre.classList.remove("error");
  } catch (err) {
    showError(pre, err);
  }
  pre.hidden = false;
});

$("#reprocess").addEventListener("click", async () => {
  const result = $("#reprocess-result");
  try {
    const { reprocessMessage } = await gql(
      "mutation($id: ID!) { reprocessMessage(id: $id) { id status error } }", { id: state.selected });
    result.textContent = `reprocessed: ${reprocessMessage.status}${reprocessMessage.error ? ` — ${reprocessMessage.error}` : ""}`;
    result.classList.remove("error");
  } catch (err) {
    showError(result, err);
  }
  await refresh();
});

// ---- coordinator and security officer ----------------------------------------------------------------

async function refreshBoard() {
  const { consultationBoard } = await gql(
    "{ consultationBoard { department urgency pending assigned inProgress overdue oldestWaitingSince } }");
  const body = $("#board tbody");
  body.replaceChildren();
  for (const c of consultationBoard) {
    const row = document.createElement("tr");
    row.className = `urgency ${c.urgency}`;
    cell(row, c.department);
    cell(row, c.urgency);
    cell(row, String(c.pending), "num");
    cell(row, String(c.assigned), "num");
    cell(row, String(c.inProgress), "num");
    cell(row, String(c.overdue), c.overdue ? "num overdue" : "num");
    cell(row, fmtTime(c.oldestWaitingSince));
    body.append(row);
  }
  if (!consultationBoard.length) {
    const row = document.createElement("tr");
    cell(row, "no open consultations").colSpan = 7;
    body.append(row);
  }
}

async function refreshAudit() {
  const note = $("#audit-note");
  try {
    const { auditEvents } = await gql(
      "{ auditEvents(first: 20) { edges { node { at actor action entityType entityId outcome detail } } } }");
    const body = $("#audit tbody");
    body.replaceChildren();
    for (const { node } of auditEvents.edges) {
      const row = document.createElement("tr");
      cell(row, fmtTime(node.at));
      cell(row, node.actor);
      cell(row, node.action);
      cell(row, [node.entityType, node.entityId].filter(Boolean).join(" "));
      cell(row, node.outcome, `outcome ${node.outcome}`);
      cell(row, node.detail, "clip");
      body.append(row);
    }
    note.textContent = "";
  } catch (err) {
    note.textContent = err.code === "GRAPHQL_VALIDATION_FAILED"
      ? "This server does not offer the audit trail query (auditEvents) yet." : String(err.message);
  }
}

// ---- start ---------------------------------------------------------------------------------------------

wireLogin(login);
