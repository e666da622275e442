"""Uploads kept for shared links: the server's one store of recent image uploads, by sha256."""

from __future__ import annotations

import threading
from collections import OrderedDict

import streamlit as st


class UploadStore:
    """The last good image uploads of every session, by sha256, so that a link naming an upload
    (`image=upload:<sha256>`) opens in another browser while the server still has it. Bounded by count and
    bytes, oldest out first; thread-safe (sessions run on their own threads). Only someone who has the link (or
    the picture itself) knows the digest that reads an entry."""

    def __init__(self, max_items: int = 16, max_bytes: int = 200 << 20) -> None:
        self._items: OrderedDict[str, tuple[str, bytes]] = OrderedDict()
        self._lock = threading.Lock()
        self.max_items, self.max_bytes = max_items, max_bytes

    def put(self, digest: str, name: str, data: bytes) -> None:
        with self._lock:
            self._items.pop(digest, None)
            self._items[digest] = (name, data)
            while len(self._items) > self.max_items or (
                len(self._items) > 1 and sum(len(d) for _, d in self._items.values()) > self.max_bytes
            ):
                self._items.popitem(last=False)

    def get(self, digest: str) -> tuple[str, bytes] | None:
        with self._lock:
            return self._items.get(digest)


@st.cache_resource(show_spinner=False)
def upload_store() -> UploadStore:
    """The server's one `UploadStore`."""
    return UploadStore()
