"""The engine: storage, the model and the pipeline, wired once per process."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from taleweaver.auth import Accounts, AuditLog, Credentials
from taleweaver.auth.secret_store import SecretStore
from taleweaver.characters import Characters, CharacterSource
from taleweaver.config import Settings
from taleweaver.domain.crisis import CrisisProtocol
from taleweaver.domain.errors import ModelLoading
from taleweaver.domain.jobs import Artifact
from taleweaver.domain.pipeline import NoContinuityCheck, NoExtraction
from taleweaver.domain.sessions import SessionKind
from taleweaver.engine.encryption import key_ring_from_settings
from taleweaver.engine.export import JsonExportImporter, builtin_exporters
from taleweaver.engine.file_assist import FileAssistant
from taleweaver.engine.flags import WorkspaceFlags
from taleweaver.engine.formats import Formats
from taleweaver.engine.jobs import job_service, register_engine_jobs
from taleweaver.engine.kinds import KindSpec
from taleweaver.engine.live import LiveSessions
from taleweaver.engine.models import model_overrides, router_from_settings
from taleweaver.engine.pipeline import Capabilities
from taleweaver.engine.plugin_wiring import PluginGate, wire_plugins
from taleweaver.engine.prefill import Prefills
from taleweaver.engine.session_lorebooks import SessionLorebooks
from taleweaver.engine.sessions import Sessions
from taleweaver.engine.turns import TurnRunner
from taleweaver.files import FileSessions, FileSource
from taleweaver.llm import Budgets, ChatModel, ModelRouter, UsageLedger
from taleweaver.llm.base import Warmable
from taleweaver.llm.tokens import token_counter
from taleweaver.memory.lorebook import Lorebooks, LorebookSource
from taleweaver.memory.summaries import Summaries, SummarySource, SummaryStore
from taleweaver.memory.world import WorldMemory
from taleweaver.plugins import BuiltIn, Plugins, load_plugins
from taleweaver.plugins.providers import register_providers
from taleweaver.realtime import hub_for
from taleweaver.safety import AllowAll
from taleweaver.safety.service import SafetyService
from taleweaver.safety.webhooks import Webhooks
from taleweaver.store import migrate
from taleweaver.store.database import Database, sqlite_url
from taleweaver.store.events import EventStore
from taleweaver.store.queries import Queries
from taleweaver.store.repository import SessionRepository
from taleweaver.store.sealing import Sealer
from taleweaver.studio import Studio
from taleweaver.terminals import Terminals
from taleweaver.therapy import TherapyService, TherapySource, therapy_prompt

if TYPE_CHECKING:
    from taleweaver.engine.interop import Interop

log = logging.getLogger(__name__)


def database_from_settings(settings: Settings) -> Database:
    url = settings.database_url
    if url is None:
        # It holds the database and the key file: its owner's alone (doctor checks).
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        url = sqlite_url(settings.data_dir)
    return Database(url)


class Engine:
    def __init__(
        self,
        db: Database,
        caps: Capabilities,
        repository: SessionRepository,
        *,
        usage: UsageLedger | None = None,
        budgets: Budgets | None = None,
        settings: Settings | None = None,
        plugins: Plugins | None = None,
    ) -> None:
        self.db = db
        # Installed plugins (`Engine.open` loads them; none for an engine built by hand).
        self.plugins = plugins or Plugins()
        # The process's settings (defaults when a caller built the engine by hand).
        self.settings = settings or Settings()
        self.caps = caps
        self.repository = repository
        self.usage = usage or UsageLedger(db)
        self.budgets = budgets
        self.audit = AuditLog(db)
        # Encryption at rest: sensitive workspaces' content and every secret.
        self.sealer = repository.store.sealer
        self.secrets = SecretStore(db, self.sealer.keys if self.sealer else None, self.audit)
        self.accounts = Accounts(
            db, self.audit, sensitivity_changed=self.sealer.forget if self.sealer else None
        )
        self.credentials = Credentials(db, self.audit)
        self.sessions = Sessions(repository, caps.queries)
        # Export and import formats: the built-in ones and those plugins add.
        self.formats = Formats()
        self._wire_features()
        # A plugin is on in every workspace unless its flag `plugin:<name>` is off there.
        self.flags = WorkspaceFlags(db, self.audit, self.plugins.loaded)
        # Background jobs: run once the server starts them (`jobs.start()`).
        self.jobs = job_service(db, self.settings)
        register_engine_jobs(self)
        self.turns = TurnRunner(repository, caps, flags=self.flags.read)
        # A file's assistant: its instructions run as turns that propose diffs.
        self.file_assistant = FileAssistant(self.files, self.sessions, self.turns)
        # Live channels: in-process, or across replicas through Redis when configured.
        self.live = LiveSessions(
            repository,
            self.turns,
            hub_for(self.settings.redis_url, self.settings.redis_key_prefix),
            poll_s=self.settings.live_poll_seconds,
        )
        self._warming: asyncio.Task[None] | None = None
        # A new session's prompt read ahead by a local narrator, while its greeting is.
        self.prefills = Prefills(caps, repository)
        self.plugins.add_builtin("engine", self._builtin())
        self.plugin_gate = PluginGate(self.flags)
        wire_plugins(self, self.plugin_gate)

    def _builtin(self) -> BuiltIn:
        """The engine's own features, wired through the hooks as a plugin's are."""
        characters = CharacterSource(self.characters)
        return BuiltIn(
            # Therapy brings its session kind: its narrator's prompt, options tagged by type.
            kinds={
                SessionKind.THERAPY: KindSpec(
                    therapy_prompt, with_choices=True, tagged_choices=True
                )
            },
            sources=[
                FileSource(self.files),
                self.world.recall,
                LorebookSource(self.lorebooks, speaker=characters.speaker),
                characters,
                self.safety.source,
                TherapySource(self.therapy),
                SummarySource(self.summaries, history_messages=self.caps.history_messages),
            ],
            detectors=[self.safety.output_rules],
            exporter_formats=builtin_exporters(),
            importer_formats={"taleweaver-json": JsonExportImporter()},
            listeners=[self.prefills.committed],
        )

    def _wire_features(self) -> None:
        """Build each feature's services and plug its hooks into the pipeline's
        capabilities: sources for recall, the extractor, continuity and safety.

        A capability a caller set itself (tests do) is left as it is.
        """
        caps = self.caps
        self.world = WorldMemory(self.db, self.repository.store, caps.model)
        # Lorebook budgets are counted by the narrator's own tokenizer where it has one.
        counter = token_counter(lambda: self.caps.model)
        self.lorebooks = Lorebooks(self.db, self.audit, count_tokens=counter)
        self.characters = Characters(
            self.db,
            self.repository,
            audit=self.audit,
            users=self.accounts,
            lorebooks=self.lorebooks,
            settings_check=self.sessions.check_settings,
        )
        self.sessions.settings_checks.append(self.lorebooks.check_listed)
        self.session_lorebooks = SessionLorebooks(self.sessions, self.lorebooks)
        self.safety = SafetyService(
            self.db,
            self.audit,
            caps.model,
            model_routed=bool(self.settings.routes.safety),
            webhooks=Webhooks(self.db, keys=self.sealer.keys if self.sealer else None),
        )
        self.sessions.fork_hooks.append(self.safety.carry_pause)
        # The studio's blueprints fill a world's content rules with the table's lines and veils.
        self.studio = Studio(
            self.db, self.repository.store, bible=self.world.bible, content=self.safety.content
        )
        # Terminal and file-editor sessions (issue #20), in each workspace's folder.
        self.terminals = Terminals(self.db, self.repository.store, self.settings)
        self.files = FileSessions(self.db, self.repository.store, self.settings)
        # The therapy layer raises crises (a positive PHQ-9 item 9) through safety's protocol.
        self.crisis: CrisisProtocol = self.safety.crisis
        self.therapy = TherapyService(
            self.db, self.repository.store, caps.queries, self.audit, self.crisis
        )
        self.summaries = Summaries(
            SummaryStore(self.db, self.sealer),
            caps.queries,
            lambda: self.caps.model,
            model_choices=self._session_models,
        )
        if isinstance(caps.extractor, NoExtraction):
            caps.extractor = self.world.extractor
        if isinstance(caps.continuity, NoContinuityCheck):
            caps.continuity = self.world.continuity
        if isinstance(caps.safety, AllowAll):
            caps.safety = self.safety.checker

    @functools.cached_property
    def interop(self) -> Interop:
        """Chat imports, exports and bundles, built on first use: their formats are
        modules that a command which neither imports nor exports never loads."""
        from taleweaver.engine.interop import Interop

        return Interop(
            self.sessions,
            self.repository.store,
            self.characters,
            self.lorebooks,
            formats=self.formats,
            plugin_check=self.plugin_gate.require,
        )

    async def _session_models(self, workspace_id: str, session_id: str) -> dict[str, str]:
        state = await self.repository.open(workspace_id, session_id)
        return model_overrides(state.settings)

    @property
    def model(self) -> ChatModel:
        return self.caps.model

    @property
    def router(self) -> ModelRouter | None:
        """The model router, unless a bare model was put in its place (tests do)."""
        model = self.caps.model
        return model if isinstance(model, ModelRouter) else None

    def describe_models(self) -> dict[str, Any]:
        """The configured models, their prices and each task's chain of models (a bare
        model put in the router's place, as tests do, is shown as a router of one)."""
        return (self.router or ModelRouter.single(self.model)).describe()

    async def seals(self, workspace_id: str) -> bool:
        """Whether the workspace's content is sealed at rest (it is sensitive and keys
        are configured)."""
        if self.sealer is None:
            return False
        async with self.db.read() as conn:
            return await self.sealer.sensitive(conn, workspace_id)

    async def job_file(self, workspace_id: str, job_id: str) -> Artifact:
        """The file a finished job made, opened if it was kept sealed."""
        artifact = await self.jobs.artifact(workspace_id, job_id)
        if self.sealer is None:
            return artifact
        opened = self.sealer.open_file(workspace_id, job_id, artifact.data)
        return Artifact(opened, artifact.media_type, artifact.filename)

    @classmethod
    async def open(
        cls,
        settings: Settings,
        *,
        model: ChatModel | None = None,
        caps: Capabilities | None = None,
        database: Database | None = None,
        plugins: Plugins | None = None,
    ) -> Engine:
        """Connect, migrate when allowed, and build the pipeline's capabilities.

        `plugins`: those installed (the entry-point group) unless given.
        """
        if plugins is None:
            plugins = load_plugins(settings.required_plugins)
        if model is None and caps is None:  # the router is built from the settings
            register_providers(plugins)  # process-wide: before the router is built
        db = database or database_from_settings(settings)
        try:
            return await cls._assemble(settings, db, model=model, caps=caps, plugins=plugins)
        except BaseException:
            if database is None:  # made here: nobody else will close it
                await db.dispose()
            raise

    @classmethod
    async def _assemble(
        cls,
        settings: Settings,
        db: Database,
        *,
        model: ChatModel | None,
        caps: Capabilities | None,
        plugins: Plugins,
    ) -> Engine:
        if settings.auto_migrate:
            await migrate.upgrade_if_behind(db.engine)
        sealer = Sealer(key_ring_from_settings(settings, db.dialect)[0])
        queries = Queries(db, sealer)
        repository = SessionRepository(EventStore(db, sealer=sealer), queries)
        ledger = UsageLedger(db)
        if caps is None:
            caps = Capabilities(
                model=router_from_settings(settings, ledger, model=model),
                queries=queries,
                max_reply_tokens=settings.max_reply_tokens,
                history_messages=settings.history_messages,
            )
        else:
            caps = replace(caps, queries=queries)
        budgets = Budgets(settings.budgets, ledger)
        engine = cls(
            db,
            caps,
            repository,
            usage=ledger,
            budgets=budgets,
            settings=settings,
            plugins=plugins,
        )
        if settings.auto_migrate:
            await engine.accounts.ensure_local_user()
        return engine

    def warm_up(self) -> asyncio.Task[None]:
        """Start loading local models in the background (the server does at start-up),
        so that no turn pays the load; `/readyz` says "loading" until they are in.
        Stored lorebooks are prepared in the background too, for the same reason."""
        if self._warming is None:
            self.lorebooks.warm()
            self.world.warm()
            model = self.caps.model
            warm = model.warm if isinstance(model, ModelRouter | Warmable) else None
            self._warming = asyncio.create_task(_warm(warm), name="warm models")
        return self._warming

    async def readiness(self) -> dict[str, dict[str, object]]:
        """Each component's state, for /readyz."""
        report: dict[str, dict[str, object]] = {}
        started = time.perf_counter()
        try:
            await self.db.ping()
            report["database"] = {
                "status": "ok",
                "backend": self.db.dialect,
                "latency_ms": round((time.perf_counter() - started) * 1000, 2),
            }
        except Exception as exc:  # any driver failure means "not ready", reported as such
            report["database"] = {"status": "error", "detail": type(exc).__name__}
        report["model"] = await self.model_readiness()
        report["world_vectors"] = await self.world.vector_state()
        return report

    async def model_health(self) -> dict[str, dict[str, object]]:
        """Each model provider's state (a bare model stands as a provider of its own)."""
        if self.router is not None:
            return await self.router.health()
        started = time.perf_counter()
        state: dict[str, object] = {"kind": "direct", "models": [self.model.name]}
        try:
            await self.model.check()
            state["status"] = "ok"
        except ModelLoading as exc:
            state |= {"status": "loading", "detail": exc.detail}
        except Exception as exc:  # reported, never raised
            state |= {"status": "error", "detail": getattr(exc, "detail", type(exc).__name__)}
        state["latency_ms"] = round((time.perf_counter() - started) * 1000, 2)
        return {self.model.name: state}

    async def model_readiness(self) -> dict[str, object]:
        """Ready when every task has a model whose provider answers."""
        providers = await self.model_health()
        if self.router is not None:
            problem = self.router.unserved(providers)
        else:
            problem = next(
                (str(p.get("detail")) for p in providers.values() if p["status"] != "ok"), None
            )
        loading = any(p.get("status") == "loading" for p in providers.values())
        report: dict[str, object] = {
            "status": "ok" if problem is None else "loading" if loading else "error",
            "name": self.model.name,
            "providers": providers,
        }
        if problem is not None:
            report["detail"] = problem
        return report

    async def close(self) -> None:
        if self._warming is not None:
            self._warming.cancel()  # a load under way finishes in its thread, unused
        await self.lorebooks.aclose()  # lorebook builds under way are dropped
        await self.jobs.close()  # runs under way are queued again for the next start
        await self.prefills.aclose()
        await self.summaries.aclose()
        await self.turns.shutdown()
        await self.live.close()
        await self.terminals.aclose()  # each one's end recorded while the store is open
        await self.safety.aclose()  # crisis webhooks in flight get a few seconds
        await self.world.aclose()
        await self.model.aclose()
        await self.usage.flush()
        await self.db.dispose()


async def _warm(warm: Callable[[], Awaitable[None]] | None) -> None:
    if warm is None:
        return
    try:
        await warm()
    except Exception as exc:  # the model's check reports it; a turn gets the error
        log.warning("loading the model failed: %s", getattr(exc, "detail", exc))
