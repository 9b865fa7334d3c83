// The patient's mini-program: one page per route (#/home, #/bill/ID, ...), a tab bar on the tab pages.
import { ApiError, api, config, idempotencyKey, login, qrPicture, session, subscribe } from "./api.js";
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
    ["clock", "svc_appointments", "#/appointments"], ["messages", "svc_messages", "#/messages"], ["me", "svc_me", "#/me"],
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

const parts = (fund, account, cash) => h("div", { class: "parts", "data-testid": "split-parts" },
  h("div", {}, h("b", { "data-part": "fund" }, yuan(fund)), h("span", { class: "small" }, t("fund"))),
  h("div", {}, h("b", { "data-part": "personal_account" }, yuan(account)), h("span", { class: "small" }, t("personal_account"))),
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
      parts(bill.fund_fen, bill.personal_account_fen, bill.cash_fen),
      bill.paid_at ? h("div", { class: "small", "data-testid": "paid" }, `${t("paid")} · ${t("paid_at")} ${when(bill.paid_at)} · ${bill.cash_method || ""}`) : null));
  }
  page.append(h("div", { class: "card" }, h("h3", {}, t("bill_items")), bill.items.map((item) =>
    h("div", { class: "cell" }, h("div", {}, item.name, h("div", { class: "small" }, `${item.code} · ${t("category", item.category)} · ×${item.quantity}`)),
      h("div", { class: "amount" }, yuan(item.amount_fen))))));
}

async function payControls(page, bill) {
  const { channel } = session.get();
  const useAccount = h("input", { type: "checkbox", checked: true, "data-testid": "use-account" });
  const methods = [[channel, t(channel === "wechat" ? "pay_wechat" : "pay_alipay")], ["credit", t("pay_credit")]];
  const method = h("select", { "data-testid": "cash-method" }, methods.map(([v, label]) => h("option", { value: v }, label)));
  const splitCard = h("div", { class: "card" });
  const button = h("button", { class: "btn", "data-testid": "pay" });
  let split = null;
  const presettle = async () => {
    split = await api("POST", `/bills/${bill.id}/presettle`, { body: { use_personal_account: useAccount.checked } });
    splitCard.replaceChildren(h("h3", {}, t("bill_split")), parts(split.fund_fen, split.personal_account_fen, split.cash_fen),
      h("div", { class: "small" }, t("account_balance", yuan(split.personal_account_balance_fen))),
      splitTable(bill, split));
    button.textContent = t("pay_button", yuan(split.cash_fen));
  };
  useAccount.addEventListener("change", () => presettle().catch(showError));
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      if (split.cash_fen > 0) await askToSubscribe(bill.institution.name);
      const body = { use_personal_account: useAccount.checked };
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
      h("div", { class: "row", style: "margin-top:8px" }, doctor.sessions.map((s) =>
        h("button", { class: "session-btn", disabled: !s.bookable, "data-testid": "session", onclick: () => book(doctor, s) },
          `${t(s.period)} ${s.bookable ? t("book_places", s.places_left) : t("book_full")}`)))))
      : [h("div", { class: "card empty" }, t("book_no_doctors"))]));
  };
  page.append(tabs, list);
  await show(chosen);
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

async function appointmentsPage(page) {
  const mine = await api("GET", "/appointments?limit=50");
  if (!mine.items.length) return page.append(h("div", { class: "card empty" }, t("appointments_empty")));
  for (const a of mine.items) {
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
    page.append(h("div", { class: "card", "data-testid": "appointment" },
      h("div", { class: "row" }, h("div", { class: "title" }, `${a.department} · ${a.doctor}`), h("div", { class: "right" }, state(a.state))),
      h("div", { class: "small" }, `${a.hospital} · ${a.date} ${t(a.period)} · ${when(a.starts_at)}`),
      h("div", { class: "row" }, h("div", { class: "amount" }, yuan(a.fee_fen)),
        a.queue_no ? h("div", { class: "right", "data-testid": "queue-no" }, t("queue_no", a.queue_no)) : null),
      h("div", { class: "row", style: "margin-top:8px" },
        a.state === "HELD" ? h("a", { class: "btn small-btn", href: `#/bill/${a.bill_id}`, style: "line-height:30px;text-align:center;text-decoration:none" }, t("pay_fee")) : null,
        ["HELD", "CONFIRMED"].includes(a.state) ? h("button", { class: "btn danger small-btn", "data-testid": "cancel", onclick: cancel }, t("cancel")) : null)));
  }
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
      h("a", { class: "cell", href: "#/messages" }, t("tab_messages"), "›"),
      h("a", { class: "cell", href: "/web/terminal.html", target: "_blank" }, t("me_terminal"), "›")),
    h("button", { class: "btn danger", onclick: logout }, t("me_logout")));
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
