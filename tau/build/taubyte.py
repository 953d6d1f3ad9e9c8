"""
Taubyte's C{.taubyte/} build convention (C{pkg/builder}, C{pkg/specs/builders}).

A buildable folder holds C{.taubyte/} (or the older C{taubyte/}) with
C{config.yaml}::

    version: 1.00
    environment:            # "enviroment", misspelt, is accepted too
      image: taubyte/rust-wasi:latest
      variables: {NAME: value}
    workflow:
      - build               # runs /bin/sh /src/.taubyte/build.sh

Each step runs C{/bin/sh /src/<dir>/<step>.sh} with C{SRC=/src},
C{OUT=/out} and the variables.  tau runs the whole workflow in one
L{tau.build.sandbox.Sandbox} (Taubyte starts a container per step, sharing
C{/src} and C{/out}; here C{/tmp} is shared too), with the image mapped to a
local toolchain (L{tau.build.toolchains}) whose C{/utils/wasm.sh} is bound
read-only.  A function or library must leave C{/out/main.wasm} (or the
older C{/out/artifact.wasm}), checked to import only the host ABI
(L{tau.build.imports}); a website leaves its tree in C{/out}, which must
not be empty.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
from dataclasses import dataclass

import yaml
from twisted.internet.threads import deferToThreadPool

from tau.build import toolchains
from tau.build.imports import ForeignImport, checkImports
from tau.build.sandbox import Limits, SandboxUnavailable

CONFIG_DIRS = (".taubyte", "taubyte")
CONFIG_FILE = "config.yaml"
WASM_OUTPUTS = ("main.wasm", "artifact.wasm")

MAX_CONFIG = 64 * 1024
MAX_STEPS = 32
MAX_VARIABLES = 256
MAX_VALUE = 4096
MAX_WASM = 64 << 20

_STEP = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\Z")
_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}\Z")

# Runs the steps inside the sandbox: $1 is the config folder, then the steps.
_STEPS = r"""
dir=$1; shift
for step do
    echo "tau build: step $step"
    /bin/sh "/src/$dir/$step.sh" || { rc=$?; echo "tau build: step $step failed with status $rc"; exit $rc; }
done
"""


class BuildConfigError(ValueError):
    """
    A repository's build configuration is wrong: what and where.
    """


@dataclass(frozen=True)
class BuildConfig:
    """
    A read C{config.yaml}: C{folder} (C{.taubyte} or C{taubyte}), C{image},
    C{variables} (name -> text), C{workflow} (step names).
    """

    folder: str
    version: str
    image: str
    variables: dict
    workflow: tuple


@dataclass(frozen=True)
class BuildResult:
    """
    A build's end.

    @ivar failure: None when it succeeded, else why not (a sentence).
    @ivar log: the build's log (tau's lines and the steps' output, bounded).
    @ivar wasm: the module built (bytes), for functions and libraries.
    @ivar folder: the host folder of the built tree, for websites.
    @ivar imports: the module's imports (L{tau.build.imports.moduleImports}).
    """

    failure: str | None
    log: bytes
    wasm: bytes | None = None
    folder: str | None = None
    imports: tuple = ()

    @property
    def ok(self):
        return self.failure is None


def _text(value, where):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise BuildConfigError(f"{where} must be text, not {type(value).__name__}")


def readConfig(root):
    """
    The L{BuildConfig} of folder C{root} (blocking: call it from a worker
    thread).

    @raise BuildConfigError: no config folder, a config that is not YAML,
        or is not shaped as Taubyte's, a step without its script, or a
        custom image (C{Docker/}), which needs docker.
    """
    for folder in CONFIG_DIRS:
        if os.path.isdir(os.path.join(root, folder)) and not os.path.islink(os.path.join(root, folder)):
            break
    else:
        raise BuildConfigError("no .taubyte folder (nor taubyte) at the top of the repository")
    path = os.path.join(root, folder, CONFIG_FILE)
    where = f"{folder}/{CONFIG_FILE}"
    if os.path.isdir(os.path.join(root, folder, "Docker")):
        raise BuildConfigError(f"{folder}/Docker: custom build images need docker, which tau does not use")
    try:
        # a link could point anywhere on the host: the config is read only
        # when it is a plain file
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        raise BuildConfigError(f"{where} is missing") from None
    except OSError:
        raise BuildConfigError(f"{where} must be a plain file") from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise BuildConfigError(f"{where} must be a plain file")
        raw = f.read(MAX_CONFIG + 1)
    if len(raw) > MAX_CONFIG:
        raise BuildConfigError(f"{where} is larger than {MAX_CONFIG} bytes")
    try:
        config = yaml.safe_load(raw)
    except yaml.YAMLError as e:
        raise BuildConfigError(f"{where} is not valid YAML: {e}") from None
    if not isinstance(config, dict):
        raise BuildConfigError(f"{where} must be a mapping with environment and workflow")
    environment = config.get("environment")
    if environment is None:
        environment = config.get("enviroment")
    if not isinstance(environment, dict):
        raise BuildConfigError(f"{where}: environment must be a mapping with image and variables")
    image = environment.get("image")
    if not isinstance(image, str) or not image.strip():
        raise BuildConfigError(f"{where}: environment.image must name an image")
    variables = environment.get("variables") or {}
    if not isinstance(variables, dict):
        raise BuildConfigError(f"{where}: environment.variables must be a mapping")
    if len(variables) > MAX_VARIABLES:
        raise BuildConfigError(f"{where}: more than {MAX_VARIABLES} variables")
    checked = {}
    for name, value in variables.items():
        if not isinstance(name, str) or not _VARIABLE.match(name):
            raise BuildConfigError(f"{where}: {name!r} is not a variable name")
        text = "" if value is None else _text(value, f"{where}: variable {name}")
        if len(text) > MAX_VALUE or "\0" in text:
            raise BuildConfigError(f"{where}: variable {name} is longer than {MAX_VALUE} characters or holds NUL")
        checked[name] = text
    workflow = config.get("workflow")
    if not isinstance(workflow, list) or not workflow:
        raise BuildConfigError(f"{where}: workflow must list the steps to run")
    if len(workflow) > MAX_STEPS:
        raise BuildConfigError(f"{where}: more than {MAX_STEPS} steps")
    for step in workflow:
        if not isinstance(step, str) or not _STEP.match(step) or step in (".", ".."):
            raise BuildConfigError(f"{where}: {step!r} is not a step name")
        if not os.path.isfile(os.path.join(root, folder, step + ".sh")):
            raise BuildConfigError(f"{where}: step {step} has no script {folder}/{step}.sh")
    version = "" if config.get("version") is None else _text(config.get("version"), f"{where}: version")
    return BuildConfig(folder, version, image.strip(), checked, tuple(workflow))


class Builder:
    """
    Builds a checked-out folder by its C{.taubyte/} convention.

    @param reactor: for worker threads.
    @param sandbox: a L{tau.build.sandbox.Sandbox}; where it cannot run,
        every build fails saying why (a service should call its C{check}
        when it starts, and take no job when it fails).
    @param limits: the sandbox's L{Limits} for each build.
    """

    def __init__(self, reactor, sandbox, limits=Limits()):
        self.reactor = reactor
        self.sandbox = sandbox
        self.limits = limits

    def _inThread(self, f, *args):
        return deferToThreadPool(self.reactor, self.reactor.getThreadPool(), f, *args)

    async def buildWasm(self, root, libraries=()):
        """
        Build a function or library in C{root}: a L{BuildResult} with the
        module, checked to import only the host ABI and C{libraries}.
        """
        result, lines, work = await self._run(root)
        try:
            if result is not None:
                return result
            out = os.path.join(work, "out")
            wasm = await self._inThread(_readWasm, out)
            if isinstance(wasm, str):
                return self._end(lines, wasm)
            try:
                imports = await self._inThread(checkImports, wasm, tuple(libraries))
            except ForeignImport as e:
                return self._end(lines, f"refused: {e}")
            lines.append(f"tau build: {len(wasm)} bytes of WebAssembly, imports checked ({len(imports)})".encode())
            return BuildResult(None, b"\n".join(lines) + b"\n", wasm=wasm, imports=tuple(imports))
        finally:
            await self._inThread(shutil.rmtree, work, True)

    async def buildWebsite(self, root, outDir):
        """
        Build a website in C{root}: a L{BuildResult} whose C{folder} is
        C{outDir} (a new host folder) holding the built tree, for
        L{tau.build.website.addWebsite}.
        """
        result, lines, work = await self._run(root)
        try:
            if result is not None:
                return result
            out = os.path.join(work, "out")
            if not await self._inThread(os.listdir, out):
                return self._end(lines, "the build left /out empty")
            await self._inThread(shutil.move, out, outDir)
            return BuildResult(None, b"\n".join(lines) + b"\n", folder=outDir)
        finally:
            await self._inThread(shutil.rmtree, work, True)

    def _end(self, lines, failure):
        lines.append(f"tau build: failed: {failure}".encode())
        return BuildResult(failure, b"\n".join(lines) + b"\n")

    async def _run(self, root):
        """
        Read the config and run the workflow: C{(None, log lines, work
        folder)} when the steps succeeded (the tree in C{work/out}), else
        C{(failed BuildResult, ...)}.
        """
        work = await self._inThread(tempfile.mkdtemp, "", "tau-build-")
        lines = []
        try:
            config = await self._inThread(readConfig, root)
            lines.append(f"tau build: config={config.folder}/{CONFIG_FILE} image={config.image}"
                         f" workflow={list(config.workflow)}".encode())
            toolchain = toolchains.toolchainFor(config.image)
        except (BuildConfigError, toolchains.UnknownImage) as e:
            return self._end(lines, str(e)), lines, work
        utils = await self._inThread(toolchains.writeUtils, toolchain, os.path.join(work, "utils"))
        env = {**toolchain.env, "SRC": "/src", "OUT": "/out", **config.variables}
        try:
            ran = await self.sandbox.run(["/bin/sh", "-c", _STEPS, "tau-build", config.folder, *config.workflow],
                                         source=root, outDir=os.path.join(work, "out"), env=env,
                                         limits=self.limits, files={"/utils/wasm.sh": os.path.join(utils, "wasm.sh")})
        except SandboxUnavailable as e:
            return self._end(lines, str(e)), lines, work
        lines.append(ran.log.rstrip(b"\n"))
        if not ran.ok:
            return self._end(lines, ran.failure), lines, work
        lines.append(f"tau build: workflow done in {ran.elapsed:.2f} s".encode())
        return None, lines, work


def _readWasm(out):
    """
    The bytes of C{out/main.wasm} (or C{out/artifact.wasm}), or a sentence
    saying why there are none.
    """
    for name in WASM_OUTPUTS:
        path = os.path.join(out, name)
        if os.path.isfile(path):
            if os.path.getsize(path) > MAX_WASM:
                return f"/out/{name} is larger than {MAX_WASM} bytes"
            with open(path, "rb") as f:
                return f.read()
    return "the build left neither /out/main.wasm nor /out/artifact.wasm"
