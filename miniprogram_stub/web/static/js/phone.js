// The patient's mini-program: one page per route (#/home, #/bill/ID, ...), a tab bar on the tab pages.
import { ApiError, api, config, idempotencyKey, login, qrPicture, sandbox, session, subscribe } from "./api.js";
import { t, toggleLang, translate } from "./i18n.js";
import { h, icon, sheet, showError, state, toast, when, yuan } from "./ui.js";

const TABS = [["home", "#/home"], ["bills", "#/bills"], ["book", "#/book"], ["messages", "#/messages"], ["me", "#/me"]];
const PAYMENT_TEMPLATES = ["payment_succeeded", "refund_succeeded"];

// Timers of the page on screen, stopped when another is shown.
let timers = [];
const every = (ms, f) => timers.push(setInterval(f, ms));
let shown = 0; // bumps on each render: a page still waiting on an answer knows it was left

// -- pages ------------------------------------------------------------------------------------

function loginPage(page) {
  let channel = "wechat";
  const user = h("input", { type: "text", value: "alice", "data-testid": "login-user" });
  const button = h("button", { class: "btn", "data-testid": "login" }, t("login_wechat"));
  const choose = (value) => {
    channel = value;
    document.body.classList.toggle("alipay", value === "alipay");
    button.textContent = t(value === "wechat" ? "login_wechat" : "login_alipay");
    for (const b of tabs.children) b.classList.toggle("on", b.dataset.channel === value);
  };
  const tabs = h("div", { class: "tabs" },
    ["wechat", "alipay"].map((value) => h("button", {
      "data-channel": value, "data-testid": `channel-${value}`, onclick: () => choose(value),
    }, t(`channel_${value}`))));
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      await login(channel, user.value.trim() || "alice");
      location.hash = "#/home";
    } catch (error) {
      showError(error);
    } finally {
      button.disabled = false;
    }
  });
  page.append(
    h("div", { class: "card hero center" }, h("div", {}, icon("hospital", 44)), h("h3", {}, t("app")),
      h("div", { class: "small" }, t("login_intro"))),
    h("div", { class: "card" }, tabs, h("label", { class: "field" }, h("span", {}, t("login_as")), user), button));
  choose("wechat");
}

async function ecertOrNull() {
  try {
    return await api("GET", "/ecert");
  } catch (error) {
    if (error.status === 404) return null;
    throw error;
  }
}

async function homePage(page) {
  const ecert = await ecertOrNull();
  const card = h("div", { class: "card hero", "data-testid": "ecert-card" },
    h("div", { class: "small" }, t("home_ecert")),
    ecert
      ? [h("h3", {}, ecert.identity.name, " ", h("span", { class: "small" }, ecert.identity.id_number)),
        h("a", { class: "btn plain", href: "#/ecert/qr", style: "display:block;line-height:44px;text-align:center;text-decoration:none;background:#fff" }, t("home_show_qr"))]
      : [h("h3", {}, t("me_unbound")),
        h("a", { class: "btn plain", href: "#/ecert/bind", "data-testid": "go-bind", style: "display:block;line-height:44px;text-align:center;text-decoration:none;background:#fff" }, t("home_bind"))]);
  const services = [
    ["qr", "svc_qr", "#/ecert/qr"], ["bill", "svc_bills", "#/bills"], ["book", "svc_book", "#/book"],
    ["clock", "svc_appointments", "#/appointments"], ["family", "svc_family", "#/family"], ["credit", "svc_credit", "#/credit"],
    ["messages", "svc_messages", "#/messages"], ["me", "svc_me", "#/me"],
  ];
  page.append(card, h("div", { class: "card" }, h("div", { class: "grid" },
    services.map(([name, key, href]) => h("a", { href }, icon(name, 26), t(key))))));
}

// A well-formed resident ID of Hangzhou's Shangcheng district (GB 11643 check character).
function testResidentId() {
  const birth = `19${String(50 + Math.floor(Math.random() * 50))}0${1 + Math.floor(Math.random() * 9)}1${Math.floor(Math.random() * 9)}`;
  const number = `330102${birth}${String(Math.floor(Math.random() * 1000)).padStart(3, "0")}`;
  const weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
  const sum = [...number].reduce((acc, c, i) => acc + Number(c) * weights[i], 0);
  return number + "10X98765432"[sum % 11];
}

function bindPage(page) {
  const name = h("input", { type: "text", value: "测试患者", "data-testid": "bind-name" });
  const id = h("input", { type: "text", value: testResidentId(), "data-testid": "bind-id" });
  const agree = h("input", { type: "checkbox", "data-testid": "bind-agree" });
  const submit = h("button", { class: "btn", "data-testid": "bind-submit" }, t("bind_submit"));
  submit.addEventListener("click", async () => {
    if (!agree.checked) return toast(t("bind_need_agree"));
    submit.disabled = true;
    try {
      await api("POST", "/ecert/bind", { body: { name: name.value.trim(), id_type: "resident_id", id_number: id.value.trim() } });
      location.hash = "#/ecert/qr";
    } catch (error) {
      showError(error);
    } finally {
      submit.disabled = false;
    }
  });
  page.append(h("div", { class: "card" },
    h("label", { class: "field" }, h("span", {}, t("bind_name")), name),
    h("label", { class: "field" }, h("span", {}, t("bind_id_type")),
      h("select", {}, h("option", { value: "resident_id" }, t("bind_resident_id")))),
    h("label", { class: "field" }, h("span", {}, t("bind_id")), id),
    h("button", { class: "btn plain small-btn", onclick: () => { id.value = testResidentId(); } }, t("bind_generate")),
    h("label", { class: "check" }, agree, t("bind_agree")),
    submit),
  h("div", { class: "sandbox-note" }, t("bind_note")));
}

async function qrPage(page) {
  const ecert = await ecertOrNull();
  if (!ecert) {
    location.hash = "#/ecert/bind";
    return;
  }
  const picture = h("img", { class: "qr", alt: "QR", "data-testid": "qr-image" });
  const countdown = h("div", { class: "countdown center", "data-testid": "qr-countdown" });
  const payload = h("div", { class: "payload", "data-testid": "qr-payload" });
  let left = 0;
  let expires = 0;
  const me = shown;
  const fetchCode = async () => {
    left = Infinity; // no second fetch while this one is on its way
    try {
      const code = await api("GET", "/ecert/qrcode?format=json");
      if (me !== shown) return;
      picture.src = qrPicture(code.payload);
      picture.classList.remove("stale");
      payload.textContent = code.payload;
      payload.dataset.expiresAt = code.expires_at;
      left = code.refresh_in;
      expires = Date.parse(code.expires_at);
      countdown.textContent = t("qr_refresh_in", left);
    } catch (error) {
      left = 5;
      showError(error);
    }
  };
  every(1000, () => {
    left -= 1;
    if (Date.now() > expires) picture.classList.add("stale");
    if (left <= 0) fetchCode();
    else if (Number.isFinite(left)) countdown.textContent = t("qr_refresh_in", left);
  });
  const copy = h("button", { class: "btn plain small-btn", onclick: async () => {
    try { await navigator.clipboard.writeText(payload.textContent); toast(t("qr_copied")); } catch { /* no clipboard: select by hand */ }
  } }, t("qr_copy"));
  page.append(
    h("div", { class: "card center" },
      h("div", { class: "title" }, ecert.identity.name, " · ", ecert.identity.id_number),
      h("div", { class: "small" }, t(ecert.identity.insurance_type), " · ", ecert.identity.region_code),
      picture, countdown, h("div", { class: "small" }, t("qr_hint")),
      h("button", { class: "btn plain", "data-testid": "qr-refresh", onclick: fetchCode }, t("qr_refresh"))),
    h("div", { class: "sandbox-note" }, h("div", {}, t("qr_payload"), " ", copy), payload));
  await fetchCode();
}

async function billsPage(page) {
  const bills = await api("GET", "/bills?limit=50");
  if (!bills.items.length) return page.append(h("div", { class: "card empty" }, t("bills_empty")));
  page.append(h("div", { class: "card" }, bills.items.map((bill) =>
    h("a", { class: "cell", href: `#/bill/${bill.id}`, "data-testid": "bill-row" },
      h("div", {}, h("div", { class: "title" }, bill.institution),
        h("div", { class: "small" }, t(bill.order_type), " · ", when(bill.created_at))),
      h("div", { class: "right" }, h("div", { class: "amount" }, yuan(bill.total_fen)), state(bill.state))))));
}

function splitTable(bill, split) {
  const names = Object.fromEntries(bill.items.map((item) => [item.code, item.name]));
  return h("table", { class: "split", "data-testid": "split-items" },
    h("tr", {}, h("th", {}, t("item")), h("th", {}, t("amount")), h("th", {}, t("fund")),
      h("th", {}, t("personal_account")), h("th", {}, t("cash"))),
    split.items.map((item) => [
      h("tr", {}, h("td", {}, names[item.code] || item.code, h("span", { class: "small" }, ` ${t("category", item.category)}`)),
        h("td", {}, yuan(item.amount_fen)), h("td", {}, yuan(item.fund_fen)),
        h("td", {}, yuan(item.personal_account_fen)), h("td", {}, yuan(item.cash_fen))),
      h("tr", { class: "rule" }, h("td", { colspan: 5 }, `${t("rule")}: ${item.rule}`)),
    ]));
}

const parts = (fund, account, cash, family = 0) => h("div", { class: "parts", "data-testid": "split-parts" },
  h("div", {}, h("b", { "data-part": "fund" }, yuan(fund)), h("span", { class: "small" }, t("fund"))),
  h("div", {}, h("b", { "data-part": "personal_account" }, yuan(account)), h("span", { class: "small" }, t("personal_account"))),
  family ? h("div", {}, h("b", { "data-part": "family_account" }, yuan(family)), h("span", { class: "small" }, t("family_part"))) : null,
  h("div", {}, h("b", { "data-part": "cash" }, yuan(cash)), h("span", { class: "small" }, t("cash"))));

// wx.requestSubscribeMessage's dialog: the payment's templates, allowed or not, before paying.
async function askToSubscribe(institution) {
  const { channel } = session.get();
  const all = await api("GET", `/notification-templates?channel=${channel}`);
  const wanted = all.filter((tpl) => PAYMENT_TEMPLATES.includes(tpl.template));
  const boxes = wanted.map((tpl) => [tpl, h("input", { type: "checkbox", checked: true })]);
  const body = h("div", {}, h("div", { class: "small" }, t("subscribe_body")),
    boxes.map(([tpl, box]) => h("label", { class: "check" }, box, tpl.title)),
    h("label", { class: "check small" }, h("input", { type: "checkbox" }), t("subscribe_keep")));
  const allowed = await sheet(t("subscribe_title", institution), body,
    [[t("deny"), false, "plain"], [t("allow"), true, "subscribe-allow"]]);
  const decisions = Object.fromEntries(boxes.map(([tpl, box]) =>
    [tpl.template_id, allowed && box.checked ? "accept" : "reject"]));
  if (Object.keys(decisions).length) await subscribe(decisions);
}

async function billPage(page, id) {
  const bill = await api("GET", `/bills/${id}`);
  const head = h("div", { class: "card" },
    h("div", { class: "row" }, h("div", { class: "title" }, bill.institution.name), h("div", { class: "right" }, state(bill.state))),
    h("div", { class: "small" }, `${t("bill_no")} ${bill.bill_no} · ${t(bill.order_type)} · ${when(bill.created_at)}`),
    h("div", { class: "small" }, `${t("terminal_patient")} ${bill.patient.name}`),
    h("div", { class: "big", "data-testid": "bill-total" }, yuan(bill.total_fen)));
  page.append(head);
  if (bill.state === "CREATED") return payControls(page, bill);
  if (bill.state === "PAYING") {
    const cashier = sessionStorage.getItem(`medpay.cashier.${bill.id}`);
    page.append(h("div", { class: "card center", "data-testid": "paying" }, t("paying"),
      cashier ? h("a", { class: "btn plain", href: cashier, style: "line-height:44px;text-decoration:none" }, t("pay_again")) : null));
    const me = shown;
    every(1000, async () => {
      const now = await api("GET", `/bills/${id}`);
      if (me === shown && now.state !== "PAYING") render();
    });
  }
  if (bill.fund_fen !== null) {
    page.append(h("div", { class: "card" }, h("h3", {}, t("bill_split")),
      parts(bill.fund_fen, bill.personal_account_fen, bill.cash_fen, bill.family_account_fen),
      bill.paid_at ? h("div", { class: "small", "data-testid": "paid" }, `${t("paid")} · ${t("paid_at")} ${when(bill.paid_at)} · ${bill.cash_method || ""}`) : null));
  }
  page.append(h("div", { class: "card" }, h("h3", {}, t("bill_items")), bill.items.map((item) =>
    h("div", { class: "cell" }, h("div", {}, item.name, h("div", { class: "small" }, `${item.code} · ${t("category", item.category)} · ×${item.quantity}`)),
      h("div", { class: "amount" }, yuan(item.amount_fen))))));
}

// A relative's bill paid by a holder whose link grants `pay`: the family account toggle is offered.
async function familyPayLink(bill) {
  const [mine, family] = await Promise.all([ecertOrNull(), api("GET", "/family")]);
  if (mine && mine.identity.id_number === bill.patient.id_number) return null;
  return family.relatives.find((link) => link.state === "ACTIVE" && link.grants.pay
    && link.other.id_number === bill.patient.id_number && link.other.name === bill.patient.name) || null;
}

async function payControls(page, bill) {
  const { channel } = session.get();
  const useAccount = h("input", { type: "checkbox", checked: true, "data-testid": "use-account" });
  const aidLink = await familyPayLink(bill);
  const familyAccount = h("input", { type: "checkbox", checked: Boolean(aidLink), "data-testid": "family-account" });
  const methods = [[channel, t(channel === "wechat" ? "pay_wechat" : "pay_alipay")], ["credit", t("pay_credit")]];
  const method = h("select", { "data-testid": "cash-method" }, methods.map(([v, label]) => h("option", { value: v }, label)));
  const splitCard = h("div", { class: "card" });
  const button = h("button", { class: "btn", "data-testid": "pay", disabled: true }); // until the split is shown
  let split = null;
  const choice = () => (aidLink && familyAccount.checked
    ? { use_personal_account: useAccount.checked, family_account: true } : { use_personal_account: useAccount.checked });
  const presettle = async () => {
    split = await api("POST", `/bills/${bill.id}/presettle`, { body: choice() });
    splitCard.replaceChildren(h("h3", {}, t("bill_split")),
      parts(split.fund_fen, split.personal_account_fen, split.cash_fen, split.family_account_fen),
      h("div", { class: "small" }, t("account_balance", yuan(split.personal_account_balance_fen))),
      ...(split.family_account_balance_fen === null ? []
        : [h("div", { class: "small", "data-testid": "family-balance" }, t("family_account_balance", yuan(split.family_account_balance_fen)))]),
      splitTable(bill, split));
    button.textContent = t("pay_button", yuan(split.cash_fen));
    button.disabled = false;
  };
  useAccount.addEventListener("change", () => presettle().catch(showError));
  familyAccount.addEventListener("change", () => presettle().catch(showError));
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      if (split.cash_fen > 0) await askToSubscribe(bill.institution.name);
      const body = choice();
      if (split.cash_fen > 0) body.cash_method = method.value;
      // One key per bill and choice: a retry after a lost answer is the same payment.
      const slot = `medpay.pay.${bill.id}.${JSON.stringify(body)}`;
      const key = sessionStorage.getItem(slot) || idempotencyKey();
      sessionStorage.setItem(slot, key);
      const paid = await api("POST", `/bills/${bill.id}/pay`, { body, key });
      if (paid.state === "PAYING" && ["wechat", "alipay"].includes(paid.cash_method)) {
        const back = `/web/index.html#/bill/${bill.id}`;
        const query = new URLSearchParams({ channel: paid.cash_method, out_trade_no: paid.out_trade_no, payee: bill.institution.name, back });
        const cashier = `/web/cashier.html?${query}`;
        sessionStorage.setItem(`medpay.cashier.${bill.id}`, cashier);
        location.href = cashier; // instead of wx.requestMedicalInsurancePay
        return;
      }
      render();
    } catch (error) {
      showError(error);
      button.disabled = false;
    }
  });
  page.append(splitCard, h("div", { class: "card" },
    h("label", { class: "check" }, useAccount, t("use_account")),
    aidLink ? h("label", { class: "check" }, familyAccount, t("family_account")) : null,
    h("label", { class: "field" }, h("span", {}, t("pay_by")), method), button));
  await presettle();
}

function shanghaiDate(offsetDays) {
  const day = new Date(Date.now() + offsetDays * 86400000);
  return new Intl.DateTimeFormat("en-CA", { timeZone: "Asia/Shanghai" }).format(day);
}

async function hospitalsPage(page) {
  const hospitals = await api("GET", "/hospitals?limit=50");
  page.append(h("div", { class: "card" }, h("h3", {}, t("book_hospitals")), hospitals.items.map((hospital) =>
    h("a", { class: "cell", href: `#/book/hospital/${hospital.id}`, "data-testid": "hospital-row" },
      h("div", {}, h("div", { class: "title" }, hospital.name), h("div", { class: "small" }, `${hospital.code} · ${hospital.level}级`)), "›"))));
}

async function departmentsPage(page, id) {
  const departments = await api("GET", `/hospitals/${id}/departments`);
  if (!departments.items.length) return page.append(h("div", { class: "card empty" }, t("book_no_doctors")));
  page.append(h("div", { class: "card" }, h("h3", {}, t("book_departments")), departments.items.map((dept) =>
    h("a", { class: "cell", href: `#/book/department/${dept.id}`, "data-testid": "department-row" },
      h("div", {}, h("div", { class: "title" }, dept.name), h("div", { class: "small" }, dept.intro)), "›"))));
}

async function doctorsPage(page, id) {
  const days = [0, 1, 2, 3, 4, 5, 6, 7].map(shanghaiDate);
  let chosen = sessionStorage.getItem("medpay.book.date");
  if (!days.includes(chosen)) chosen = days[1];
  const list = h("div", {});
  const tabs = h("div", { class: "tabs" });
  const show = async (day) => {
    chosen = day;
    sessionStorage.setItem("medpay.book.date", day);
    tabs.replaceChildren(...days.map((d) => h("button", { class: d === day ? "on" : "", onclick: () => show(d).catch(showError) }, d.slice(5))));
    const doctors = await api("GET", `/departments/${id}/doctors?date=${day}`);
    const withSessions = doctors.items.filter((doctor) => doctor.sessions.length);
    list.replaceChildren(...(withSessions.length ? withSessions.map((doctor) => h("div", { class: "card", "data-testid": "doctor" },
      h("div", { class: "row" }, h("div", { class: "title" }, doctor.name, " ", h("span", { class: "small" }, t(doctor.title))),
        h("div", { class: "right amount" }, yuan(doctor.fee_fen))),
      h("div", { class: "small" }, doctor.specialty),
      h("div", { class: "row", style: "margin-top:8px" }, doctor.sessions.map((s) => sessionButton(doctor, s)))))
      : [h("div", { class: "card empty" }, t("book_no_doctors"))]));
  };
  page.append(tabs, list);
  await show(chosen);
}

// A full session that has not begun offers its waitlist (候补) instead of a place; the API
// answers the rest (the line opens with booking, one appointment per doctor and day).
const waitable = (s) => !s.bookable && s.state === "OPEN" && s.places_left === 0 && Date.parse(s.starts_at) > Date.now();

function sessionButton(doctor, s) {
  if (waitable(s)) {
    return h("button", { class: "session-btn waitlist", "data-testid": "session-waitlist", onclick: () => joinWaitlist(doctor, s) },
      `${t(s.period)} ${t("book_full")} · ${t("waitlist_join")}`);
  }
  return h("button", { class: "session-btn", disabled: !s.bookable, "data-testid": "session", onclick: () => book(doctor, s) },
    `${t(s.period)} ${s.bookable ? t("book_places", s.places_left) : t("book_full")}`);
}

// The waitlist's entries name only their session: the phone keeps what it showed when joining.
const WAITED = "medpay.waitlist.sessions";
const waited = () => { try { return JSON.parse(localStorage.getItem(WAITED)) || {}; } catch { return {}; } };

async function joinWaitlist(doctor, s) {
  const body = h("div", { class: "small", style: "margin-bottom:12px" },
    t("waitlist_confirm_body", s.date, t(s.period), doctor.name, yuan(s.fee_fen)));
  if (!(await sheet(t("waitlist_join"), body, [[t("deny"), false, "plain"], [t("waitlist_join"), true, "waitlist-confirm"]]))) return;
  try {
    const entry = await api("POST", `/sessions/${s.id}/waitlist`);
    localStorage.setItem(WAITED, JSON.stringify({ ...waited(), [s.id]: { doctor: doctor.name, date: s.date, period: s.period, fee_fen: s.fee_fen } }));
    toast(entry.position ? t("waitlist_joined", entry.position) : t(entry.state));
    location.hash = "#/appointments";
  } catch (error) {
    showError(error);
  }
}

async function book(doctor, bookable) {
  const body = h("div", { class: "small", style: "margin-bottom:12px" },
    t("book_confirm_body", bookable.date, t(bookable.period), doctor.name, yuan(bookable.fee_fen)));
  if (!(await sheet(t("book_confirm"), body, [[t("deny"), false, "plain"], [t("book_confirm"), true, "book-confirm"]]))) return;
  try {
    const held = await api("POST", "/appointments", { body: { session_id: bookable.id }, key: idempotencyKey() });
    toast(t("book_held", when(held.expires_at)));
    location.hash = `#/bill/${held.bill_id}`;
  } catch (error) {
    showError(error);
  }
}

// My appointments, then my waitlist entries: a place offered from the line is a held appointment
// (its `waitlist_id` set) paid as any hold, by its own deadline.
async function appointmentsPage(page) {
  const [mine, line] = await Promise.all([api("GET", "/appointments?limit=50"), api("GET", "/waitlist")]);
  if (!mine.items.length && !line.length) return page.append(h("div", { class: "card empty" }, t("appointments_empty")));
  for (const a of mine.items) page.append(appointmentCard(a));
  if (line.length) {
    const byId = Object.fromEntries(mine.items.map((a) => [a.id, a]));
    page.append(h("div", { class: "card", "data-testid": "waitlist" }, h("h3", {}, t("waitlist_title")),
      line.map((entry) => waitlistRow(entry, byId[entry.appointment_id]))));
  }
}

function appointmentCard(a) {
  const cancel = async () => {
    if (!(await sheet(t("cancel"), h("div", { class: "small", style: "margin-bottom:12px" }, t("cancel_confirm")),
      [[t("back"), false, "plain"], [t("cancel"), true, "danger"]]))) return;
    try {
      await api("POST", `/appointments/${a.id}/cancel`, { key: idempotencyKey() });
      render();
    } catch (error) {
      showError(error);
    }
  };
  return h("div", { class: "card", "data-testid": "appointment", "data-appointment": a.id },
    h("div", { class: "row" }, h("div", { class: "title" }, `${a.department} · ${a.doctor}`), h("div", { class: "right" }, state(a.state))),
    h("div", { class: "small" }, `${a.hospital} · ${a.date} ${t(a.period)} · ${when(a.starts_at)}`),
    a.state === "HELD" && a.expires_at
      ? h("div", { class: "small warn", "data-testid": a.waitlist_id ? "offered" : "held" },
        t(a.waitlist_id ? "waitlist_offered" : "book_held", when(a.expires_at)))
      : null,
    h("div", { class: "row" }, h("div", { class: "amount" }, yuan(a.fee_fen)),
      a.queue_no ? h("div", { class: "right", "data-testid": "queue-no" }, t("queue_no", a.queue_no)) : null),
    h("div", { class: "row", style: "margin-top:8px" },
      a.state === "HELD" ? h("a", { class: "btn small-btn", href: `#/bill/${a.bill_id}`, "data-testid": "pay-fee", style: "line-height:30px;text-align:center;text-decoration:none" }, t("pay_fee")) : null,
      ["HELD", "CONFIRMED"].includes(a.state) ? h("button", { class: "btn danger small-btn", "data-testid": "cancel", onclick: cancel }, t("cancel")) : null));
}

function waitlistRow(entry, offered) {
  const known = waited()[entry.session_id];
  const what = offered ? `${offered.department} · ${offered.doctor} · ${offered.date} ${t(offered.period)}`
    : known ? `${known.doctor} · ${known.date} ${t(known.period)} · ${yuan(known.fee_fen)}` : t("waitlist_session", entry.session_id);
  const leave = async () => {
    if (!(await sheet(t("waitlist_leave"), h("div", { class: "small", style: "margin-bottom:12px" }, t("waitlist_leave_confirm")),
      [[t("back"), false, "plain"], [t("waitlist_leave"), true, "danger leave-confirm"]]))) return;
    try {
      await api("DELETE", `/waitlist/${entry.id}`);
      render();
    } catch (error) {
      showError(error);
    }
  };
  // An offer is paid on its appointment's card, above.
  const note = entry.state === "WAITING" && entry.position ? t("waitlist_position", entry.position) : t(`waitlist_${entry.state}`);
  return h("div", { class: "cell", "data-testid": "waitlist-entry", "data-state": entry.state },
    h("div", {}, h("div", { class: "title" }, what),
      h("div", { class: "small", "data-testid": "waitlist-note" }, note, ` · ${when(entry.created_at)}`)),
    h("div", { class: "right" }, state(entry.state),
      entry.state === "WAITING" ? h("button", { class: "btn plain small-btn", style: "margin-left:6px", "data-testid": "waitlist-leave", onclick: leave }, t("waitlist_leave")) : null));
}

async function messagesPage(page) {
  const inbox = await api("GET", "/notifications?limit=50");
  if (!inbox.items.length) return page.append(h("div", { class: "card empty" }, t("messages_empty")));
  const readAll = h("button", { class: "btn plain small-btn", onclick: async () => {
    await api("POST", "/notifications/read-all", { body: {} }).catch(showError);
    render();
  } }, t("read_all"));
  page.append(h("div", { class: "right", style: "margin-bottom:8px" }, readAll), h("div", { class: "card" }, inbox.items.map((m) =>
    h("div", { class: "cell", "data-testid": "message", onclick: async () => {
      if (!m.read_at) { await api("POST", `/notifications/${m.id}/read`, { body: {} }).catch(showError); render(); }
    } },
      h("div", {}, h("div", { class: `title ${m.read_at ? "" : "unread"}` }, m.title),
        h("div", { class: "small" }, m.body), h("div", { class: "small" }, `${when(m.created_at)} · ${m.delivery}`))))));
}

async function mePage(page) {
  const me = await api("GET", "/me");
  const ecert = await ecertOrNull();
  const { user } = session.get();
  const logout = async () => {
    await api("POST", "/auth/logout", { body: { refresh_token: session.get().refresh_token } }).catch(() => null);
    session.clear();
    location.hash = "#/login";
  };
  page.append(
    h("div", { class: "card hero" }, h("h3", {}, user), h("div", { class: "small" }, `${t(`channel_${me.channel}`)} · ${me.openid}`)),
    h("div", { class: "card" },
      h("a", { class: "cell", href: ecert ? "#/ecert/qr" : "#/ecert/bind" }, t("me_ecert"),
        h("span", { class: "small" }, ecert ? `${ecert.identity.name} ${ecert.identity.id_number}` : t("me_unbound"))),
      h("a", { class: "cell", href: "#/appointments" }, t("me_appointments"), "›"),
      h("a", { class: "cell", href: "#/family" }, t("me_family"), "›"),
      h("a", { class: "cell", href: "#/credit" }, t("me_credit"), "›"),
      h("a", { class: "cell", href: "#/messages" }, t("tab_messages"), "›"),
      h("a", { class: "cell", href: "/web/terminal.html", target: "_blank" }, t("me_terminal"), "›")),
    h("button", { class: "btn danger", onclick: logout }, t("me_logout")));
}

// -- family: relatives in one's care and those who look after one ---------------------------

const RELATIONS = ["PARENT", "CHILD", "SPOUSE"];
const relationSelect = (testid, value) => h("select", { "data-testid": testid },
  RELATIONS.map((r) => h("option", { value: r, selected: r === value ? true : null }, t(r))));
const svgPicture = (svg) => `data:image/svg+xml;charset=utf-8,${encodeURIComponent(svg)}`;

async function familyPage(page) {
  const family = await api("GET", "/family");
  const section = (title, links) => h("div", { class: "card" }, h("h3", {}, title),
    links.length ? links.map(linkCard) : h("div", { class: "small" }, t("family_empty")));
  page.append(
    section(t("family_relatives"), family.relatives),
    section(t("family_holders"), family.holders),
    h("a", { class: "btn", href: "#/family/add", "data-testid": "family-add", style: "line-height:44px;text-align:center;text-decoration:none" }, t("family_add")));
}

// One link, from the side the patient is on: the grants that side gives, its QR code, ending it.
function linkCard(link) {
  const live = link.state === "ACTIVE";
  const g = link.grants;
  const box = (name, checked) => h("input", { type: "checkbox", checked, "data-grant": name, disabled: !live });
  const boxes = {};
  const rows = [];
  if (link.side === "relative") {
    boxes.manage = box("manage", g.manage);
    rows.push(h("label", { class: "check" }, boxes.manage, t("grant_manage")));
  } else {
    rows.push(h("div", { class: "small", "data-testid": "manage-given" }, t(g.manage ? "family_manage_given" : "family_manage_not_given")));
    boxes.pay = box("pay", g.pay);
    boxes.kiosk = box("kiosk", g.kiosk);
    rows.push(h("label", { class: "check" }, boxes.pay, t("grant_pay")));
    boxes.credit = h("input", { type: "text", inputmode: "decimal", "data-grant": "credit_cap", disabled: !live,
      value: g.credit_cap_fen ? String(g.credit_cap_fen / 100) : "", placeholder: "—", style: "width:90px;padding:4px" });
    rows.push(h("label", { class: "check" }, t("grant_credit"), boxes.credit));
    rows.push(h("label", { class: "check" }, boxes.kiosk, t("grant_kiosk")));
  }
  const save = async () => {
    const body = link.side === "relative" ? { manage: boxes.manage.checked } : {
      pay: boxes.pay.checked, kiosk: boxes.kiosk.checked,
      credit_cap_fen: boxes.credit.value.trim() ? Math.round(Number(boxes.credit.value) * 100) : null,
    };
    try {
      await api("PUT", `/family/links/${link.id}/grants`, { body });
      toast(t("family_saved"));
      render();
    } catch (error) {
      showError(error);
    }
  };
  const end = async () => {
    if (!(await sheet(t("family_end"), h("div", { class: "small", style: "margin-bottom:12px" }, t("family_end_confirm")),
      [[t("back"), false, "plain"], [t("family_end"), true, "danger end-confirm"]]))) return;
    await api("POST", `/family/links/${link.id}/end`, { body: {} }).catch(showError);
    render();
  };
  return h("div", { class: "link", "data-testid": "family-link", "data-link": link.id, "data-side": link.side },
    h("div", { class: "row" },
      h("div", {}, h("div", { class: "title" }, `${t(link.relation)} · ${link.other.name}`),
        h("div", { class: "small" }, `${link.other.id_number} · ${t(link.other.insurance_type)} · ${t(link.linked_by)}`)),
      h("div", { class: "right" }, h("span", { class: `state ${live ? "CONFIRMED" : "CANCELLED"}`, "data-state": link.state }, t(`link_${link.state}`)))),
    live ? [h("div", { class: "grants" }, rows),
      h("div", { class: "row", style: "margin-top:6px" },
        h("button", { class: "btn small-btn", "data-testid": "grants-save", onclick: save }, t("family_save")),
        link.side === "holder" && g.manage
          ? h("a", { class: "btn plain small-btn", href: `#/family/${link.id}/qr`, "data-testid": "relative-qr", style: "line-height:28px;text-align:center;text-decoration:none" }, t("family_qr"))
          : null,
        h("button", { class: "btn danger small-btn", "data-testid": "link-end", onclick: end }, t("family_end")))]
      : null);
}

function familyAddPage(page) {
  const body = h("div", {});
  const tabs = h("div", { class: "tabs" });
  const forms = { invite: inviteForm, accept: acceptForm, proxy: proxyForm, newborn: newbornForm };
  const show = (name) => {
    sessionStorage.setItem("medpay.family.tab", name);
    tabs.replaceChildren(...Object.keys(forms).map((k) => h("button", {
      class: k === name ? "on" : "", "data-testid": `family-tab-${k}`, onclick: () => show(k),
    }, t(`family_tab_${k}`))));
    body.replaceChildren(forms[name]());
  };
  page.append(tabs, body);
  show(sessionStorage.getItem("medpay.family.tab") in forms ? sessionStorage.getItem("medpay.family.tab") : "invite");
}

function inviteForm() {
  const relation = relationSelect("invite-relation", "PARENT");
  const result = h("div", { "data-testid": "invitation" });
  const make = async () => {
    try {
      const invitation = await api("POST", "/family/invitations", { body: { relation: relation.value } });
      result.replaceChildren(h("div", { class: "center" },
        h("img", { class: "qr", alt: "QR", src: svgPicture(invitation.qr_svg), "data-testid": "invitation-qr" }),
        h("div", { class: "small" }, t("family_code")),
        h("div", { class: "code", "data-testid": "invitation-code" }, invitation.code),
        h("div", { class: "small" }, t("family_invite_hint", when(invitation.expires_at)))));
    } catch (error) {
      showError(error);
    }
  };
  return h("div", { class: "card" },
    h("label", { class: "field" }, h("span", {}, t("family_relation_invited")), relation),
    h("button", { class: "btn", "data-testid": "invite", onclick: make }, t("family_invite")), result);
}

function acceptForm() {
  const code = h("input", { type: "text", "data-testid": "accept-code", autocomplete: "off" });
  const relation = relationSelect("accept-relation", "CHILD");
  const accept = async () => {
    try {
      await api("POST", "/family/invitations/accept", { body: { code: code.value.trim(), relation: relation.value } });
      toast(t("family_accepted"));
      location.hash = "#/family";
    } catch (error) {
      showError(error);
    }
  };
  return h("div", { class: "card" },
    h("label", { class: "field" }, h("span", {}, t("family_code")), code),
    h("label", { class: "field" }, h("span", {}, t("family_relation_inviter")), relation),
    h("button", { class: "btn", "data-testid": "accept", onclick: accept }, t("family_accept")));
}

// An elder without a phone (their face, scanned on this phone) or a young child (no face).
function proxyForm() {
  const relation = relationSelect("proxy-relation", "PARENT");
  const name = h("input", { type: "text", value: "测试老人", "data-testid": "proxy-name" });
  const id = h("input", { type: "text", value: testResidentId(), "data-testid": "proxy-id" });
  const face = h("input", { type: "checkbox", checked: true, "data-testid": "proxy-face" });
  const add = async () => {
    try {
      const body = { relation: relation.value, name: name.value.trim(), id_type: "resident_id", id_number: id.value.trim() };
      if (face.checked) {
        // The phone's camera, in the sandbox: the face provider signs an assertion of this person.
        body.face_assertion = (await sandbox("POST", "/face/_sandbox/scan", { id_type: "resident_id", id_number: body.id_number })).assertion;
      }
      await api("POST", "/family/relatives", { body });
      toast(t("family_added"));
      location.hash = "#/family";
    } catch (error) {
      showError(error);
    }
  };
  return h("div", {}, h("div", { class: "card" },
    h("label", { class: "field" }, h("span", {}, t("family_relation_invited")), relation),
    h("label", { class: "field" }, h("span", {}, t("bind_name")), name),
    h("label", { class: "field" }, h("span", {}, t("bind_id")), id),
    h("button", { class: "btn plain small-btn", onclick: () => { id.value = testResidentId(); } }, t("bind_generate")),
    h("label", { class: "check" }, face, t("family_proxy_face")),
    h("div", { class: "small" }, t("family_proxy_no_face")),
    h("button", { class: "btn", "data-testid": "proxy-add", onclick: add }, t("family_proxy_submit"))),
  h("div", { class: "sandbox-note" }, t("family_proxy_note")));
}

function newbornForm() {
  const cert = h("input", { type: "text", value: `T${String(Math.floor(Math.random() * 1e9)).padStart(9, "0")}`, "data-testid": "newborn-cert" });
  const name = h("input", { type: "text", value: "测试宝宝", "data-testid": "newborn-name" });
  const born = h("input", { type: "date", value: shanghaiDate(-3), "data-testid": "newborn-birth" });
  const add = async () => {
    try {
      await api("POST", "/family/newborns", { body: { birth_certificate_no: cert.value.trim(), name: name.value.trim(), birth_date: born.value } });
      toast(t("family_added"));
      location.hash = "#/family";
    } catch (error) {
      showError(error);
    }
  };
  return h("div", { class: "card" },
    h("label", { class: "field" }, h("span", {}, t("family_newborn_cert")), cert),
    h("label", { class: "field" }, h("span", {}, t("bind_name")), name),
    h("label", { class: "field" }, h("span", {}, t("family_newborn_birth")), born),
    h("button", { class: "btn", "data-testid": "newborn-add", onclick: add }, t("family_newborn_submit")));
}

// The relative's code on the holder's phone: the elder or the baby is identified by it.
async function relativeQrPage(page, id) {
  const picture = h("img", { class: "qr", alt: "QR", "data-testid": "qr-image" });
  const countdown = h("div", { class: "countdown center", "data-testid": "qr-countdown" });
  const payload = h("div", { class: "payload", "data-testid": "qr-payload" });
  let left = Infinity;
  const me = shown;
  const fetchCode = async () => {
    left = Infinity;
    try {
      const code = await api("GET", `/family/links/${id}/qrcode?format=json`);
      if (me !== shown) return;
      picture.src = qrPicture(code.payload);
      payload.textContent = code.payload;
      left = code.refresh_in;
      countdown.textContent = t("qr_refresh_in", left);
    } catch (error) {
      left = 5;
      showError(error);
    }
  };
  every(1000, () => {
    left -= 1;
    if (left <= 0) fetchCode();
    else if (Number.isFinite(left)) countdown.textContent = t("qr_refresh_in", left);
  });
  page.append(h("div", { class: "card center" }, picture, countdown, h("div", { class: "small" }, t("qr_hint"))),
    h("div", { class: "sandbox-note" }, h("div", {}, t("qr_payload")), payload));
  await fetchCode();
}

// -- credit: treat first, pay later ---------------------------------------------------------

async function creditPage(page) {
  const credit = await api("GET", "/credit");
  const line = credit.lines.find((l) => ["ACTIVE", "FROZEN", "APPLIED"].includes(l.status));
  if (line && line.status === "APPLIED") {
    page.append(h("div", { class: "card center", "data-testid": "credit-applied" }, t("credit_applied")));
    const me = shown;
    every(1000, async () => {
      const now = await api("GET", "/credit");
      if (me === shown && !now.lines.some((l) => l.status === "APPLIED")) render();
    });
    return;
  }
  if (line) return page.append(...lineView(line));
  const declined = credit.lines.find((l) => l.status === "DECLINED");
  if (declined) page.append(h("div", { class: "card small", "data-testid": "credit-declined" }, t("credit_declined", declined.decline_reason || "")));
  page.append(h("h3", { style: "margin:4px 2px 10px" }, t("credit_products")), ...credit.products.map(productCard));
}

function productCard(product) {
  const agree = h("input", { type: "checkbox", "data-testid": "credit-consent" });
  const apply = h("button", { class: "btn", "data-testid": "credit-apply" }, t("credit_apply"));
  apply.addEventListener("click", async () => {
    if (!agree.checked) return toast(t("credit_need_consent"));
    apply.disabled = true;
    try {
      const body = { product_id: product.id, consent: { terms_version: product.terms_version, accepted: true } };
      await api("POST", "/credit/applications", { body, key: idempotencyKey() });
      render();
    } catch (error) {
      showError(error);
      apply.disabled = false;
    }
  });
  return h("div", { class: "card", "data-testid": "credit-product" },
    h("div", { class: "row" }, h("div", { class: "title" }, product.name), h("div", { class: "right small" }, product.bank)),
    h("div", { class: "small" }, t("credit_limit", yuan(product.limit_fen), product.interest_free_days, (product.daily_interest_bp / 100).toFixed(2))),
    h("div", { class: "small", style: "margin-top:8px" }, t("credit_terms", product.terms_version)),
    h("div", { class: "terms", "data-testid": "credit-terms" }, product.terms_text),
    h("label", { class: "check" }, agree, t("credit_consent")), apply);
}

function lineView(line) {
  const repay = async (drawdown) => {
    if (!(await sheet(t("credit_repay"), h("div", { class: "small", style: "margin-bottom:12px" }, t("credit_repay_confirm", yuan(drawdown.owed_fen))),
      [[t("deny"), false, "plain"], [t("credit_repay"), true, "repay-confirm"]]))) return;
    try {
      const repayment = await api("POST", "/credit/repayments", { body: { amount_fen: drawdown.owed_fen, drawdown_id: drawdown.id }, key: idempotencyKey() });
      location.href = repayment.cashier_url; // the bank's own cashier: the patient pays the bank there
    } catch (error) {
      showError(error);
    }
  };
  return [
    h("div", { class: "card hero", "data-testid": "credit-line", "data-status": line.status },
      h("div", { class: "row" }, h("div", { class: "small" }, `${t("credit_line")} · ${line.bank}`), h("div", { class: "right" }, state(line.status))),
      h("div", { class: "small", style: "margin-top:6px" }, t("credit_available")),
      h("div", { class: "big", "data-testid": "credit-available" }, yuan(line.available_fen)),
      h("div", { class: "small" }, t("credit_total", yuan(line.limit_fen), yuan(line.used_fen)), line.expires_on ? ` · ${line.expires_on}` : "")),
    h("div", { class: "card" }, h("h3", {}, t("credit_drawdowns")),
      line.drawdowns.length ? line.drawdowns.map((d) => h("div", { class: "cell", "data-testid": "drawdown", "data-status": d.status },
        h("div", {}, h("div", { class: "title" }, yuan(d.amount_fen)),
          h("div", { class: "small" }, [d.due_date ? t("credit_due", d.due_date) : null, d.owed_fen ? t("credit_owed", yuan(d.owed_fen)) : null].filter(Boolean).join(" · "))),
        h("div", { class: "right" }, state(d.status),
          d.status === "DISBURSED" && d.owed_fen > 0 ? h("button", { class: "btn small-btn", style: "margin-left:6px", "data-testid": "repay", onclick: () => repay(d) }, t("credit_repay")) : null)))
        : h("div", { class: "small" }, t("credit_no_drawdowns"))),
  ];
}

// -- the frame --------------------------------------------------------------------------------

const ROUTES = [
  [/^#\/login$/, loginPage, "login_title", null],
  [/^#\/home$/, homePage, "app", "home"],
  [/^#\/ecert\/bind$/, bindPage, "bind_title", null],
  [/^#\/ecert\/qr$/, qrPage, "qr_title", null],
  [/^#\/bills$/, billsPage, "bills_title", "bills"],
  [/^#\/bill\/([\w-]+)$/, billPage, "bill_title", null],
  [/^#\/book$/, hospitalsPage, "book_title", "book"],
  [/^#\/book\/hospital\/(\d+)$/, departmentsPage, "book_departments", null],
  [/^#\/book\/department\/(\d+)$/, doctorsPage, "book_doctors", null],
  [/^#\/appointments$/, appointmentsPage, "appointments_title", null],
  [/^#\/messages$/, messagesPage, "messages_title", "messages"],
  [/^#\/me$/, mePage, "me_title", "me"],
  [/^#\/family$/, familyPage, "family_title", null],
  [/^#\/family\/add$/, familyAddPage, "family_add_title", null],
  [/^#\/family\/(\d+)\/qr$/, relativeQrPage, "family_qr_title", null],
  [/^#\/credit$/, creditPage, "credit_title", null],
];

async function tabBar(current) {
  const bar = h("nav", { class: "tabbar" }, TABS.map(([key, href]) =>
    h("a", { href, class: key === current ? "on" : "", "data-tab": key }, icon(key === "bills" ? "bill" : key), t(`tab_${key}`))));
  api("GET", "/notifications?limit=1").then((inbox) => {
    if (inbox.unread) bar.querySelector('[data-tab="messages"]').append(h("span", { class: "badge", "data-testid": "unread" }, inbox.unread));
  }).catch(() => null);
  return bar;
}

async function render() {
  for (const timer of timers) { clearInterval(timer); clearTimeout(timer); }
  timers = [];
  shown += 1;
  const now = session.get();
  if (!now && location.hash !== "#/login") { location.hash = "#/login"; return; }
  if (now && (location.hash === "" || location.hash === "#/" || location.hash === "#/login")) { location.hash = "#/home"; return; }
  document.body.classList.toggle("alipay", Boolean(now && now.channel === "alipay"));
  const [pattern, screen, title, tab] = ROUTES.find(([re]) => re.test(location.hash)) || ROUTES[1];
  const args = location.hash.match(pattern)?.slice(1) || [];
  const page = h("main", { class: "page", "data-page": screen.name });
  const nav = h("header", { class: "navbar" },
    tab || screen === loginPage ? null : h("button", { class: "back", onclick: () => history.back(), "aria-label": "back" }, "‹"),
    h("span", { "data-testid": "title" }, t(title)),
    h("div", { class: "capsule" }, h("button", { "data-testid": "lang", onclick: () => { toggleLang(); render(); } }, t("lang")), "|", h("span", {}, "⊙")));
  const frame = document.getElementById("app");
  frame.replaceChildren(nav, page);
  if (tab) frame.append(await tabBar(tab));
  try {
    await screen(page, ...args);
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) { session.clear(); location.hash = "#/login"; return; }
    showError(error);
  }
  page.dataset.ready = "1";
}

window.addEventListener("hashchange", render);
translate();
config().then(render);
