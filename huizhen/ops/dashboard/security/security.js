// The security officers' console: roles as tables, changes dry-run before they apply, the access tester,
// the audit trail with its chain status, and the break-glass alerts. Every figure comes through /graphql.
import { gql, showError, wireLogin } from "../api.js";
import { onChange } from "../live.js";

const $ = (sel) => document.querySelector(sel);
const OFFICER = "security_officer";
const state = { roles: [], vocab: null, etags: {}, policyEtag: null, pending: null, alerts: [] };

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = text;
  if (cls) node.className = cls;
  return node;
}

function td(content, cls) {
  const cell = el("td", typeof content === "string" ? content : undefined, cls);
  if (content instanceof Node) cell.append(content);
  return cell;
}

function fmt(iso) { return iso ? new Date(iso).toLocaleString() : ""; }

function options(select, values, { keep = false } = {}) {
  if (!keep) select.replaceChildren();
  for (const v of values) select.append(new Option(v, v));
}

// ---- login -------------------------------------------------------------------------------------

async function login() {
  const { me } = await gql("{ me { id roles facility } }");
  state.roles = me.roles;
  $("#whoami").textContent = `${me.id} · ${me.roles.join(", ")}`;
  $("#login").hidden = true;
  $("#main").hidden = false;
  $("#logout").hidden = false;
  const allowed = me.roles.includes(OFFICER) || me.roles.includes("auditor");
  $("#not-allowed").hidden = allowed;
  $("#console").hidden = !allowed;
  if (!allowed) return;
  const readOnly = !me.roles.includes(OFFICER);
  for (const part of document.querySelectorAll(".writer")) part.hidden = readOnly;
  const { policyVocabulary } = await gql("{ policyVocabulary { roles objects actions } }");
  state.vocab = policyVocabulary;
  options($("#tester select[name=role]"), policyVocabulary.roles, { keep: true });
  options($("#tester select[name=object]"), policyVocabulary.objects);
  options($("#tester select[name=action]"), policyVocabulary.actions);
  options($("#change select[name=role]"), policyVocabulary.roles);
  options($("#change select[name=object]"), policyVocabulary.objects);
  options($("#change select[name=action]"), policyVocabulary.actions);
  showChangeFields();
  await Promise.allSettled([refreshRoles(), refreshAudit(), refreshLive()]);
  const live = onChange(refreshLive, { subscription: "subscription { securityAlerts { id } }" });
  setInterval(() => { $("#live").textContent = live.mode.value; tickAlerts(); }, 1000);
}


// ---- roles -------------------------------------------------------------------------------------

async function refreshRoles() {
  const { policyRoles, policyEtag } = await gql(`{ policyEtag policyRoles { role etag
    policies { subject domain object action } assignments { user role domain } } }`);
  state.policyEtag = policyEtag;
  const box = $("#roles");
  box.replaceChildren();
  for (const r of policyRoles) {
    state.etags[r.role] = r.etag;
    const part = el("div", undefined, "role");
    part.dataset.role = r.role;
    const title = el("h3", r.role);
    title.append(" ", el("code", `etag ${r.etag}`));
    part.append(title);
    const table = el("table");
    table.setAttribute("data-testid", `role-${r.role}`);
    const head = el("tr");
    for (const h of ["domain", "object", "action", ""]) head.append(el("th", h));
    table.createTHead().append(head);
    const body = el("tbody");
    const byDomain = [...r.policies].sort((a, b) => a.domain.localeCompare(b.domain) || a.object.localeCompare(b.object));
    for (const p of byDomain) {
      const tr = el("tr");
      tr.dataset.line = `p, ${p.subject}, ${p.domain}, ${p.object}, ${p.action}`;
      tr.append(td(p.domain), td(p.object), td(p.action), td(removeButton("remove-p", p)));
      body.append(tr);
    }
    for (const a of r.assignments) {
      const tr = el("tr");
      tr.dataset.line = `g, ${a.user}, ${a.role}, ${a.domain}`;
      tr.append(td(a.domain), td(`assigned to ${a.user}`), td(""), td(removeButton("remove-g", a)));
      body.append(tr);
    }
    table.append(body);
    part.append(table);
    box.append(part);
  }
}

function removeButton(op, line) {
  const b = el("button", "remove", "mini writer");
  b.hidden = !state.roles.includes(OFFICER);
  b.addEventListener("click", () => {
    const form = $("#change");
    form.op.value = op;
    form.role.value = line.subject ?? line.role;
    form.domain.value = line.domain;
    if (op === "remove-p") { form.object.value = line.object; form.action.value = line.action; }
    else form.user.value = line.user;
    showChangeFields();
    form.reason.focus();
  });
  return b;
}

// ---- a change: dry run, then confirm -----------------------------------------------------------

function showChangeFields() {
  const g = $("#change").op.value.endsWith("-g");
  for (const l of document.querySelectorAll("#change .for-g")) l.hidden = !g;
  for (const l of document.querySelectorAll("#change .for-p")) l.hidden = g;
}

$("#change").op.addEventListener("change", showChangeFields);

function changeFromForm(form) {
  const f = Object.fromEntries(new FormData(form));
  const [verb, kind] = f.op.split("-");
  const role = f.role;
  const domain = f.domain.trim();
  if ((f.reason ?? "").trim().length < 5) throw new Error("every change needs a reason (at least 5 characters)");
  const line = kind === "p" ? `p, ${role}, ${domain}, ${f.object}, ${f.action}` : `g, ${f.user.trim()}, ${role}, ${domain}`;
  const vars = { reason: f.reason.trim(), etag: state.etags[role] ?? null };
  let mutation;
  if (kind === "p") {
    Object.assign(vars, { input: { subject: role, domain, object: f.object, action: f.action } });
    mutation = verb === "add"
      ? "mutation($input: PolicyInput!, $reason: String, $etag: String) { addPolicy(input: $input, reason: $reason, expectedEtag: $etag) { subject } }"
      : "mutation($input: PolicyInput!, $reason: String, $etag: String) { removePolicy(input: $input, reason: $reason, expectedEtag: $etag) }";
  } else {
    Object.assign(vars, { user: f.user.trim(), role, domain });
    const name = verb === "add" ? "assignRole" : "revokeRole";
    const tail = verb === "add" ? " { user }" : "";
    mutation = `mutation($user: String!, $role: String!, $domain: String!, $reason: String, $etag: String) {
      ${name}(user: $user, role: $role, domain: $domain, reason: $reason, expectedEtag: $etag)${tail} }`;
  }
  return { dry: verb === "add" ? { add: [line] } : { remove: [line] }, days: Number(f.days || 30), mutation, vars,
    describe: `${verb} ${line}` };
}

async function dryRun(change) {
  const { policyDryRun } = await gql(
    `query($add: [String!], $remove: [String!], $csv: String, $days: Int!) {
       policyDryRun(add: $add, remove: $remove, csv: $csv, days: $days) {
         days examined skipped added removed
         changes { user domain object action wasAllowed nowAllowed count } } }`,
    { add: null, remove: null, csv: null, ...change.dry, days: change.days });
  state.pending = change;
  const r = policyDryRun;
  $("#dryrun").hidden = false;
  $("#apply-result").textContent = "";
  $("#dryrun-summary").textContent =
    `${r.changes.length ? r.changes.reduce((n, c) => n + c.count, 0) : 0} of ${r.examined} decisions of the last ${r.days} days would change`;
  $("#dryrun-lines").textContent = [...r.added.map((l) => `+ ${l}`), ...r.removed.map((l) => `− ${l}`)].join("   ") || "no line changes";
  const body = $("#dryrun-changes tbody");
  body.replaceChildren();
  for (const c of r.changes) {
    const tr = el("tr");
    tr.dataset.key = `${c.user}|${c.domain}|${c.object}|${c.action}`;
    const turn = c.nowAllowed ? "denied → granted" : "granted → denied";
    tr.append(td(c.user), td(c.domain), td(c.object), td(c.action), td(turn, c.nowAllowed ? "to-granted" : "to-denied"),
      td(String(c.count), "num"));
    body.append(tr);
  }
  if (!r.changes.length) {
    const tr = el("tr");
    const cell = td("no recorded decision would change");
    cell.colSpan = 6;
    tr.append(cell);
    body.append(tr);
  }
}

$("#change").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("#change-error").textContent = "";
  try {
    await dryRun(changeFromForm(event.target));
  } catch (err) {
    showError($("#change-error"), err);
  }
});

$("#confirm").addEventListener("click", async () => {
  const change = state.pending;
  if (!change) return;
  try {
    await gql(change.mutation, change.vars);
    $("#apply-result").textContent = `applied: ${change.describe}`;
    state.pending = null;
    $("#dryrun").hidden = true;
  } catch (err) {
    showError($("#apply-result"), err);
    $("#dryrun").hidden = false;
  }
  await Promise.allSettled([refreshRoles(), refreshAudit()]);
  if (!state.pending) $("#change-error").textContent = $("#apply-result").textContent;
});

$("#discard").addEventListener("click", () => { state.pending = null; $("#dryrun").hidden = true; });

// ---- the policy file -----------------------------------------------------------------------------

$("#export-csv").addEventListener("click", async () => {
  const { policyCsv } = await gql("{ policyCsv }");
  $("#csv").value = policyCsv;
  download("huizhen-policy.csv", policyCsv, "text/csv");
});

$("#import-csv").addEventListener("click", async () => {
  $("#csv-error").textContent = "";
  const csv = $("#csv").value;
  const reason = $("#import-reason").value.trim();
  try {
    if (reason.length < 5) throw new Error("importing a policy file needs a reason (at least 5 characters)");
    await dryRun({
      dry: { csv }, days: 30, describe: "import of the policy file",
      mutation: "mutation($csv: String!, $reason: String, $etag: String) { importPolicy(csv: $csv, reason: $reason, expectedEtag: $etag) }",
      vars: { csv, reason, etag: state.policyEtag },
    });
  } catch (err) {
    showError($("#csv-error"), err);
  }
});

function download(name, text, type) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = Object.assign(el("a"), { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

// ---- access tester -------------------------------------------------------------------------------

$("#tester").addEventListener("submit", async (event) => {
  event.preventDefault();
  const f = Object.fromEntries(new FormData(event.target));
  const answer = $("#tester-answer");
  const reasons = $("#tester-reasons");
  reasons.replaceChildren();
  try {
    const { explainAccess } = await gql(
      `query($user: String!, $domain: String!, $object: String!, $action: String!, $role: String) {
         explainAccess(user: $user, domain: $domain, object: $object, action: $action, role: $role) { allowed reasons } }`,
      { user: f.user.trim() || f.role, domain: f.domain.trim(), object: f.object, action: f.action, role: f.role || null });
    answer.textContent = explainAccess.allowed ? "ALLOW" : "DENY";
    answer.className = `answer ${explainAccess.allowed ? "allowed" : "denied"}`;
    for (const r of explainAccess.reasons) reasons.append(el("li", r));
  } catch (err) {
    answer.className = "answer denied";
    showError(answer, err);
  }
});

// ---- audit trail -----------------------------------------------------------------------------------

function auditArgs() {
  const f = Object.fromEntries(new FormData($("#audit-filter")));
  const time = (v) => (v ? new Date(v).toISOString() : null);
  return { actor: f.actor.trim() || null, patient: f.patient.trim() || null, action: f.action.trim() || null,
    outcome: f.outcome || null, since: time(f.since), until: time(f.until) };
}

const AUDIT_ARGS = "$actor: String, $patient: String, $action: String, $outcome: String, $since: String, $until: String";
const AUDIT_PASS = "actor: $actor, patient: $patient, action: $action, outcome: $outcome, since: $since, until: $until";

async function refreshAudit() {
  const note = $("#audit-note");
  try {
    const { auditEvents } = await gql(
      `query(${AUDIT_ARGS}) { auditEvents(${AUDIT_PASS}, first: 50) { totalCount
         edges { node { at actor roles domain action entityType entityId outcome detail source } } } }`, auditArgs());
    const body = $("#audit tbody");
    body.replaceChildren();
    for (const { node } of auditEvents.edges) {
      const tr = el("tr");
      tr.append(td(fmt(node.at)), td(node.actor), td(node.roles.join(", ")), td(node.domain ?? ""), td(node.action),
        td([node.entityType, node.entityId].filter(Boolean).join(" ")), td(node.outcome, `outcome ${node.outcome}`),
        td(node.detail ?? "", "clip"));
      body.append(tr);
    }
    note.textContent = `${auditEvents.totalCount} event(s)`;
  } catch (err) {
    showError(note, err);
  }
}

$("#audit-filter").addEventListener("submit", (event) => { event.preventDefault(); refreshAudit(); });

$("#audit-export").addEventListener("click", async () => {
  try {
    const { auditExport } = await gql(`query(${AUDIT_ARGS}) { auditExport(${AUDIT_PASS}) }`, auditArgs());
    download("huizhen-audit.jsonl", auditExport, "application/x-ndjson");
  } catch (err) {
    showError($("#audit-note"), err);
  }
});

// ---- live: chain status and break-glass alerts -------------------------------------------------------

async function refreshLive() {
  const { auditChain, breakGlassGrants } = await gql(`{ auditChain { ok checked brokenAt reason checkedAt }
    breakGlassGrants { id user domain patientId reason grantedAt expiresAt status acknowledgedBy } }`);
  const chain = $("#chain");
  chain.textContent = auditChain.ok
    ? `intact (${auditChain.checked} events, checked ${new Date(auditChain.checkedAt).toLocaleTimeString()})`
    : `BROKEN at event ${auditChain.brokenAt}: ${auditChain.reason}`;
  chain.className = auditChain.ok ? "to-granted" : "error";
  state.alerts = breakGlassGrants;
  renderAlerts();
}

function alertStatus(a) {
  return new Date(a.expiresAt).getTime() <= Date.now() ? "EXPIRED" : a.status;
}

function renderAlerts() {
  const body = $("#alerts tbody");
  body.replaceChildren();
  for (const a of state.alerts) {
    const status = alertStatus(a);
    const tr = el("tr", undefined, status);
    tr.dataset.id = a.id;
    tr.dataset.status = status;
    let review;
    if (a.acknowledgedBy) review = `acknowledged by ${a.acknowledgedBy}`;
    else if (state.roles.includes(OFFICER)) {
      review = el("button", "Acknowledge", "mini");
      review.addEventListener("click", () => acknowledge(a.id));
    } else review = "open";
    tr.append(td(fmt(a.grantedAt)), td(a.user), td(a.domain), td(a.patientId), td(a.reason), td(fmt(a.expiresAt)),
      td(status, `status ${status}`), td(review));
    body.append(tr);
  }
  if (!state.alerts.length) {
    const tr = el("tr");
    const cell = td("no break-glass access in the last 24 hours");
    cell.colSpan = 8;
    tr.append(cell);
    body.append(tr);
  }
}

function tickAlerts() {  // an expiry shows on time, without waiting for the next refresh
  if (state.alerts.some((a) => alertStatus(a) !== document.querySelector(`#alerts tr[data-id="${a.id}"]`)?.dataset.status)) {
    renderAlerts();
  }
}

async function acknowledge(id) {
  await gql("mutation($id: ID!) { acknowledgeBreakGlass(id: $id) { id } }", { id });
  await refreshLive();
}

wireLogin(login);
