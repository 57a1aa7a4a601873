"""The evaluation and training sets: shipped copies of SST-2 and WikiText-2, checksummed.

Every loader returns the data together with a :class:`DataFile` that says which file,
which checksum and which evaluation protocol it stands for, so records can cite it.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources

from energybench.errors import DataError

SHA256 = {
    "sst2-train.tsv": "c75796b01672b41c38cd4b35f4ff1ade88ca79b7577f3926e01ff69739d85ec9",
    "sst2-validation.tsv": "54a9c12c77e402fc14d6a66a506f24d999f596b0176eb777c972cccc2f9cc4b0",
    "wikitext2-wiki.test.raw": "173c87a53759e0201f33e0ccf978e510c2042d7f2cb78229d9a50d79b9e7dd08",
    "wikitext2-wiki.test.tokens": "d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0",
    "wikitext2-wiki.valid.tokens": "f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8",
}


@dataclass(frozen=True)
class DataFile:
    """Which data a number was computed on."""

    name: str
    sha256: str
    source: str  # "packaged" (shipped with energybench) or "hub" (datasets library)
    protocol: str


class DataChecksumError(DataError):
    pass


@cache
def read_packaged(name: str) -> str:
    """Decompress a shipped file and verify its SHA-256 against the published one."""
    if name not in SHA256:
        raise KeyError(f"unknown data file {name!r}; shipped files: {', '.join(SHA256)}")
    raw = gzip.decompress(resources.files(__name__).joinpath(name + ".gz").read_bytes())
    digest = hashlib.sha256(raw).hexdigest()
    if digest != SHA256[name]:
        raise DataChecksumError(
            f"{name}: SHA-256 {digest} does not match the published {SHA256[name]}; "
            "reinstall energybench to restore the shipped data"
        )
    return raw.decode("utf-8")


def sst2(split: str) -> tuple[list[tuple[str, int]], DataFile]:
    """GLUE SST-2 ``train`` or ``validation`` as (sentence, label) pairs, in GLUE order."""
    if split not in ("train", "validation"):
        raise ValueError(f"SST-2 split {split!r} is not shipped; accepted: train, validation")
    name = f"sst2-{split}.tsv"
    rows = []
    for line in read_packaged(name).split("\n"):
        if not line:
            continue
        sentence, label = line.rsplit("\t", 1)
        if label == "label":  # header row
            continue
        rows.append((sentence, int(label)))
    protocol = f"GLUE SST-2 {split} accuracy ({len(rows)} sentences)"
    return rows, DataFile(name, SHA256[name], "packaged", protocol)


def wikitext2(name: str) -> tuple[str, DataFile]:
    """One WikiText-2 file as a single string.

    ``test.raw`` follows the Hugging Face perplexity guide: the rows of
    ``wikitext-2-raw-v1`` test joined with ``"\\n\\n"`` (blank lines become empty rows).
    The ``.tokens`` files are returned as stored (``<unk>`` convention of ``wikitext-2-v1``).
    """
    file = f"wikitext2-wiki.{name}"
    if file not in SHA256:
        raise ValueError(f"WikiText-2 file {name!r} is not shipped; accepted: test.raw, test.tokens, valid.tokens")
    text = read_packaged(file)
    if name == "test.raw":
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        rows = ["" if line.strip() == "" else line + "\n" for line in lines]
        text = "\n\n".join(rows)
        protocol = "wikitext-2-raw-v1 test, rows joined with '\\n\\n' (HF perplexity guide)"
    else:
        protocol = f"wikitext-2-v1 {name.split('.')[0]} ('<unk>' tokenized text)"
    return text, DataFile(file, SHA256[file], "packaged", protocol)
