"""A scripted phone: get a login code from a sandbox platform, log in to medpay, show who we are.

`python -m miniprogram_stub.client login --channel wechat --user alice`
"""

import argparse
import json
import sys

import httpx

from miniprogram_stub.sandbox import config


def phone_code(http: httpx.Client, sandbox: str, channel: str, user: str) -> str:
    """What `wx.login()` / `my.getAuthCode()` hands the mini-program."""
    if channel == "wechat":
        body = {"appid": config.WECHAT_APPID, "user": user}
        answer = http.post(f"{sandbox}/wechat/_sandbox/login", json=body).raise_for_status()
        return str(answer.json()["code"])
    body = {"app_id": config.ALIPAY_APP_ID, "user": user}
    answer = http.post(f"{sandbox}/alipay/_sandbox/login", json=body).raise_for_status()
    return str(answer.json()["auth_code"])


def show(label: str, response: httpx.Response) -> None:
    print(f"{label}: HTTP {response.status_code}")  # noqa: T201
    try:
        print(json.dumps(response.json(), ensure_ascii=False, indent=2))  # noqa: T201
    except ValueError:
        print(response.text)  # noqa: T201


def login(sandbox: str, api: str, channel: str, user: str) -> int:
    with httpx.Client(timeout=10) as http:
        code = phone_code(http, sandbox, channel, user)
        answer = http.post(f"{api}/api/v1/auth/login", json={"channel": channel, "code": code})
        show("login", answer)
        if answer.is_error:
            return 1
        bearer = {"Authorization": f"Bearer {answer.json()['access_token']}"}
        me = http.get(f"{api}/api/v1/me", headers=bearer)
        show("me", me)
        return 1 if me.is_error else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m miniprogram_stub.client")
    commands = parser.add_subparsers(dest="command", required=True)
    cmd = commands.add_parser("login", help="log in as a patient through a mini-program channel")
    cmd.add_argument("--channel", choices=("wechat", "alipay"), required=True)
    cmd.add_argument("--user", required=True, help="the phone's user, e.g. alice")
    cmd.add_argument("--sandbox", default="http://127.0.0.1:8100")
    cmd.add_argument("--api", default="http://127.0.0.1:8000")
    args = parser.parse_args(argv)
    try:
        return login(args.sandbox.rstrip("/"), args.api.rstrip("/"), args.channel, args.user)
    except httpx.HTTPError as exc:
        print(f"error: {exc}", file=sys.stderr)  # noqa: T201
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
