// Small pieces every page uses: elements, money, times, a toast and the bottom sheet.
import { t } from "./i18n.js";

// h("div", {class: "card", onclick: f}, "text", child, [children]) — null children are skipped.
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "class") node.className = value;
    else if (name === "value") node.value = value;
    else if (name === "checked") node.checked = Boolean(value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export const yuan = (fen) => `¥${(Number(fen || 0) / 100).toFixed(2)}`;

export function when(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}`;
}

export const state = (value) => h("span", { class: `state ${value}`, "data-state": value }, t(value));

export function toast(message, ms = 1800) {
  const node = h("div", { class: "toast", role: "status" }, message);
  document.body.append(node);
  setTimeout(() => node.remove(), ms);
}

// A bottom sheet; resolves with the value of the button pressed.
export function sheet(title, body, buttons) {
  return new Promise((resolve) => {
    const mask = h("div", { class: "mask" });
    const close = (value) => { mask.remove(); resolve(value); };
    mask.append(h("div", { class: "sheet", role: "dialog" },
      h("h3", {}, title),
      body,
      h("div", { class: "buttons" }, buttons.map(([label, value, cls]) =>
        h("button", { class: `btn ${cls || ""}`, onclick: () => close(value) }, label)))));
    document.body.append(mask);
  });
}

export const showError = (error) => toast(t("error", error.code ? `${error.code} ${error.message}` : error.message), 3500);

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Line icons drawn here: the machines these pages run on may have no emoji font.
const ICONS = {
  home: '<path d="M3 11l9-8 9 8v10h-6v-6H9v6H3z"/>',
  bill: '<path d="M6 2h12v20l-3-2-3 2-3-2-3 2zM9 7h6M9 11h6M9 15h4"/>',
  book: '<rect x="3" y="5" width="18" height="16" rx="2"/><path d="M3 10h18M8 3v4M16 3v4"/>',
  messages: '<path d="M4 4h16v12H8l-4 4z"/>',
  me: '<circle cx="12" cy="8" r="4"/><path d="M4 21c0-4 4-7 8-7s8 3 8 7"/>',
  qr: '<path d="M3 3h7v7H3zM14 3h7v7h-7zM3 14h7v7H3zM14 14h3v3h-3zM18 18h3v3h-3z"/>',
  hospital: '<rect x="4" y="3" width="16" height="18" rx="2"/><path d="M12 7v8M8 11h8"/>',
  clock: '<circle cx="12" cy="12" r="9"/><path d="M12 7v5l3 3"/>',
  ok: '<circle cx="12" cy="12" r="10"/><path d="M7 12l3 3 7-7"/>',
  fail: '<circle cx="12" cy="12" r="10"/><path d="M8 8l8 8M16 8l-8 8"/>',
  family: '<circle cx="8" cy="7" r="3"/><circle cx="17" cy="9" r="2.5"/><path d="M2 20c0-3.5 2.7-6 6-6s6 2.5 6 6M14 20c0-2.5 1.3-4.5 3-4.5s4 2 4 4.5"/>',
  credit: '<rect x="2" y="5" width="20" height="14" rx="2"/><path d="M2 10h20M6 15h4"/>',
  face: '<path d="M4 8V5a1 1 0 0 1 1-1h3M16 4h3a1 1 0 0 1 1 1v3M20 16v3a1 1 0 0 1-1 1h-3M8 20H5a1 1 0 0 1-1-1v-3"/><circle cx="9.5" cy="10" r=".6"/><circle cx="14.5" cy="10" r=".6"/><path d="M9 15c1.7 1.3 4.3 1.3 6 0"/>',
};

export function icon(name, size = 22) {
  const holder = document.createElement("span");
  holder.className = "icon";
  holder.innerHTML = `<svg width="${size}" height="${size}" viewBox="0 0 24 24" fill="none" stroke="currentColor" `
    + `stroke-width="1.8" stroke-linejoin="round" stroke-linecap="round">${ICONS[name]}</svg>`;
  return holder;
}
