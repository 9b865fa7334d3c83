// Chinese first, as the mini-program is; English at the switch. t("key", a, b) fills {0}, {1}.

const TEXT = {
  zh: {
    app: "医保便民缴费", sandbox: "沙箱", lang: "EN",
    tab_home: "首页", tab_bills: "账单", tab_book: "预约", tab_messages: "消息", tab_me: "我的",
    login_title: "登录", login_intro: "使用医保电子凭证，就医扫码、一键缴费、预约挂号",
    login_as: "沙箱用户（代替手机上的微信/支付宝账号）", login_wechat: "微信一键登录", login_alipay: "支付宝一键登录",
    channel_wechat: "微信", channel_alipay: "支付宝",
    home_ecert: "医保电子凭证", home_bind: "去绑定", home_bound: "已绑定", home_show_qr: "出示医保码",
    svc_qr: "医保码", svc_bills: "门诊缴费", svc_book: "预约挂号", svc_appointments: "我的预约", svc_messages: "消息", svc_me: "个人中心",
    bind_title: "绑定医保电子凭证", bind_name: "姓名", bind_id_type: "证件类型", bind_id: "证件号码",
    bind_resident_id: "居民身份证", bind_generate: "生成测试号码", bind_agree: "我已阅读并同意《医保电子凭证授权协议》",
    bind_submit: "确认绑定", bind_need_agree: "请先同意授权协议", bind_note: "沙箱：姓名以“测试”开头、号码校验位正确的任何人都已参保",
    qr_title: "医保电子凭证", qr_hint: "向医护人员出示此码", qr_refresh_in: "{0} 秒后自动刷新", qr_refresh: "刷新",
    qr_payload: "沙箱：二维码内容（粘贴到医院终端页）", qr_copy: "复制", qr_copied: "已复制",
    bills_title: "我的账单", bills_empty: "暂无账单", bill_title: "账单详情", bill_no: "账单号", bill_total: "总金额",
    bill_items: "费用明细", bill_split: "医保预结算", fund: "统筹支付", personal_account: "个人账户", cash: "现金支付",
    use_account: "使用个人账户支付", account_balance: "个人账户余额 {0}", rule: "规则",
    pay_by: "支付方式", pay_wechat: "微信支付", pay_alipay: "支付宝", pay_credit: "先诊疗后付费（银行信用）",
    pay_button: "医保支付 {0}", paying: "支付中，等待支付结果…", pay_again: "继续支付", paid: "支付成功", paid_at: "支付时间",
    subscribe_title: "{0} 申请", subscribe_body: "获取以下订阅消息", subscribe_keep: "总是保持以上选择，不再询问",
    allow: "允许", deny: "取消", category: "{0}类", item: "项目", amount: "金额",
    messages_title: "消息", messages_empty: "暂无消息", read_all: "全部已读",
    me_title: "我的", me_user: "沙箱用户", me_channel: "登录渠道", me_ecert: "电子凭证", me_unbound: "未绑定",
    me_logout: "退出登录", me_appointments: "我的预约", me_terminal: "医院终端页（沙箱）",
    book_title: "预约挂号", book_hospitals: "选择医院", book_departments: "选择科室", book_doctors: "选择医生",
    book_no_doctors: "当天无号源", book_places: "余 {0}", book_full: "约满", book_confirm: "确认预约",
    book_confirm_body: "{0} {1} {2}，挂号费 {3}", book_held: "已锁号，请在 {0} 前支付挂号费",
    MORNING: "上午", AFTERNOON: "下午", EVENING: "晚上",
    CHIEF: "主任医师", ASSOCIATE: "副主任医师", ATTENDING: "主治医师", RESIDENT: "住院医师",
    appointments_title: "我的预约", appointments_empty: "暂无预约", queue_no: "就诊序号 {0}",
    cancel: "取消预约", cancel_confirm: "确定取消该预约？已缴挂号费将原路退回", back: "返回",
    pay_fee: "支付挂号费", confirm: "确定",
    CREATED: "待支付", PAYING: "支付中", PAID: "已支付", PARTIALLY_REFUNDED: "部分退款", REFUNDED: "已退款",
    CLOSED: "已关闭", FAILED: "支付失败", HELD: "待支付", CONFIRMED: "预约成功", CANCELLED: "已取消",
    CHECKED_IN: "已签到", NO_SHOW: "爽约", EXPIRED: "已过期",
    error: "出错了：{0}",
    // The cashier (the channels' pay sheet) and the hospital terminal.
    cashier_title: "收银台", cashier_wechat: "微信支付", cashier_alipay: "支付宝",
    cashier_merchant: "收款方", cashier_order: "订单号", cashier_password: "请输入支付密码",
    cashier_pay: "确认支付", cashier_fail: "模拟支付失败", cashier_done: "完成", cashier_paid: "支付成功",
    cashier_failed: "支付失败", cashier_note: "沙箱收银台：代替 wx.requestMedicalInsurancePay / my.tradePay",
    terminal_title: "医院终端（沙箱）", terminal_hospital: "杭州市第一人民医院 · 门诊收费",
    terminal_scan: "扫描患者医保码", terminal_payload: "二维码内容", terminal_decode: "识别",
    terminal_patient: "患者", terminal_insurance: "参保类型", terminal_region: "参保地",
    employee: "职工医保", resident: "居民医保",
    terminal_bill: "开具账单", terminal_order_type: "账单类型", terminal_add: "添加项目", terminal_create: "开具账单",
    terminal_code: "编码", terminal_name: "名称", terminal_category: "类别", terminal_qty: "数量", terminal_price: "单价（分）",
    terminal_watch: "账单状态（实时）", terminal_schedule: "排班", terminal_publish: "发布演示排班（未来一周心内科）",
    terminal_published: "已发布：{0} 个号源", terminal_note: "本页代替医院的 HIS 和收费终端：合作方密钥由沙箱代管换取令牌",
    REG: "挂号", DIAG: "诊疗", PHARMACY: "药品", IN_HOSP: "住院",
  },
  en: {
    app: "MedPay", sandbox: "sandbox", lang: "中文",
    tab_home: "Home", tab_bills: "Bills", tab_book: "Book", tab_messages: "Inbox", tab_me: "Me",
    login_title: "Log in", login_intro: "Your insurance e-certificate: scan at the hospital, pay in one tap, book a doctor",
    login_as: "Sandbox user (stands in for the phone's WeChat/Alipay account)", login_wechat: "Log in with WeChat", login_alipay: "Log in with Alipay",
    channel_wechat: "WeChat", channel_alipay: "Alipay",
    home_ecert: "Insurance e-certificate", home_bind: "Bind", home_bound: "Bound", home_show_qr: "Show my code",
    svc_qr: "My code", svc_bills: "Pay bills", svc_book: "Book", svc_appointments: "Appointments", svc_messages: "Inbox", svc_me: "Me",
    bind_title: "Bind the e-certificate", bind_name: "Name", bind_id_type: "Document", bind_id: "ID number",
    bind_resident_id: "Resident ID card", bind_generate: "Make a test number", bind_agree: "I have read and agree to the e-certificate authorization",
    bind_submit: "Bind", bind_need_agree: "Please agree to the authorization first", bind_note: "Sandbox: anyone named 测试… with a valid ID number is insured",
    qr_title: "E-certificate", qr_hint: "Show this code to the staff", qr_refresh_in: "Refreshes in {0} s", qr_refresh: "Refresh",
    qr_payload: "Sandbox: the code's payload (paste it on the terminal page)", qr_copy: "Copy", qr_copied: "Copied",
    bills_title: "My bills", bills_empty: "No bills", bill_title: "Bill", bill_no: "Bill no.", bill_total: "Total",
    bill_items: "Items", bill_split: "Insurance pre-settlement", fund: "Fund", personal_account: "Personal account", cash: "Cash",
    use_account: "Pay from my personal account", account_balance: "Personal account balance {0}", rule: "rule",
    pay_by: "Pay the cash by", pay_wechat: "WeChat Pay", pay_alipay: "Alipay", pay_credit: "Treat first, pay later (bank credit)",
    pay_button: "Pay {0}", paying: "Paying, waiting for the result…", pay_again: "Pay again", paid: "Paid", paid_at: "Paid at",
    subscribe_title: "{0} asks to", subscribe_body: "send you these messages", subscribe_keep: "Always keep this choice",
    allow: "Allow", deny: "Cancel", category: "cat. {0}", item: "Item", amount: "Amount",
    messages_title: "Inbox", messages_empty: "No messages", read_all: "Mark all read",
    me_title: "Me", me_user: "Sandbox user", me_channel: "Logged in with", me_ecert: "E-certificate", me_unbound: "not bound",
    me_logout: "Log out", me_appointments: "My appointments", me_terminal: "Hospital terminal page (sandbox)",
    book_title: "Book a doctor", book_hospitals: "Hospitals", book_departments: "Departments", book_doctors: "Doctors",
    book_no_doctors: "No sessions that day", book_places: "{0} left", book_full: "Full", book_confirm: "Book",
    book_confirm_body: "{0} {1} {2}, fee {3}", book_held: "Held: pay the fee before {0}",
    MORNING: "morning", AFTERNOON: "afternoon", EVENING: "evening",
    CHIEF: "Chief physician", ASSOCIATE: "Associate chief", ATTENDING: "Attending", RESIDENT: "Resident",
    appointments_title: "My appointments", appointments_empty: "No appointments", queue_no: "Queue no. {0}",
    cancel: "Cancel", cancel_confirm: "Cancel this appointment? A paid fee is refunded", back: "Back",
    pay_fee: "Pay the fee", confirm: "OK",
    CREATED: "to pay", PAYING: "paying", PAID: "paid", PARTIALLY_REFUNDED: "partly refunded", REFUNDED: "refunded",
    CLOSED: "closed", FAILED: "failed", HELD: "to pay", CONFIRMED: "booked", CANCELLED: "cancelled",
    CHECKED_IN: "checked in", NO_SHOW: "no-show", EXPIRED: "expired",
    error: "Error: {0}",
    cashier_title: "Cashier", cashier_wechat: "WeChat Pay", cashier_alipay: "Alipay",
    cashier_merchant: "Payee", cashier_order: "Order no.", cashier_password: "Enter the payment password",
    cashier_pay: "Pay", cashier_fail: "Simulate a failure", cashier_done: "Done", cashier_paid: "Paid",
    cashier_failed: "Payment failed", cashier_note: "Sandbox cashier: stands in for wx.requestMedicalInsurancePay / my.tradePay",
    terminal_title: "Hospital terminal (sandbox)", terminal_hospital: "Hangzhou First People's Hospital · outpatient billing",
    terminal_scan: "Scan the patient's code", terminal_payload: "QR payload", terminal_decode: "Decode",
    terminal_patient: "Patient", terminal_insurance: "Insurance", terminal_region: "Region",
    employee: "employee", resident: "resident",
    terminal_bill: "Bill the visit", terminal_order_type: "Order type", terminal_add: "Add an item", terminal_create: "Create the bill",
    terminal_code: "Code", terminal_name: "Name", terminal_category: "Cat.", terminal_qty: "Qty", terminal_price: "Price (fen)",
    terminal_watch: "The bill, live", terminal_schedule: "Schedules", terminal_publish: "Publish the demo week (cardiology)",
    terminal_published: "Published: {0} sessions", terminal_note: "This page stands in for the hospital's system and terminal: the sandbox exchanges the demo partners' secrets for tokens",
    REG: "registration", DIAG: "diagnosis", PHARMACY: "pharmacy", IN_HOSP: "in-patient",
  },
};

const LANG_KEY = "medpay.h5.lang";
export const lang = () => (localStorage.getItem(LANG_KEY) === "en" ? "en" : "zh");

export function t(key, ...args) {
  const text = TEXT[lang()][key] ?? TEXT.zh[key] ?? key;
  return text.replace(/\{(\d)\}/g, (_, n) => String(args[Number(n)] ?? ""));
}

export function toggleLang() {
  localStorage.setItem(LANG_KEY, lang() === "en" ? "zh" : "en");
  document.documentElement.lang = lang() === "en" ? "en" : "zh-CN";
}

// Static text in the HTML: <span data-i18n="key">.
export function translate(root = document) {
  document.documentElement.lang = lang() === "en" ? "en" : "zh-CN";
  for (const node of root.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
}
