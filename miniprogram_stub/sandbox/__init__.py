"""Sandbox servers imitating the partner platforms (WeChat, Alipay, e-certificate, face) in one app."""
