// The hospital's side, in the sandbox: the terminal decodes a patient's QR code into a visit, the
// hospital's system (HIS) bills it and watches it turn PAID. Partner tokens come from the stub.
import { config, hospital, idempotencyKey, sandbox } from "./api.js";
import { t, toggleLang, translate } from "./i18n.js";
import { h, showError, state, when, yuan } from "./ui.js";

const ORDER_TYPES = ["DIAG", "PHARMACY", "REG", "IN_HOSP"];
const FIELDS = [["code", "text"], ["name", "text"], ["category", "text"], ["quantity", "number"], ["unit_price_fen", "number"]];
let visit = null;
let scanned = "";
let items = null;
let watching = null;

async function render() {
  translate();
  const cfg = await config();
  items = items || cfg.demo_items.map((item) => ({ ...item }));
  const frame = document.getElementById("app");
  frame.replaceChildren(
    h("header", {}, h("div", {}, h("h2", { style: "margin:0" }, t("terminal_title")), h("div", { class: "small" }, t("terminal_hospital"))),
      h("button", { class: "btn plain small-btn", onclick: () => { toggleLang(); render(); } }, t("lang"))),
    h("p", { class: "sandbox-note" }, t("terminal_note")),
    h("div", { class: "cols" }, scanCard(), billCard()),
    watchCard(),
    scheduleCard());
}

function scanCard() {
  const payload = h("textarea", { rows: 4, "data-testid": "terminal-payload", placeholder: "MPQR1...", value: scanned });
  const patient = h("div", { "data-testid": "terminal-patient" }, visit ? patientView(visit) : null);
  const decode = async () => {
    try {
      scanned = payload.value.trim();
      visit = await hospital("terminal", "POST", "/ecert/decode", { body: { qr: scanned } });
      render();
    } catch (error) {
      showError(error);
    }
  };
  // A photo of the patient's screen, as a scanner would see it: decoded here, in the page.
  const photo = h("input", {
    type: "file", accept: "image/*", "data-testid": "terminal-image",
    onchange: async (event) => {
      const file = event.target.files[0];
      if (!file) return;
      const text = await readQr(file);
      if (text === null) { showError(new Error(t("terminal_no_code"))); return; }
      payload.value = text;
      await decode();
    },
  });
  return h("div", { class: "card" }, h("h3", {}, t("terminal_scan")),
    h("label", { class: "field" }, h("span", {}, t("terminal_image")), photo),
    h("label", { class: "field" }, h("span", {}, t("terminal_payload")), payload),
    h("button", { class: "btn", "data-testid": "terminal-decode", onclick: decode }, t("terminal_decode")), patient);
}

// The QR code in a picture (jsQR, loaded by terminal.html), or null when there is none.
async function readQr(file) {
  const bitmap = await createImageBitmap(file);
  const canvas = document.createElement("canvas");
  canvas.width = bitmap.width;
  canvas.height = bitmap.height;
  const context = canvas.getContext("2d");
  context.drawImage(bitmap, 0, 0);
  const pixels = context.getImageData(0, 0, canvas.width, canvas.height);
  const found = window.jsQR(pixels.data, pixels.width, pixels.height);
  return found ? found.data : null;
}

const patientView = (opened) => h("div", { style: "margin-top:10px" },
  h("div", { class: "cell" }, t("terminal_patient"), h("b", { "data-testid": "patient-name" }, opened.patient.name)),
  h("div", { class: "cell" }, t("bind_id"), h("span", {}, opened.patient.id_number)),
  h("div", { class: "cell" }, t("terminal_insurance"), h("span", {}, t(opened.patient.insurance_type))),
  h("div", { class: "cell" }, t("terminal_region"), h("span", {}, opened.patient.region_code)),
  h("div", { class: "small" }, `visit ${opened.method} · ${when(opened.expires_at)}`));

function billCard() {
  const orderType = h("select", { "data-testid": "order-type" }, ORDER_TYPES.map((v) => h("option", { value: v }, `${v} ${t(v)}`)));
  const rows = items.map((item, index) => h("tr", {},
    FIELDS.map(([field, type]) => h("td", {}, h("input", {
      type, value: item[field], oninput: (e) => { item[field] = type === "number" ? Number(e.target.value) : e.target.value; },
    }))),
    h("td", {}, h("button", { class: "btn danger small-btn", onclick: () => { items.splice(index, 1); render(); } }, "×"))));
  const create = async () => {
    try {
      const bill = await hospital("his", "POST", "/bills", {
        body: { order_type: orderType.value, visit_token: visit.visit_token, items }, key: idempotencyKey(),
      });
      watch(bill.id);
    } catch (error) {
      showError(error);
    }
  };
  return h("div", { class: "card" }, h("h3", {}, t("terminal_bill")),
    h("label", { class: "field" }, h("span", {}, t("terminal_order_type")), orderType),
    h("table", { class: "items" },
      h("tr", {}, ["terminal_code", "terminal_name", "terminal_category", "terminal_qty", "terminal_price"].map((k) => h("th", {}, t(k))), h("th", {})),
      rows),
    h("button", { class: "btn plain small-btn", style: "margin-top:8px", onclick: () => { items.push({ code: "", name: "", category: "A", quantity: 1, unit_price_fen: 100 }); render(); } }, t("terminal_add")),
    h("button", { class: "btn", disabled: !visit, "data-testid": "terminal-create", onclick: create }, t("terminal_create")));
}

const watched = h("div", { "data-testid": "terminal-bill" });
function watchCard() {
  return h("div", { class: "card" }, h("h3", {}, t("terminal_watch")), watched);
}

// The bill as the hospital's system sees it, asked again every second until it settles.
function watch(id) {
  clearInterval(watching);
  const show = async () => {
    const bill = await hospital("his", "GET", `/bills/${id}`);
    watched.replaceChildren(
      h("div", { class: "cell" }, h("b", {}, bill.bill_no), state(bill.state)),
      h("div", { class: "cell" }, t("bill_total"), h("b", {}, yuan(bill.total_fen))),
      bill.fund_fen === null ? null : h("div", { class: "parts" },
        h("div", {}, h("b", {}, yuan(bill.fund_fen)), h("span", { class: "small" }, t("fund"))),
        h("div", {}, h("b", {}, yuan(bill.personal_account_fen)), h("span", { class: "small" }, t("personal_account"))),
        h("div", {}, h("b", {}, yuan(bill.cash_fen)), h("span", { class: "small" }, `${t("cash")} ${bill.cash_method || ""}`))),
      bill.paid_at ? h("div", { class: "small" }, `${t("paid_at")} ${when(bill.paid_at)}`) : null,
      h("div", { class: "small" }, `${bill.patient.name} · ${bill.id}`));
    if (!["CREATED", "PAYING"].includes(bill.state)) clearInterval(watching);
  };
  show().catch(showError);
  watching = setInterval(() => show().catch(() => null), 1000);
}

function scheduleCard() {
  const result = h("span", { class: "small", "data-testid": "schedule-result" });
  const publish = async () => {
    try {
      const week = await sandbox("GET", "/_web/demo-schedule");
      const done = await hospital("his", "PUT", "/schedules", { body: week });
      result.textContent = t("terminal_published", done.sessions_created + done.sessions_updated);
    } catch (error) {
      showError(error);
    }
  };
  return h("div", { class: "card" }, h("h3", {}, t("terminal_schedule")),
    h("div", { class: "row" }, h("button", { class: "btn plain small-btn", "data-testid": "publish-schedule", onclick: publish }, t("terminal_publish")), result));
}

render();
