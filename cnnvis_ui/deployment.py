"""Where the dashboard runs decides what it accepts: a TorchScript upload is a program, so it is taken only from a
server on loopback (a person's own machine), unless the operator of an exposed server turns it on."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping

import streamlit as st

ALLOW_TORCHSCRIPT = "CNNVIS_ALLOW_TORCHSCRIPT"  # "1": accept TorchScript uploads anyway; "0": never


def is_loopback(address: str | None) -> bool:
    """127.x, ::1 and localhost. None or "" means every interface (Streamlit's default without our config)."""
    if not address:
        return False
    if address.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:  # a host name: it resolves to who knows what
        return False


def torchscript_allowed(address: str | None, environ: Mapping[str, str] = os.environ) -> bool:
    """TorchScript uploads: CNNVIS_ALLOW_TORCHSCRIPT=1 or =0 decides when set (=0 is for a loopback server behind a
    reverse proxy, which is exposed though its address is not); unset, on for loopback only."""
    choice = environ.get(ALLOW_TORCHSCRIPT, "").strip().lower()
    if choice in ("1", "true", "yes", "on"):
        return True
    if choice in ("0", "false", "no", "off"):
        return False
    return is_loopback(address)


def server_allows_torchscript() -> bool:
    """For this server (its `server.address` option)."""
    return torchscript_allowed(st.get_option("server.address"))
