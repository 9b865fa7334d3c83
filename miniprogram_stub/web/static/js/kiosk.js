// The hospital's self-service kiosk, for elders without a phone: a face check opens a visit, then
// walk-in registration and paying by face. The kiosk's partner token is the stub's (demo-kiosk);
// the sandbox face provider stands in for its camera, given the ID number of who stands there.
import { config, hospital, idempotencyKey, sandbox } from "./api.js";
import { t, toggleLang, translate } from "./i18n.js";
import { h, icon, showError, state, when, yuan } from "./ui.js";

let visit = null; // what the face check opened: visit_token, the masked patient
let standing = ""; // the ID number the camera "sees" (sandbox)
let screen = ["face"];
let leaving = null; // back to the face screen after a while with no one there

const go = (...next) => { screen = next; render(); };

async function render() {
  translate();
  const cfg = await config();
  clearTimeout(leaving);
  if (visit) leaving = setTimeout(() => { visit = null; go("face"); }, 180_000);
  const main = h("main", { "data-screen": screen[0] });
  const frame = document.getElementById("app");
  frame.replaceChildren(
    h("header", {}, h("div", {}, h("h1", {}, t("kiosk_title")), h("div", { class: "small" }, t("kiosk_hospital"))),
      h("div", { style: "display:flex" },
        visit ? h("button", { class: "btn plain small-btn", "data-testid": "kiosk-leave", onclick: () => { visit = null; go("face"); } }, t("kiosk_done")) : null,
        h("button", { class: "btn plain small-btn", "data-testid": "lang", onclick: () => { toggleLang(); render(); } }, t("lang")))),
    visit ? h("div", { class: "card", "data-testid": "kiosk-patient" }, t("kiosk_hello", visit.patient.name),
      h("span", { class: "small" }, ` ${visit.patient.id_number} · ${t(visit.patient.insurance_type)}`)) : null,
    main,
    h("p", { class: "sandbox-note" }, t("kiosk_note", cfg.kiosk_client_id)));
  try {
    await SCREENS[screen[0]](main, ...screen.slice(1));
  } catch (error) {
    showError(error);
  }
  main.dataset.ready = "1";
}

// The camera, in the sandbox: the face provider's scan of the person standing there, naming this
// kiosk, and for a payment what the screen showed (`consent`).
async function takeFace(consent) {
  const { kiosk_client_id: kiosk } = await config();
  const scan = { id_type: "resident_id", id_number: standing, kiosk };
  if (consent) Object.assign(scan, { bill_id: consent.bill, amount_fen: consent.amount_fen, paid_by: consent.by });
  return (await sandbox("POST", "/face/_sandbox/scan", scan)).assertion;
}

function faceScreen(main) {
  const id = h("input", { type: "text", value: standing, "data-testid": "kiosk-id", autocomplete: "off" });
  const scan = async () => {
    try {
      standing = id.value.trim();
      const faceAssertion = await takeFace(null);
      visit = await hospital("kiosk", "POST", "/ecert/face", { body: { face_assertion: faceAssertion } });
      go("menu");
    } catch (error) {
      showError(error);
    }
  };
  main.append(h("div", { class: "card center" },
    h("div", { style: "color:var(--brand)" }, icon("face", 120)),
    h("h2", {}, t("kiosk_face")), h("div", { class: "small" }, t("kiosk_face_hint")),
    h("label", { class: "field", style: "text-align:left;margin-top:16px" }, h("span", {}, t("kiosk_id")), id),
    h("button", { class: "btn", "data-testid": "kiosk-scan", onclick: scan }, t("kiosk_scan"))));
}

function menuScreen(main) {
  main.append(h("div", { class: "choices" },
    h("button", { class: "btn", "data-testid": "kiosk-bills", onclick: () => go("bills") }, icon("bill", 48), t("kiosk_bills")),
    h("button", { class: "btn", "data-testid": "kiosk-register", onclick: () => go("sessions") }, icon("book", 48), t("kiosk_register"))));
}

async function billsScreen(main) {
  const bills = await hospital("kiosk", "GET", `/kiosk/bills?visit_token=${encodeURIComponent(visit.visit_token)}`);
  main.append(h("div", { class: "card" }, h("h2", {}, t("kiosk_bills")),
    bills.items.length ? bills.items.map((bill) => h("div", { class: "cell", "data-testid": "kiosk-bill" },
      h("div", {}, h("div", { class: "title" }, `${t(bill.order_type)} · ${yuan(bill.total_fen)}`),
        h("div", { class: "small" }, `${bill.bill_no} · ${when(bill.created_at)}`)),
      h("button", { class: "btn small-btn", "data-testid": "kiosk-bill-pay", onclick: () => go("pay", bill.id) }, t("kiosk_pay_title"))))
      : h("div", { class: "empty" }, t("kiosk_no_bills")),
    h("button", { class: "btn plain", onclick: () => go("menu") }, t("kiosk_back"))));
}

async function sessionsScreen(main) {
  const today = await hospital("kiosk", "GET", `/kiosk/sessions?visit_token=${encodeURIComponent(visit.visit_token)}`);
  const register = async (session) => {
    try {
      const held = await hospital("kiosk", "POST", "/kiosk/appointments", {
        body: { visit_token: visit.visit_token, session_id: session.id }, key: idempotencyKey(),
      });
      go("pay", held.bill_id, true);
    } catch (error) {
      showError(error);
    }
  };
  main.append(h("div", { class: "card" }, h("h2", {}, t("kiosk_sessions")),
    today.items.length ? today.items.map((s) => h("div", { class: "cell", "data-testid": "kiosk-session" },
      h("div", {}, h("div", { class: "title" }, `${s.department} · ${s.doctor}`),
        h("div", { class: "small" }, `${t(s.title)} · ${t(s.period)} ${when(s.starts_at).slice(11)}–${when(s.ends_at).slice(11)} · ${t("kiosk_places", s.places_left)}`)),
      h("div", { class: "right" }, h("div", { class: "amount" }, yuan(s.fee_fen)),
        h("button", { class: "btn small-btn", "data-testid": "kiosk-session-pick", onclick: () => register(s) }, t("kiosk_pick")))))
      : h("div", { class: "empty" }, t("kiosk_no_sessions")),
    h("button", { class: "btn plain", onclick: () => go("menu") }, t("kiosk_back"))));
}

// Who pays how, as the consent names it: `patient/counter`, `relative:12/credit`.
const payerLabel = (by) => t(by.replace(/^relative:\d+\//, "relative/"));

const parts = (split) => h("div", { class: "parts" },
  h("div", {}, h("b", {}, yuan(split.fund_fen)), h("span", { class: "small" }, t("fund"))),
  h("div", {}, h("b", {}, yuan(split.personal_account_fen)), h("span", { class: "small" }, t("personal_account"))),
  split.family_account_fen ? h("div", {}, h("b", { "data-part": "family_account" }, yuan(split.family_account_fen)), h("span", { class: "small" }, t("family_part"))) : null,
  h("div", {}, h("b", {}, yuan(split.cash_fen)), h("span", { class: "small" }, t("cash"))));

// The screen before the face: who pays (the patient, or a relative whose link allows kiosks), the
// split and what the face consents to; then the face, taken for exactly that, then pay.
async function payScreen(main, billId, registered = false) {
  const useAccount = h("input", { type: "checkbox", checked: true, "data-testid": "kiosk-use-account" });
  let payer = "patient";
  let cash = "counter";
  const payerTabs = h("div", { class: "tabs" });
  const cashTabs = h("div", { class: "tabs" });
  const shown = h("div", {});
  const button = h("button", { class: "btn", "data-testid": "kiosk-pay" }, t("kiosk_pay_face"));
  let screenShown = null;
  const choice = () => ({ use_personal_account: useAccount.checked, payer, cash });
  const tabs = (holder, options, current, pick) => holder.replaceChildren(...options.map(([v, key, testid]) =>
    h("button", { class: v === current ? "on" : "", "data-testid": testid, onclick: () => { pick(v); presettle().catch(showError); } }, t(key))));
  const presettle = async () => {
    tabs(payerTabs, [["patient", "kiosk_payer_patient", "kiosk-payer-patient"], ["relative", "kiosk_payer_relative", "kiosk-payer-relative"]],
      payer, (v) => { payer = v; });
    tabs(cashTabs, [["counter", "kiosk_counter", "kiosk-cash-counter"], ["credit", "kiosk_credit", "kiosk-cash-credit"]],
      cash, (v) => { cash = v; });
    screenShown = null;
    button.disabled = true; // until this choice's screen is shown
    try {
      screenShown = await hospital("kiosk", "POST", `/kiosk/bills/${billId}/presettle`, { body: { visit_token: visit.visit_token, ...choice() } });
    } catch (error) {
      if (error.code !== "FAMILY_KIOSK_NOT_GRANTED") throw error;
      // Said plainly, where the amount would be: no face is taken for it.
      shown.replaceChildren(h("div", { class: "consent refused", "data-testid": "kiosk-refused", "data-code": error.code }, t("kiosk_relative_not_granted")));
      return;
    }
    const { consent } = screenShown;
    shown.replaceChildren(parts(screenShown.split),
      h("div", { class: "center", style: "margin-top:14px" }, h("div", { class: "small" }, t("kiosk_amount")),
        h("div", { class: "big", "data-testid": "kiosk-amount" }, yuan(screenShown.amount_fen))),
      h("div", { class: "consent", "data-testid": "kiosk-consent", "data-by": consent.by },
        t("kiosk_consent", yuan(consent.amount_fen), payerLabel(consent.by)),
        h("div", { class: "small" }, t("kiosk_consent_by", consent.by))));
    button.disabled = false;
  };
  useAccount.addEventListener("change", () => presettle().catch(showError));
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      const consent = screenShown.consent;
      const faceAssertion = await takeFace(consent);
      const paid = await hospital("kiosk", "POST", `/kiosk/bills/${billId}/pay`, {
        body: { face_assertion: faceAssertion, amount_fen: consent.amount_fen, ...choice() }, key: idempotencyKey(),
      });
      go("paid", paid);
    } catch (error) {
      showError(error);
      presettle().catch(() => null); // the amount may have changed: show it again before another face
    }
  });
  main.append(h("div", { class: "card" }, h("h2", {}, t("kiosk_pay_title")),
    registered ? h("div", { class: "consent", "data-testid": "kiosk-held" }, t("kiosk_held")) : null,
    h("div", { class: "small" }, t("kiosk_payer")), payerTabs, shown,
    h("label", { class: "check" }, useAccount, t("use_account")),
    h("div", { class: "small" }, t("kiosk_cash")), cashTabs, button,
    h("button", { class: "btn plain", onclick: () => go("menu") }, t("kiosk_back"))));
  await presettle();
}

function paidScreen(main, paid) {
  const counter = paid.launch && paid.launch.counter;
  main.append(h("div", { class: "card center", "data-testid": "kiosk-result" },
    h("div", { style: `color:var(${counter ? "--warn" : "--brand"})` }, icon(counter ? "clock" : "ok", 96)),
    h("h2", {}, counter ? t("kiosk_go_counter") : t("kiosk_paid"), " ", state(paid.state)),
    counter ? h("div", { class: "counter", "data-testid": "kiosk-counter" }, counter) : null,
    counter ? h("div", { class: "small" }, `${t("bill_no")} ${paid.launch.bill_no} · ${t("cash")} ${yuan(paid.launch.cash_fen)}`) : null,
    h("div", { class: "parts", style: "margin-top:14px" },
      h("div", {}, h("b", {}, yuan(paid.fund_fen)), h("span", { class: "small" }, t("fund"))),
      h("div", {}, h("b", {}, yuan(paid.personal_account_fen)), h("span", { class: "small" }, t("personal_account"))),
      paid.family_account_fen ? h("div", {}, h("b", { "data-testid": "kiosk-family-part" }, yuan(paid.family_account_fen)), h("span", { class: "small" }, t("family_part"))) : null,
      h("div", {}, h("b", {}, yuan(paid.cash_fen)), h("span", { class: "small" }, `${t("cash")} ${paid.cash_method ? t(`method_${paid.cash_method}`) : ""}`))),
    paid.paid_by === "relative" ? h("div", { class: "small", "data-testid": "kiosk-paid-by" }, t("kiosk_payer_relative")) : null,
    h("button", { class: "btn", "data-testid": "kiosk-menu", onclick: () => go("menu") }, t("kiosk_back"))));
}

const SCREENS = { face: faceScreen, menu: menuScreen, bills: billsScreen, sessions: sessionsScreen, pay: payScreen, paid: paidScreen };

document.body.classList.add("kiosk-screen");
render();
