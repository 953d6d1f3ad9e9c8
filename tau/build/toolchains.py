"""
Taubyte's build images mapped to the toolchains of this machine.

Taubyte runs each step in a docker image (C{taubyte/rust-wasi},
C{taubyte/go-wasi}, C{taubyte/assembly-script-wasi}) whose
C{/utils/wasm.sh} defines C{build}, which Taubyte's templates call
(C{. /utils/wasm.sh; build "${FILENAME}"}).  tau has no docker: an image
name picks a L{Toolchain}, the packages it needs are the host's (seen
read-only in the sandbox), and tau's own C{/utils/wasm.sh} defines
C{build} with them.  Every C{build} leaves C{/out/main.wasm}.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field

#: Where the sandbox looks for programs (its C{PATH}).
PATH = "/usr/local/bin:/usr/bin:/bin"


class UnknownImage(ValueError):
    """
    No toolchain here for the image a repository asks for: why.
    """


@dataclass(frozen=True)
class Toolchain:
    """
    A local stand-in for a build image.

    @ivar name: tau's name for it.
    @ivar needs: the programs it runs (looked up on L{PATH}).
    @ivar packages: where they come from (said when one is missing).
    @ivar utils: the text of its C{/utils/wasm.sh}.
    @ivar env: variables set for its steps.
    """

    name: str
    needs: tuple
    packages: str
    utils: str
    env: dict = field(default_factory=dict)

    def missing(self, path=PATH):
        """
        The programs of L{needs} not installed.
        """
        return [n for n in self.needs if shutil.which(n, path=path) is None]


_RUST = r"""
# tau: Rust for wasm32-wasi with Debian's rustc and wasm32 std.
build() {
    cd "${SRC:-/src}" || return
    if [ -f Cargo.toml ]; then
        command -v cargo >/dev/null || { echo "tau: Cargo.toml needs cargo (Debian package cargo)" >&2; return 1; }
        CARGO_HOME=/tmp/cargo cargo build --release --offline --target wasm32-wasi || return
        for f in target/wasm32-wasi/release/*.wasm; do
            [ -f "$f" ] && { cp "$f" /out/main.wasm; return; }
        done
        echo "tau: cargo built no .wasm (crate-type must be cdylib)" >&2
        return 1
    fi
    src=${1:-lib.rs}
    [ -f "$src" ] || src=src/lib.rs
    rustc --edition 2021 --target wasm32-wasi --crate-type cdylib -O -C strip=debuginfo -o /out/main.wasm "$src"
}
"""

_WAT = r"""
# tau: WebAssembly text with wabt's wat2wasm.
build() {
    cd "${SRC:-/src}" || return
    src=${1:-main.wat}
    if [ ! -f "$src" ]; then
        for f in *.wat; do src=$f; break; done
    fi
    wat2wasm "$src" -o /out/main.wasm
}
"""

_ASSEMBLYSCRIPT = r"""
# tau: AssemblyScript with the asc compiler from npm; no env.abort import (the
# host does not provide it); ASC_FLAGS (e.g. --optimize) are passed on.
build() {
    cd "${SRC:-/src}" || return
    src=${1:-assembly/index.ts}
    # V8 reserves guard regions far larger than RLIMIT_AS for wasm memories
    node --disable-wasm-trap-handler "$(command -v asc)" "$src" --outFile /out/main.wasm --use abort= ${ASC_FLAGS:-}
}
"""

RUST = Toolchain("rust-wasi", ("rustc", "rust-lld"), "Debian packages rustc, libstd-rust-dev-wasm32, lld", _RUST)
WAT = Toolchain("wat", ("wat2wasm",), "Debian package wabt", _WAT)
ASSEMBLYSCRIPT = Toolchain("assembly-script-wasi", ("node", "asc"),
                           "Debian package nodejs and npm's assemblyscript (npm install -g assemblyscript)",
                           _ASSEMBLYSCRIPT)

#: image name (no registry, no tag) -> toolchain
IMAGES = {
    "taubyte/rust-wasi": RUST,
    "tau/rust-wasi": RUST,
    "tau/wat": WAT,
    "taubyte/wat": WAT,
    "taubyte/assembly-script-wasi": ASSEMBLYSCRIPT,
    "tau/assembly-script-wasi": ASSEMBLYSCRIPT,
}

#: Images known not to be buildable here, and why.
UNSUPPORTED = {
    "taubyte/go-wasi": "Go functions need tinygo, which Debian does not package",
}


def imageName(image):
    """
    C{image} without its registry, tag or digest, lower-cased.
    """
    name = image.strip().lower().split("@", 1)[0]
    last = name.rsplit("/", 1)
    if ":" in last[-1]:
        name = name[: name.rindex(":")]
    for registry in ("docker.io/", "index.docker.io/", "registry-1.docker.io/"):
        if name.startswith(registry):
            name = name[len(registry):]
    if name.startswith("library/"):
        name = name[len("library/"):]
    return name


def toolchainFor(image):
    """
    The L{Toolchain} for C{image}, with its programs installed.

    @raise UnknownImage: no toolchain maps the image, or one of its
        programs is missing.
    """
    name = imageName(image)
    if name in UNSUPPORTED:
        raise UnknownImage(f"image {image!r}: {UNSUPPORTED[name]}")
    toolchain = IMAGES.get(name)
    if toolchain is None:
        known = ", ".join(sorted(IMAGES))
        raise UnknownImage(f"image {image!r} has no local toolchain (tau runs no docker); known images: {known}")
    missing = toolchain.missing()
    if missing:
        raise UnknownImage(f"image {image!r} needs {', '.join(missing)}, not installed here ({toolchain.packages})")
    return toolchain


def writeUtils(toolchain, folder):
    """
    Write C{toolchain}'s C{wasm.sh} into C{folder} (blocking), which the
    sandbox binds read-only at C{/utils}.
    """
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "wasm.sh"), "w") as f:
        f.write(toolchain.utils)
    return folder
