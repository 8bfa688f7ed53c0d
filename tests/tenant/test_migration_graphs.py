"""Generated model graphs: makemigrations, migrate as the owner and back to zero, squashed too.

The first graph is the reported one (tags through a TenantModel, an Invoice with its own table);
each other graph spans three apps of TenantModels and plain models joined by foreign keys (self,
circular, across apps, to ``AUTH_USER_MODEL`` and to a swappable model of its own), automatic
many-to-many fields and many-to-many fields through models. A first version of the models is
migrated, then a second that adds and removes models and relations, so the autodetector splits,
chops and orders the operations in many ways; the squashed migrations are applied too. After
each forward run the database must hold exactly the row-level security, tenant keys and
composite keys the models call for; after each run back to zero, none of the tables.

The graphs come from a fixed seed; ``BETTER_MIGRATION_GRAPH_SEED`` and ``BETTER_MIGRATION_GRAPHS``
explore others. This module is also the driver that the subprocesses run, each with settings of
its own that install the generated apps and connect to the test database as the owner role.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SEED = int(os.environ.get("BETTER_MIGRATION_GRAPH_SEED", "1729"))
GRAPHS = int(os.environ.get("BETTER_MIGRATION_GRAPHS", "9"))
BATCH = 3
PREFIX = "mg"
TABLES = f"^{PREFIX}[0-9]"
BOTH = frozenset({1, 2})


# --- the graphs ----------------------------------------------------------------------------------


@dataclass
class Relation:
    """A field of a generated model: ``fk``, ``m2m`` (automatic join table) or ``through``."""

    name: str
    kind: str
    target: str  # "app.Model", or "user" for AUTH_USER_MODEL
    versions: frozenset[int]
    through: str | None = None


@dataclass
class Model:
    app: str
    name: str
    tenant: bool
    versions: frozenset[int]
    db_table: str | None = None
    db_default: bool = False
    swappable: str | None = None
    relations: list[Relation] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.app}.{self.name}"


@dataclass
class Graph:
    models: list[Model]

    @property
    def apps(self) -> list[str]:
        return sorted({m.app for m in self.models})

    @property
    def settings(self) -> dict[str, str]:
        return {m.swappable: m.label for m in self.models if m.swappable}


def issue_graph(index: int) -> Graph:
    """The report's models: Project's tags through the TenantModel ProjectTag, and Invoice."""
    app = f"{PREFIX}{index}a"
    project = Model(app, "Project", True, BOTH)
    tag = Model(app, "Tag", True, BOTH)
    link = Model(app, "ProjectTag", True, BOTH)
    invoice = Model(app, "Invoice", True, BOTH, db_table=f"{PREFIX}{index}_invoices")
    project.relations.append(Relation("tags", "through", tag.label, BOTH, link.label))
    link.relations += [
        Relation("src", "fk", project.label, BOTH),
        Relation("dst", "fk", tag.label, BOTH),
    ]
    invoice.relations.append(Relation("project", "fk", project.label, BOTH))
    return Graph([project, tag, link, invoice])


def random_graph(index: int, rng: random.Random) -> Graph:
    apps = [f"{PREFIX}{index}a", f"{PREFIX}{index}b"]
    models = []
    for app in apps:
        for i in range(rng.randint(2, 4)):
            roll = rng.random()
            versions = frozenset({1}) if roll < 0.1 else frozenset({2}) if roll < 0.3 else BOTH
            name = f"{app[-1].upper()}{i}"
            models.append(
                Model(
                    app,
                    name,
                    tenant=rng.random() < 0.75,
                    versions=versions,
                    db_table=f"{PREFIX}{index}_t_{name.lower()}" if rng.random() < 0.3 else None,
                    # A parametrised column default makes Django defer every constraint's SQL.
                    db_default=rng.random() < 0.3,
                )
            )
    # A swappable model in an app of its own: references to it depend on that app's __first__.
    thing = Model(f"{PREFIX}{index}s", "Thing", rng.random() < 0.7, BOTH)
    thing.swappable = f"MG{index}_THING_MODEL"
    models.append(thing)
    links = 0
    for model in list(models):
        wanted = [("fk", rng.randint(0, 3 if model is not thing else 2))]
        wanted += [("m2m", int(rng.random() < 0.35)), ("through", int(rng.random() < 0.3))]
        number = 0
        for kind, count in wanted:
            for _ in range(count):
                target = rng.choice([*models, "user"] if kind == "fk" else [*models])
                versions = rng.choice([BOTH, BOTH, frozenset({2}), frozenset({1})])
                versions &= model.versions
                if isinstance(target, Model):
                    versions &= target.versions
                if not versions:
                    continue
                # Names before and after "tenant", so its AddField lands anywhere in the order.
                name = f"{rng.choice('amtz')}{number}"
                number += 1
                label = target.label if isinstance(target, Model) else target
                if kind != "through":
                    model.relations.append(Relation(name, kind, label, versions))
                    continue
                link = Model(
                    rng.choice(apps),
                    f"L{links}",
                    tenant=model.tenant and rng.random() < 0.85,
                    versions=versions,
                )
                links += 1
                link.relations += [
                    Relation("src", "fk", model.label, versions),
                    Relation("dst", "fk", label, versions),
                ]
                models.append(link)
                model.relations.append(Relation(name, kind, label, versions, link.label))
    return Graph(models)


def graphs(seed: int, count: int) -> list[Graph]:
    rng = random.Random(seed)
    return [issue_graph(0), *(random_graph(index, rng) for index in range(1, count))]


def _reference(graph: Graph, label: str) -> str:
    if label == "user":
        return "settings.AUTH_USER_MODEL"
    swapped = {value: name for name, value in graph.settings.items()}
    return f"settings.{swapped[label]}" if label in swapped else repr(label)


def render(graph: Graph, app: str, version: int) -> str:
    lines = [
        '"""Generated models."""',
        "",
        "from django.conf import settings",
        "from django.db import models",
        "",
        "from better_tenant.models import TenantModel",
        "",
    ]
    for model in graph.models:
        if model.app != app or version not in model.versions:
            continue
        base = "TenantModel" if model.tenant else "models.Model"
        lines += ["", f"class {model.name}({base}):"]
        lines.append('    label = models.CharField(max_length=20, default="")')
        if model.db_default:
            lines.append("    score = models.IntegerField(db_default=0)")
        for relation in model.relations:
            if version not in relation.versions:
                continue
            to = _reference(graph, relation.target)
            if relation.kind == "fk":
                lines.append(
                    f"    {relation.name} = models.ForeignKey({to}, on_delete=models.CASCADE, "
                    'null=True, related_name="+")'
                )
            elif relation.kind == "m2m" and relation.target == model.label:
                lines.append(f'    {relation.name} = models.ManyToManyField("self")')
            elif relation.kind == "m2m":
                lines.append(
                    f'    {relation.name} = models.ManyToManyField({to}, related_name="+")'
                )
            else:
                lines.append(
                    f"    {relation.name} = models.ManyToManyField({to}, "
                    f'through="{relation.through}", through_fields=("src", "dst"), '
                    'related_name="+")'
                )
        meta = [f'db_table = "{model.db_table}"'] if model.db_table else []
        meta += [f'swappable = "{model.swappable}"'] if model.swappable else []
        if meta:
            lines += ["", "    class Meta:", *(f"        {line}" for line in meta)]
    return "\n".join(lines) + "\n"


SETTINGS = '''"""Settings of the generated apps: the test database, connected as the owner role."""

import json
import os

SECRET_KEY = "generated-model-graphs"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
DATABASES = {{"default": json.loads(os.environ["MIGRATION_GRAPHS_DATABASE"])}}
BETTER_TENANT = {{"SYSTEM_ROLE": os.environ["MIGRATION_GRAPHS_SYSTEM_ROLE"]}}
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "better_tenant",
    *{apps!r},
]
{swappable}
'''


def write_project(folder: Path, batch: list[Graph], version: int) -> None:
    """Write the apps (models of ``version``) and settings that install them."""
    labels = [app for graph in batch for app in graph.apps]
    swappable = "\n".join(
        f"{name} = {label!r}" for graph in batch for name, label in graph.settings.items()
    )
    (folder / "mg_settings.py").write_text(SETTINGS.format(apps=labels, swappable=swappable))
    for graph in batch:
        for app in graph.apps:
            (folder / app / "migrations").mkdir(parents=True, exist_ok=True)
            (folder / app / "__init__.py").touch()
            (folder / app / "migrations" / "__init__.py").touch()
            (folder / app / "models.py").write_text(render(graph, app, version))


# --- the test ------------------------------------------------------------------------------------


def run_driver(folder: Path, phase: str, database: dict[str, Any], system_role: str) -> dict:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(folder), str(ROOT)]),
        "DJANGO_SETTINGS_MODULE": "mg_settings",
        "MIGRATION_GRAPHS_DATABASE": json.dumps(database),
        "MIGRATION_GRAPHS_SYSTEM_ROLE": system_role,
    }
    done = subprocess.run(
        [sys.executable, __file__, phase, str(folder)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=180,
    )
    output = (done.stdout + done.stderr)[-6000:]
    assert done.returncode == 0, f"{phase} failed (generated project in {folder}):\n{output}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_generated_model_graphs_migrate_forward_and_back_to_zero(
    tmp_path, django_db_setup, django_db_blocker
):
    from django.db import connection

    from better_tenant.conf import tenant_settings

    with django_db_blocker.unblock():
        settings = connection.settings_dict
        owner = settings["TEST"]["OWNER"]
        database = {
            **{key: settings[key] for key in ("ENGINE", "NAME", "HOST", "PORT", "OPTIONS")},
            "USER": owner["USER"],
            "PASSWORD": owner.get("PASSWORD") or "",
        }
    every = graphs(SEED, GRAPHS)
    first: Counter[str] = Counter()
    second: Counter[str] = Counter()
    # A few graphs per project: Django re-renders every model related to Tenant on each state
    # change, so one project holding them all would take quadratically longer.
    for start in range(0, len(every), BATCH):
        batch, folder = every[start : start + BATCH], tmp_path / f"graphs{start}"
        folder.mkdir()
        write_project(folder, batch, 1)
        first.update(run_driver(folder, "first", database, tenant_settings.SYSTEM_ROLE))
        write_project(folder, batch, 2)
        second.update(run_driver(folder, "second", database, tenant_settings.SYSTEM_ROLE))

    # The graphs exercised what they are for: migrations the autodetector had to split, composite
    # keys and join tables checked, squashed migrations applied.
    assert first["migrations"] > len(every) * 2
    assert first["split_apps"] >= len(every) // 3
    assert second["composite_keys"] >= 2 * len(every)
    assert second["join_tables"] >= len(every) // 2
    assert second["squashed"] >= len(every) // 2


# --- the driver (run in a subprocess) ------------------------------------------------------------


def _gen_models() -> list[Any]:
    from django.apps import apps

    return [
        model
        for model in apps.get_models()
        if model._meta.app_label.startswith(PREFIX) and model._meta.managed
    ]


def _fetch(query: str) -> set[tuple]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(query, [TABLES])
        return set(cursor.fetchall())


def _expected() -> dict[str, set[tuple]]:
    from better_tenant import sql
    from better_tenant.constraints import is_tenant_model

    expected: dict[str, set[tuple]] = {"rls": set(), "plain": set(), "keys": set(), "fks": set()}
    for model in _gen_models():
        table = model._meta.db_table
        if not is_tenant_model(model):
            expected["plain"].add((table,))
            continue
        expected["rls"].add((table,))
        expected["keys"].add((table, sql.tenant_key_name(table)))
        for fk in model._meta.local_fields:
            if fk.many_to_one and fk.name != "tenant" and is_tenant_model(fk.related_model):
                expected["fks"].add(
                    (
                        table,
                        sql.composite_fk_name(table, fk.column),
                        fk.related_model._meta.db_table,
                    )
                )
        for m2m in model._meta.local_many_to_many:
            through = m2m.remote_field.through
            if through._meta.auto_created:
                expected["rls"].add((through._meta.db_table,))
        expected["plain"] -= expected["rls"]
    return expected


def _verify_forward() -> dict[str, int]:
    from better_tenant import sql

    expected = _expected()
    secured = _fetch(
        "SELECT relname FROM pg_class WHERE relkind = 'r' AND relname ~ %s "
        "AND relrowsecurity AND relforcerowsecurity"
    )
    tables = _fetch("SELECT relname FROM pg_class WHERE relkind = 'r' AND relname ~ %s")
    policies = _fetch("SELECT tablename, policyname FROM pg_policies WHERE tablename ~ %s")
    keys = _fetch(
        "SELECT c.relname, con.conname FROM pg_constraint con "
        "JOIN pg_class c ON c.oid = con.conrelid "
        "WHERE con.contype = 'u' AND con.conname LIKE '%%tenant_key' AND c.relname ~ %s"
    )
    fks = _fetch(
        "SELECT c.relname, con.conname, r.relname FROM pg_constraint con "
        "JOIN pg_class c ON c.oid = con.conrelid JOIN pg_class r ON r.oid = con.confrelid "
        "WHERE con.contype = 'f' AND con.conname LIKE '%%tenant_fk' AND c.relname ~ %s"
    )
    problems = []
    if missing := (expected["rls"] | expected["plain"]) - tables:
        problems.append(f"tables missing: {sorted(missing)}")
    if secured != expected["rls"]:
        problems.append(
            f"RLS missing on {sorted(expected['rls'] - secured)}, "
            f"unexpected on {sorted(secured - expected['rls'])}"
        )
    wanted = {
        (table, name)
        for (table,) in expected["rls"]
        for name in (sql.tenant_policy_name(table), sql.system_policy_name(table))
    }
    if policies != wanted:
        problems.append(f"policies: missing {wanted - policies}, unexpected {policies - wanted}")
    if keys != expected["keys"]:
        problems.append(
            f"tenant keys: missing {expected['keys'] - keys}, extra {keys - expected['keys']}"
        )
    if fks != expected["fks"]:
        problems.append(
            f"composite keys: missing {expected['fks'] - fks}, extra {fks - expected['fks']}"
        )
    assert not problems, "\n".join(problems)
    joins = expected["rls"] - {(m._meta.db_table,) for m in _gen_models()}
    return {"composite_keys": len(fks), "join_tables": len(joins)}


def _migrate_to_zero(labels: list[str], one_by_one: bool) -> None:
    """``migrate <app> zero`` app after app, or all apps in one plan."""
    from django.core.management import call_command
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    if one_by_one:
        # Django computes each reverted migration's state of the other apps from its plan's
        # order, not from what is applied: the composite keys across apps must not rely on it.
        for label in labels:
            call_command("migrate", label, "zero", verbosity=0, interactive=False)
    else:
        executor = MigrationExecutor(connection)
        targets = [(label, None) for label in labels]
        executor.migrate(targets, plan=executor.migration_plan(targets))
    left = _fetch("SELECT relname FROM pg_class WHERE relname ~ %s")
    assert not left, f"left after migrating to zero: {sorted(left)}"


def _clean(labels: list[str]) -> None:
    """Remove what an interrupted earlier run may have left in the test database."""
    from django.contrib.contenttypes.models import ContentType
    from django.db import connection
    from django.db.migrations.recorder import MigrationRecorder

    with connection.cursor() as cursor:
        for (table,) in _fetch("SELECT relname FROM pg_class WHERE relkind = 'r' AND relname ~ %s"):
            cursor.execute(f'DROP TABLE IF EXISTS "{table}" CASCADE')
    recorder = MigrationRecorder(connection)
    if recorder.has_table():
        recorder.migration_qs.filter(app__in=labels).delete()
    if ContentType._meta.db_table in connection.introspection.table_names():
        ContentType.objects.filter(app_label__in=labels).delete()


def _migration_files(label: str) -> list[Path]:
    from django.apps import apps

    folder = Path(apps.get_app_config(label).path) / "migrations"
    return sorted(path for path in folder.glob("0*.py"))


def _squash(labels: list[str]) -> int:
    """Squash every app with more than one migration, except where that makes a cycle.

    Squashing apps whose migrations depend on each other can make the squashed migrations
    depend on each other circularly, which Django leaves to be resolved by hand.
    """
    import importlib

    from django.core.management import call_command
    from django.db.migrations.loader import MigrationLoader

    squashed = 0
    for label in labels:
        files = _migration_files(label)
        if len(files) < 2:
            continue
        call_command("squashmigrations", label, files[-1].stem, interactive=False, verbosity=0)
        importlib.invalidate_caches()
        try:
            MigrationLoader(None, ignore_no_migrations=True)
        except Exception:
            (new,) = set(_migration_files(label)) - set(files)
            new.unlink()
            importlib.invalidate_caches()
        else:
            squashed += 1
    return squashed


def driver(phase: str, folder: str) -> dict[str, int]:
    import importlib

    import django

    sys.path.insert(0, folder)
    django.setup()
    from django.contrib.contenttypes.models import ContentType
    from django.core.management import call_command

    labels = _installed()
    if phase == "first":
        _clean(labels)
    call_command("makemigrations", *labels, interactive=False, verbosity=0)
    importlib.invalidate_caches()
    files = [len(_migration_files(label)) for label in labels]
    result = {"migrations": sum(files), "split_apps": sum(count > 1 for count in files)}
    if phase == "first":
        return result
    for step in ("migrations", "squashed"):
        if step == "squashed":
            result["squashed"] = _squash(labels)
        call_command("migrate", verbosity=0, interactive=False)
        result |= _verify_forward()
        _migrate_to_zero(labels, one_by_one=step == "migrations")
    ContentType.objects.filter(app_label__in=labels).delete()
    return result


def _installed() -> list[str]:
    from django.conf import settings

    return [app for app in settings.INSTALLED_APPS if app.startswith(PREFIX)]


if __name__ == "__main__":
    print(json.dumps(driver(sys.argv[1], sys.argv[2])))
