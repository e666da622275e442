"""Hostile and broken model uploads for the containment tests (engine and browser), built in memory.

Each TorchScript case is a small scriptable module; `torchscript(...)` (hardening_cases) turns it into the bytes a
person would upload. `live(...)` proves a payload is real: loaded in-process, plainly, it does what it says.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from pathlib import Path

import torch
from torch import nn

GiB = 2**30


class SavesAFile(nn.Module):
    """forward writes `path` with torch.ops.aten.save (serialized as `torch.save`)."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self.fc = nn.Linear(3, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        torch.ops.aten.save(x, self.path)
        return self.fc(x.mean((2, 3)))


class SavesAFileOnLoad(nn.Module):
    """An exported __setstate__ that writes `path`: it runs inside torch.jit.load, before any check of ours."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self.weight = torch.ones(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3)) @ self.weight.t()

    @torch.jit.export
    def __getstate__(self) -> tuple[str, torch.Tensor, bool]:
        return (self.path, self.weight, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[str, torch.Tensor, bool]) -> None:
        self.path = state[0]
        self.weight = state[1]
        self.training = state[2]
        torch.ops.aten.save(torch.zeros(1), state[0])


class ReadsAFile(nn.Module):
    """forward reads the first bytes of `path` (torch.from_file) and returns them as the logits."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        secret = torch.from_file(self.path, False, 16, dtype=torch.uint8).float()
        return secret.unsqueeze(0) + 0.0 * x.mean()


class LoopsForever(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        i = 0
        while i >= 0:
            i = (i + 1) % 1000
        return self.fc(x.mean((2, 3)))


class Allocates(nn.Module):
    """forward asks for `gib` GiB at once."""

    def __init__(self, gib: int) -> None:
        super().__init__()
        self.count = gib * GiB // 4
        self.fc = nn.Linear(3, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        big = torch.ones(self.count)
        return self.fc(x.mean((2, 3))) + big[:5].unsqueeze(0)


class _Head(nn.Module):
    def __init__(self, outputs: int = 5) -> None:
        super().__init__()
        self.fc = nn.Linear(3, outputs)


class ReturnsNoClasses(_Head):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.mean((2, 3)))[:, :0]


class ReturnsIntegers(_Head):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.mean((2, 3))).argmax(1, keepdim=True)


class ReturnsDetached(_Head):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.mean((2, 3))).detach()


class IgnoresItsInput(_Head):
    """Its output needs gradients (the bias) but does not depend on the image."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc.bias.unsqueeze(0) + 0 * x.shape[0]


class TooManyClasses(_Head):
    def __init__(self) -> None:
        super().__init__(200_000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.mean((2, 3)))


def zip_bomb(uncompressed: int = 2 * GiB) -> bytes:
    """A torch.save-style zip (`archive/data.pkl` of a real state_dict, and a storage entry) whose storage entry
    inflates to `uncompressed` bytes of zeros from about a thousandth of that, built without ever holding more
    than 64 MB: after a full flush deflate restarts, so one chunk's compressed bytes repeat."""
    buffer = io.BytesIO()
    torch.save({"fc.weight": torch.zeros(5, 3)}, buffer)
    chunk = bytes(64 * 2**20)
    assert uncompressed % len(chunk) == 0
    repeats = uncompressed // len(chunk)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    piece = compressor.compress(chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
    tail = compressor.flush()
    crc = 0
    for _ in range(repeats):
        crc = zlib.crc32(chunk, crc)
    return _with_raw_entry(buffer.getvalue(), "archive/data/1", piece * repeats + tail, uncompressed, crc)


def _with_raw_entry(base: bytes, name: str, compressed: bytes, size: int, crc: int) -> bytes:
    """`base` (a zip) with an entry `name` added that holds the given deflate stream (zip64 sizes): zipfile
    cannot write precompressed data, so the entries and the directory are written by hand."""
    entries = []
    with zipfile.ZipFile(io.BytesIO(base)) as archive:
        for entry in archive.infolist():
            entries.append((entry.filename.encode(), archive.read(entry), zipfile.ZIP_STORED, None, None))
    entries.append((name.encode(), compressed, zipfile.ZIP_DEFLATED, size, crc))
    out, central = bytearray(), bytearray()
    for filename, payload, method, raw_size, raw_crc in entries:
        offset = len(out)
        file_crc = zlib.crc32(payload) if raw_crc is None else raw_crc
        usize = len(payload) if raw_size is None else raw_size
        extra = struct.pack("<HHQQ", 1, 16, usize, len(payload))
        out += (
            struct.pack(
                "<IHHHHHIIIHH",
                0x04034B50,
                45,
                0,
                method,
                0,
                0,
                file_crc,
                0xFFFFFFFF,
                0xFFFFFFFF,
                len(filename),
                len(extra),
            )
            + filename
            + extra
            + payload
        )
        cextra = struct.pack("<HHQQQ", 1, 24, usize, len(payload), offset)
        central += (
            struct.pack(
                "<IHHHHHHIIIHHHHHII",
                0x02014B50,
                45,
                45,
                0,
                method,
                0,
                0,
                file_crc,
                0xFFFFFFFF,
                0xFFFFFFFF,
                len(filename),
                len(cextra),
                0,
                0,
                0,
                0,
                0xFFFFFFFF,
            )
            + filename
            + cextra
        )
    start = len(out)
    out += central
    end64 = len(out)
    out += struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, len(entries), len(entries), len(central), start)
    out += struct.pack("<IIQI", 0x07064B50, 0, end64, 1)
    out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    return bytes(out)


class StartsABackgroundTask(nn.Module):
    """torch.jit.fork: a task on the inter-op pool, which may run on after forward has answered."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        future = torch.jit.fork(torch.relu, x)
        return torch.jit.wait(future).mean((2, 3))


def rewritten(data: bytes, old: str, new: str) -> bytes:
    """A TorchScript archive with `old` replaced by `new` in its code: what a hostile uploader does by hand, since
    `torch.jit.load` compiles the archive's code itself (the compiler would print `getattr(torch, "save")` as
    `torch.save`). Fails if `old` is not in the code, so a case cannot silently stop being hostile."""
    out = io.BytesIO()
    found = False
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w") as archive:
        for entry in source.infolist():
            content = source.read(entry)
            if "/code/" in entry.filename and old.encode() in content:
                content, found = content.replace(old.encode(), new.encode()), True
            archive.writestr(entry, content)
    assert found, f"{old!r} is not in the archive's code"
    return out.getvalue()


def code_archive(source: str) -> bytes:
    """A zip holding only `source` as an archive's code file: enough for the static check, which reads nothing else."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("archive/code/__torch__.py", source)
    return out.getvalue()


# ----- what the containment tests read off a process ----------------------------------------------------------
def sentence(message: str) -> str:
    """`message`, asserted to be one sentence a person reads: no traceback, file path or errno."""
    assert message.endswith((".", "?")), message
    for leak in ("Traceback", "Errno", 'File "', "torch/", '.py"'):
        assert leak not in message, message
    return message


def rss_mib(pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def gone(pid: int) -> bool:
    """The process has ended (reaped, or a zombie nobody waited for yet)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "State:\tZ" in status
