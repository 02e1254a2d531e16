"""The catalog: one database row per experiment and per trial, so a dashboard opens a thousand
trials with one query instead of a thousand JSON files.

Any SQLAlchemy URL works (PostgreSQL for a team); the default is the SQLite file
`<root>/lico-tune.db` for a local root and `~/.cache/lico-tune/catalog/<root hash>.db` for a cloud
root (SQLite cannot live in a bucket). Tables are prefixed `lico_`, so the catalog can share its
database with Optuna's studies (`search.optuna_storage: sqlite:///<root>/lico-tune.db`).

Kept current three ways: the Tune callback (`lico_tune.tune.callbacks`) writes trials as they
report and finish; `sync` re-reads experiments whose files changed since they were indexed (a
fingerprint per experiment); `lico-tune index ROOT` rebuilds everything from storage.
"""
from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Iterable, Optional

from sqlalchemy import (JSON, Boolean, Column, Float, Integer, MetaData, String, Table, Text, create_engine,
                        delete, event, func, insert, select)

from ..layout import CATALOG_FILE, RUN_FILE, cache_path
from .liveness import driver_state
from .scan import find_experiments, fingerprint, scan_experiment
from ..errors import BadInput
from ..storage.safe_files import UnsafeFile, check_regular_or_missing
from ..storage import Storage, basename, is_uri, normalise_root

ENV_URL = "LICO_TUNE_CATALOG"

metadata = MetaData()
experiments_table = Table(
    "lico_experiments", metadata,
    Column("root", String(1024), primary_key=True),
    Column("experiment", String(512), primary_key=True),
    Column("path", Text), Column("spec", JSON), Column("metrics", JSON), Column("arms", JSON),
    Column("created", String(64)), Column("smoke", Boolean), Column("optuna_storage", Text),
    Column("lico_tune_version", String(64)), Column("git_sha", String(64)),
    Column("state_file", String(256)), Column("n_trials", Integer), Column("status_counts", JSON),
    Column("n_planned", Integer), Column("run_state", String(32)), Column("run_note", Text),
    Column("fingerprint", String(64)), Column("warnings", JSON), Column("updated", Float),
    Column("live", Float),   # heartbeat of a running sweep's callback; None once it ended
)
trials_table = Table(
    "lico_trials", metadata,
    Column("root", String(1024), primary_key=True),
    Column("experiment", String(512), primary_key=True),
    Column("trial_id", String(256), primary_key=True),
    Column("trial_dir", String(512)), Column("path", Text), Column("arm", String(256)),
    Column("dataset", String(256)), Column("seed", JSON), Column("status", String(32)),
    Column("error", Text), Column("error_detail", Text), Column("params", JSON), Column("final", JSON),
    Column("best", JSON), Column("n_epochs", Integer), Column("checkpoint", Text), Column("gallery", Text),
    Column("spec", Text), Column("provenance", JSON), Column("warnings", JSON), Column("damaged", Boolean),
    Column("health", JSON), Column("usable", Boolean), Column("history", JSON), Column("updated", Float),
)
EXPERIMENT_COLUMNS = [c.name for c in experiments_table.columns if c.name not in ("root", "updated")]
LIVE_S = 600   # a sweep whose callback wrote within this many seconds is live: `sync` leaves it alone
TRIAL_COLUMNS = [c.name for c in trials_table.columns if c.name not in ("root", "updated")]
LIGHT_TRIAL_COLUMNS = [c for c in TRIAL_COLUMNS if c not in ("history", "error_detail", "spec")]


def default_url(root: str, build: bool = False) -> str:
    """$LICO_TUNE_CATALOG, else SQLite at the root when the root is the user's own (see
    `catalog_in_root`), else in the user cache ~/.cache/lico-tune/catalog/<hash of root>.db
    (cloud roots, read-only roots, other people's roots, roots without an experiment)."""
    if os.environ.get(ENV_URL):
        return os.environ[ENV_URL]
    root = normalise_root(root)
    if not is_uri(root) and catalog_in_root(Path(root), build):
        path = Path(root) / CATALOG_FILE
    else:
        key = hashlib.sha1(root.encode()).hexdigest()[:16]
        path = cache_path("catalog", f"{key}.db")
    return f"sqlite:///{path}"


def catalog_in_root(root: Path, build: bool = False) -> bool:
    """Where the catalog of a local root lives. Readers (`report`, the dashboard) use the root's own
    catalog only when it is already there and writable; they never create one in a root they were
    only asked to read. Builders (`run`'s callback, `lico-tune index`: `build`) create it in the root
    when the root is a writable directory owned by this user that holds a lico-tune experiment.
    Everything else (read-only roots, other people's roots, roots without an experiment) gets its
    catalog in the user cache, and the root stays untouched."""
    own = root / CATALOG_FILE
    if own.is_file():
        return os.access(own, os.W_OK) and os.access(root, os.W_OK)
    try:
        mine = root.is_dir() and root.stat().st_uid == os.getuid() and os.access(root, os.W_OK)
    except OSError:
        return False
    if not mine or not build:
        return False
    try:
        return any((d / RUN_FILE).is_file() for d in root.iterdir() if d.is_dir()) or (root / RUN_FILE).is_file()
    except OSError:
        return False


def check_url(url: str, what: str = "--db") -> None:
    """A catalog URL SQLAlchemy can open, whose SQLite file (if any) is absent or a regular file
    that is not a symlink (sqlite would add its tables to whatever it points to); BadInput otherwise.
    Checked before sqlalchemy opens it, for --db, $LICO_TUNE_CATALOG and the default file alike."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError
    if "://" not in url and os.path.isdir(os.path.expanduser(url)):
        raise BadInput(f"{what} {url} is a directory, not a database URL. Pass a SQLAlchemy URL, e.g. "
                       f"--db sqlite:///{os.path.abspath(os.path.expanduser(url))}/{CATALOG_FILE}.")
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise BadInput(f"{what} {url!r} is not a database URL ({str(exc).splitlines()[0]}). Pass a SQLAlchemy URL, "
                       f"e.g. --db sqlite:////abs/path/catalog.db or --db postgresql://user@host/db.") from None
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        path = Path(parsed.database).expanduser()
        if path.is_dir() and not path.is_symlink():
            raise BadInput(f"{what} {url}: {path} is a directory, not a database file. Pass a file path, e.g. "
                           f"sqlite:///{path / CATALOG_FILE}.")
        check_regular_or_missing(str(path), what if what == "the catalog" else f"the catalog ({what})")


class Catalog:
    """The catalog of one results root inside a database (which may hold several roots)."""

    def __init__(self, root: str, url: Optional[str] = None, create: bool = True, build: bool = False):
        self.root = normalise_root(root)
        self.url = url or default_url(self.root, build)
        check_url(self.url, "--db" if url else f"${ENV_URL}" if os.environ.get(ENV_URL) else "the catalog")
        if self.url.startswith("sqlite:///") and create:
            Path(self.url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        kwargs = {"connect_args": {"timeout": 30}} if self.url.startswith("sqlite") else {}
        self.engine = create_engine(self.url, **kwargs)
        if self.url.startswith("sqlite"):
            @event.listens_for(self.engine, "connect")
            def _wal(dbapi_conn, _record):  # readers (the dashboard) never block the writer (a sweep)
                try:
                    dbapi_conn.execute("PRAGMA journal_mode=WAL")
                except Exception:  # a read-only file: reading still works
                    pass
        if create:
            self._migrate()
            self._create_tables()

    def _create_tables(self) -> None:
        """create_all looks, then creates, table by table: processes opening a new catalog at once
        (concurrent `index` runs, sweeps) can both see no table, and the later CREATE fails while
        the other process may still be creating the next table. Looking again creates only what is
        still missing; when the last look finds every table, the catalog is what this one wanted."""
        from sqlalchemy import exc
        for attempt in range(5):
            try:
                metadata.create_all(self.engine)
                return
            except (exc.OperationalError, exc.ProgrammingError):
                if attempt == 4:
                    raise
                time.sleep(0.05 * (attempt + 1))

    def _migrate(self) -> None:
        """The catalog is a cache of the files: tables from an older lico-tune (other columns) are
        dropped and rebuilt (the next sync re-reads every experiment)."""
        from sqlalchemy import inspect
        insp = inspect(self.engine)
        for table in (trials_table, experiments_table):
            if insp.has_table(table.name):
                have = {c["name"] for c in insp.get_columns(table.name)}
                if have != {c.name for c in table.columns}:
                    metadata.drop_all(self.engine, tables=[trials_table, experiments_table])
                    return

    @property
    def sqlite_file(self) -> Optional[Path]:
        return Path(self.url.removeprefix("sqlite:///")) if self.url.startswith("sqlite:///") else None

    def exists(self) -> bool:
        f = self.sqlite_file
        return f is None or f.exists()

    # ------------------------------------------------------------------------- writing

    def put_experiment(self, exp: dict) -> None:
        row = {k: exp.get(k) for k in EXPERIMENT_COLUMNS}
        with self.engine.begin() as conn:
            conn.execute(delete(experiments_table).where(experiments_table.c.root == self.root,
                                                         experiments_table.c.experiment == exp["experiment"]))
            conn.execute(insert(experiments_table), [{**row, "root": self.root, "updated": time.time()}])

    def put_trials(self, trials: Iterable[dict], replace_experiment: Optional[str] = None) -> None:
        """Upsert trials; with replace_experiment, that experiment's other trials are removed."""
        rows = [{**{k: t.get(k) for k in TRIAL_COLUMNS}, "root": self.root, "updated": time.time()} for t in trials]
        with self.engine.begin() as conn:
            if replace_experiment is not None:
                conn.execute(delete(trials_table).where(trials_table.c.root == self.root,
                                                        trials_table.c.experiment == replace_experiment))
            else:
                for r in rows:
                    conn.execute(delete(trials_table).where(
                        trials_table.c.root == self.root, trials_table.c.experiment == r["experiment"],
                        trials_table.c.trial_id == r["trial_id"]))
            if rows:
                conn.execute(insert(trials_table), rows)

    def heartbeat(self, name: str, live: Optional[float]) -> None:
        from sqlalchemy import update
        with self.engine.begin() as conn:
            conn.execute(update(experiments_table).where(experiments_table.c.root == self.root,
                                                         experiments_table.c.experiment == name)
                         .values(live=live, updated=time.time()))

    def remove_experiment(self, name: str) -> None:
        with self.engine.begin() as conn:
            for table in (trials_table, experiments_table):
                conn.execute(delete(table).where(table.c.root == self.root, table.c.experiment == name))

    def index_experiment(self, storage: Storage, path: str) -> tuple[dict, list[dict]]:
        exp, trials = scan_experiment(storage, path)
        self.put_trials(trials, replace_experiment=exp["experiment"])
        self.put_experiment(exp)
        return exp, trials

    def index(self, experiment: Optional[str] = None) -> tuple[list[dict], list[dict]]:
        """Rebuild the catalog of this root (or of one experiment) from storage."""
        storage = Storage(self.root)
        paths = find_experiments(storage)
        if experiment is not None:
            paths = [p for p in paths if basename(p) == experiment]
        exps, trials = [], []
        for path in paths:
            e, ts = self.index_experiment(storage, path)
            exps.append(e)
            trials += ts
        if experiment is None:  # experiments deleted from storage leave the catalog too
            on_disk = {basename(p) for p in paths}
            for name in self.experiment_names():
                if name not in on_disk:
                    self.remove_experiment(name)
        return exps, trials

    def sync(self) -> list[str]:
        """Re-index the experiments whose files changed since they were indexed, and those indexed
        as running whose driver has stopped since (killed: no file changes); returns their names."""
        storage = Storage(self.root)
        rows = {e["experiment"]: e for e in self.experiments()}
        known = {name: e.get("fingerprint") for name, e in rows.items()}
        changed, on_disk = [], set()
        live = {name for name, e in rows.items() if e.get("live") and time.time() - e["live"] < LIVE_S}
        for path in find_experiments(storage):
            name = basename(path)
            on_disk.add(name)
            was_running = name in live or (rows.get(name) or {}).get("run_state") == "running"
            try:
                running = was_running and driver_state(storage, path).live
            except UnsafeFile:         # its driver file is a FIFO...: scan_experiment says so below
                running = False
            if name in live and running:   # the sweep's callback writes fresher rows than storage holds yet
                continue
            if known.get(name) != fingerprint(storage, path) or (was_running and not running):
                self.index_experiment(storage, path)
                changed.append(name)
        for name in set(known) - on_disk - live:
            self.remove_experiment(name)
            changed.append(name)
        return changed

    # ------------------------------------------------------------------------- reading

    def experiment_names(self) -> list[str]:
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(select(experiments_table.c.experiment)
                                               .where(experiments_table.c.root == self.root))]

    def experiments(self) -> list[dict]:
        cols = [experiments_table.c[k] for k in EXPERIMENT_COLUMNS]
        with self.engine.connect() as conn:
            rows = conn.execute(select(*cols).where(experiments_table.c.root == self.root)
                                .order_by(experiments_table.c.experiment))
            return [dict(r._mapping) for r in rows]

    def trials(self, experiment: Optional[str] = None, full: bool = False) -> list[dict]:
        """Trial records; `full` adds history, spec text and the full error (heavier)."""
        names = TRIAL_COLUMNS if full else LIGHT_TRIAL_COLUMNS
        q = select(*[trials_table.c[k] for k in names]).where(trials_table.c.root == self.root)
        if experiment is not None:
            q = q.where(trials_table.c.experiment == experiment)
        with self.engine.connect() as conn:
            rows = conn.execute(q.order_by(trials_table.c.experiment, trials_table.c.trial_id))
            return [dict(r._mapping) for r in rows]

    def trial(self, experiment: str, trial_id: str) -> Optional[dict]:
        q = select(*[trials_table.c[k] for k in TRIAL_COLUMNS]).where(
            trials_table.c.root == self.root, trials_table.c.experiment == experiment,
            trials_table.c.trial_id == trial_id)
        with self.engine.connect() as conn:
            row = conn.execute(q).first()
        return dict(row._mapping) if row else None

    def stamp(self) -> float:
        """When this root's catalog last changed (the dashboard's cache key)."""
        with self.engine.connect() as conn:
            a = conn.execute(select(func.max(trials_table.c.updated)).where(trials_table.c.root == self.root)).scalar()
            b = conn.execute(select(func.max(experiments_table.c.updated))
                             .where(experiments_table.c.root == self.root)).scalar()
        return max(a or 0.0, b or 0.0)
