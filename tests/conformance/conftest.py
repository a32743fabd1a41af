"""Conformance set-up: the official SDKs (installed once into ``.cache/peers``)
run as subprocess workers against the reference engine.

Fixtures:

``peers``   session: installs (or finds) iii-sdk 0.19.7 and 0.25.0 from PyPI and
            iii-sdk 0.22.1 from npm. When they cannot be installed (no network,
            registry unreachable, node or npm missing) every test that needs them
            is skipped and one line says why; ``III_REQUIRE_PEERS=1`` makes that
            a failure with the installer's whole message instead.
``sdks``    session: ``{"py-0.19.7": Sdk, "py-0.25.0": Sdk, "node-0.22.1": Sdk}``.
``spawn``   function: ``spawn(sdk_id, url, name, **kw) -> PeerAgent``; agents are
            shut down at teardown.
``pair``    module, parametrized over the three SDKs: a reference engine
            (``EngineThread``, ``lenient_frames=True``) with two workers of that
            SDK, ``a`` and ``b``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from iii.testing import EngineThread

from ._harness import PEERS_DIR, SDK_IDS, PeerAgent, Sdk
from ._install import CACHE, PeerInstallError, Peers, ensure_peers

_INSTALLED: dict[str, Any] = {}
#: Set (to anything but "" or "0") where the peers must be there, e.g. a CI with network.
REQUIRE = os.environ.get("III_REQUIRE_PEERS", "") not in ("", "0")


def _install() -> None:
    if _INSTALLED:
        return
    try:
        _INSTALLED["peers"] = ensure_peers()
    except PeerInstallError as exc:
        _INSTALLED["error"] = exc


def _skip_reason(error: BaseException) -> str:
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return f"the official SDKs could not be installed ({first})"


def pytest_collection_finish(session: pytest.Session) -> None:
    """Install the peers once collection is over, outside any test: a cold install
    (PyPI + npm) must not count against the first test's timeout."""
    needing = [item for item in session.items if "peers" in getattr(item, "fixturenames", ())]
    if not needing:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and not all(
        (CACHE / name / ".installed").exists() for name in ("py-0.19.7", "py-0.25.0", "node")
    ):
        reporter.write_line(f"conformance: installing the official SDKs into {CACHE} ...")
    _install()
    error = _INSTALLED.get("error")
    if error is None or REQUIRE:
        return
    reason = _skip_reason(error)
    for item in needing:
        item.add_marker(pytest.mark.skip(reason=reason))
    if reporter is not None:
        reporter.write_line(
            f"conformance: skipping {len(needing)} tests: {reason}; "
            "III_REQUIRE_PEERS=1 makes this an error"
        )


@pytest.fixture(scope="session")
def peers() -> Peers:
    _install()
    error = _INSTALLED.get("error")
    if error is not None:
        if not REQUIRE:
            pytest.skip(_skip_reason(error))
        pytest.fail(f"installing the official SDKs failed:\n{error}", pytrace=False)
    installed: Peers = _INSTALLED["peers"]
    return installed


@pytest.fixture(scope="session")
def sdks(peers: Peers) -> dict[str, Sdk]:
    out: dict[str, Sdk] = {}
    for version, python in peers.python.items():
        out[f"py-{version}"] = Sdk(
            id=f"py-{version}",
            kind="python",
            version=version,
            executable=python,
            script=PEERS_DIR / "py_agent.py",
        )
    out[f"node-{peers.node_version}"] = Sdk(
        id=f"node-{peers.node_version}",
        kind="node",
        version=peers.node_version,
        executable=peers.node,
        script=PEERS_DIR / "node_agent.mjs",
        env=(("III_NODE_PEER_ROOT", str(peers.node_root)),),
    )
    assert set(out) == set(SDK_IDS), out
    return out


@pytest.fixture(scope="session")
def peer_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """HOME (and cwd) of every peer: 0.25 writes ``~/.iii/run`` markers there."""
    return tmp_path_factory.mktemp("peer-home")


class AgentPool:
    """Starts agents and shuts them all down at the end."""

    def __init__(self, sdks: dict[str, Sdk], home: Path, logs: Path) -> None:
        self.sdks = sdks
        self.home = home
        self.logs = logs
        self.agents: list[PeerAgent] = []

    def __call__(
        self,
        sdk_id: str,
        url: str,
        name: str,
        *,
        engine: EngineThread | None = None,
        **kwargs: Any,
    ) -> PeerAgent:
        """Start a worker of ``sdk_id``; with ``engine``, wait until it announced."""
        agent = PeerAgent(self.sdks[sdk_id], url, name, home=self.home, log_dir=self.logs, **kwargs)
        self.agents.append(agent)
        if engine is not None:
            agent.info = engine.wait_for_worker(name, timeout=30)
        return agent

    def close(self) -> None:
        while self.agents:
            self.agents.pop().close()


@pytest.fixture
def spawn(
    sdks: dict[str, Sdk], peer_home: Path, tmp_path: Path
) -> Iterator[Callable[..., PeerAgent]]:
    pool = AgentPool(sdks, peer_home, tmp_path / "peer-logs")
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture(scope="module", params=SDK_IDS)
def sdk(request: pytest.FixtureRequest, sdks: dict[str, Sdk]) -> Sdk:
    return sdks[request.param]


@dataclass
class Pair:
    """A reference engine and two workers of one official SDK."""

    sdk: Sdk
    engine: EngineThread
    a: PeerAgent
    b: PeerAgent

    @property
    def url(self) -> str:
        return self.engine.url


@pytest.fixture(scope="module")
def pair(
    sdk: Sdk,
    sdks: dict[str, Sdk],
    peer_home: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Pair]:
    # Lenient: the official SDKs omit ``invokefunction.data`` for a None payload
    # and ``registertrigger.config`` without a config, frames the real engine (and
    # ours by default) drops; the tests here check everything else they do.
    # ``test_official_sdks.test_strict_engine_*`` runs them on the strict default.
    engine = EngineThread(lenient_frames=True).start()
    pool = AgentPool(sdks, peer_home, tmp_path_factory.mktemp(f"logs-{sdk.id}"))
    try:
        a = pool(sdk.id, engine.url, f"{sdk.id}-A")
        b = pool(sdk.id, engine.url, f"{sdk.id}-B")
        for agent in (a, b):
            agent.info = engine.wait_for_worker(agent.name, timeout=30)
        yield Pair(sdk, engine, a, b)
    finally:
        pool.close()
        engine.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """On a failure, attach what the peers logged (and the ``pair`` engine's
    transcript tail; the ``iii_engine`` fixtures attach their own)."""
    report = yield
    if report.failed and report.when == "call":
        funcargs = getattr(item, "funcargs", {})
        agents: list[PeerAgent] = []
        pair = funcargs.get("pair")
        if isinstance(pair, Pair):
            agents += [pair.a, pair.b]
            try:
                tail = pair.engine.transcript_jsonl().splitlines()[-100:]
                report.sections.append(("pair engine transcript (tail)", "\n".join(tail)))
            except Exception:  # the engine may be gone
                pass
        pool = funcargs.get("spawn")
        if isinstance(pool, AgentPool):
            agents += pool.agents
        for agent in agents:
            report.sections.append(
                (f"peer {agent.name} ({agent.sdk.id}) stderr (tail)", agent.stderr_tail())
            )
    return report
