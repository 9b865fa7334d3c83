"""Sandbox servers imitating the partner platforms (WeChat, Alipay, ...) in one Litestar app."""
