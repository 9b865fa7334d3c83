// The channel's pay sheet: the payer confirms (or fails) through the sandbox's payer endpoints,
// then goes back to the mini-program, which waits for medpay to see the bill PAID.
import { sandbox } from "./api.js";
import { t, toggleLang, translate } from "./i18n.js";
import { h, icon, showError, yuan } from "./ui.js";

const query = new URLSearchParams(location.search);
const channel = query.get("channel") === "alipay" ? "alipay" : "wechat";
const outTradeNo = query.get("out_trade_no") || "";
const back = (query.get("back") || "").startsWith("/web/") ? query.get("back") : "/web/index.html";

async function render() {
  translate();
  document.body.classList.toggle("alipay", channel === "alipay");
  const frame = document.getElementById("app");
  const page = h("main", { class: "page" });
  frame.replaceChildren(
    h("header", { class: "navbar" }, h("span", {}, t(`cashier_${channel}`)),
      h("div", { class: "capsule" }, h("button", { onclick: () => { toggleLang(); render(); } }, t("lang")))),
    page);
  let order;
  try {
    order = await sandbox("GET", `/_sandbox/pay/${channel}/orders/${encodeURIComponent(outTradeNo)}`);
  } catch (error) {
    showError(error);
    return;
  }
  const result = h("div", { class: "center", "data-testid": "cashier-result" });
  const password = h("input", { type: "text", inputmode: "numeric", maxlength: 6, value: "", placeholder: "••••••", style: "text-align:center;letter-spacing:8px" });
  const done = h("a", { class: "btn", href: back, "data-testid": "cashier-done", style: "line-height:44px;text-align:center;text-decoration:none;display:none" }, t("cashier_done"));
  const confirm = async (outcome) => {
    try {
      const answer = await sandbox("POST", `/_sandbox/pay/${channel}/confirm`, { out_trade_no: outTradeNo, outcome, deliver: true });
      const ok = ["SUCCESS", "TRADE_SUCCESS"].includes(answer.state);
      result.replaceChildren(h("div", { style: `color:var(${ok ? "--brand" : "--danger"})` }, icon(ok ? "ok" : "fail", 56)), h("h3", { "data-state": answer.state }, t(ok ? "cashier_paid" : "cashier_failed")));
      for (const b of buttons) b.style.display = "none";
      done.style.display = "block";
    } catch (error) {
      showError(error);
    }
  };
  const buttons = [
    h("button", { class: "btn", "data-testid": "cashier-pay", onclick: () => confirm("success") }, t("cashier_pay")),
    h("button", { class: "btn danger", "data-testid": "cashier-fail", onclick: () => confirm("fail") }, t("cashier_fail")),
  ];
  page.append(
    h("div", { class: "card center" },
      h("div", { class: "small" }, query.get("payee") || ""),
      h("div", { class: "big", "data-testid": "cashier-amount" }, yuan(order.amount_fen)),
      h("div", { class: "cell" }, h("span", { class: "small" }, t("cashier_merchant")), h("span", {}, query.get("payee") || "")),
      h("div", { class: "cell" }, h("span", { class: "small" }, t("cashier_order")), h("span", { class: "small" }, order.out_trade_no)),
      h("div", { class: "small", style: "margin-top:8px" }, t("cashier_password")), password,
      result, buttons, done),
    h("div", { class: "sandbox-note" }, t("cashier_note")));
}

render();
